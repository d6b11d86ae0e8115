#!/usr/bin/env bash
# The set-up stations run, against nginx's bare `return 302` in the same run:
# 20 relays on five continents (fake relays, coordinates configured), a
# generated GeoIP database shaped like DB-IP City Lite, 1,000 client
# addresses arriving in X-Forwarded-For from a trusted proxy (127.0.0.1),
# the balancer built in release mode.
#
# 1. Saturation: wrk with the same Lua script (bench/wrk-xff.lua, a new
#    forwarded address per request) for both, alternating rounds, medians.
# 2. Latency at half (and a quarter) of the balancer's saturation rate, for
#    both at that rate, with the constant-rate generator (benches/loadgen.rs,
#    corrected for coordinated omission); LEVELS="0.5" for half only.
#
#   bench/production.sh
#   DURATION=10 ROUNDS=3 CONNECTIONS=64 NETWORKS=1000000 bench/production.sh
#
# Needs: cargo, python3, curl, wrk, nginx.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
NETWORKS=${NETWORKS:-1000000}
CLIENTS=${CLIENTS:-1000}
need wrk nginx python3 cargo curl
build_all

"$GEOIP_FIXTURE" --out "$WORK/city.mmdb" --addresses "$WORK/clients.txt" \
  --networks "$NETWORKS" --clients "$CLIENTS"
start_relays 20 "$WORK/relays.toml"
DB="$WORK/bench.db"
setup_db "$DB" "$WORK/relays.toml"

BPORT=$(free_port)
ICECAST_BALANCER_ADMIN_PASSWORD=bench-only RUST_LOG=warn \
  "$BIN" --database "$DB" --listen "127.0.0.1:$BPORT" --geoip "$WORK/city.mmdb" \
  --trusted-proxies 127.0.0.1 --poll-interval 15 >"$WORK/balancer.log" 2>&1 &
PIDS+=($!)
BURL="http://127.0.0.1:$BPORT/icecast_balancer/live/"
wait_http "http://127.0.0.1:$BPORT/healthz"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Forwarded-For: $(head -1 "$WORK/clients.txt")" "$BURL")
[ "$code" = 302 ] || { echo "bench: balancer answered $code, not 302" >&2; cat "$WORK/balancer.log" >&2; exit 1; }

NPORT=$(free_port)
start_nginx "$NPORT"
NURL="http://127.0.0.1:$NPORT/icecast_balancer/live/"

export XFF_FILE="$WORK/clients.txt"
echo "saturation (wrk): $THREADS threads, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  run_wrk "$NURL" nginx -s "$ROOT/bench/wrk-xff.lua"
  run_wrk "$BURL" balancer -s "$ROOT/bench/wrk-xff.lua"
done
B=$(median "$WORK/balancer.rps")
N=$(median "$WORK/nginx.rps")
python3 -c "import sys; b, n = map(float, sys.argv[1:]); print(f'median: nginx {n:.0f} req/s, balancer {b:.0f} req/s, ratio balancer/nginx {b / n:.2f}x')" "$B" "$N"

# At half the balancer's saturation as asked, and lower, to show where an
# open-loop arrival pattern stops queueing on this machine.
for level in ${LEVELS:-0.5 0.25}; do
  RATE=$(python3 -c "import sys; print(int(float(sys.argv[1]) * float(sys.argv[2])))" "$B" "$level")
  echo "latency at $level of the balancer's saturation ($RATE req/s, constant rate, ${DURATION}s):"
  for target in nginx balancer; do
    url=$NURL
    [ "$target" = balancer ] && url=$BURL
    echo "  $target"
    "$LOADGEN" --url "$url" --rate "$RATE" --duration "$DURATION" --connections "$CONNECTIONS" \
      --xff-file "$WORK/clients.txt" | sed 's/^/    /'
  done
done
