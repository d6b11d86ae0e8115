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
#    both at that rate, with the constant-rate generator (bench/tools/loadgen.rs,
#    corrected for coordinated omission); LEVELS="0.5" for half only,
#    LEVELS= for none.
#
# BASELINE=/path/to/an/older/icecast-balancer runs that build too, on a copy
# of the database, in the same rounds: before and after as ratios of one
# run on this noisy machine.
#
#   bench/production.sh
#   DURATION=10 ROUNDS=3 CONNECTIONS=64 NETWORKS=1000000 bench/production.sh
#   BASELINE=/tmp/old-icecast-balancer ROUNDS=8 DURATION=3 LEVELS= bench/production.sh
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

# start_balancer BINARY DB NAME: serves DB, sets URL to its redirect address.
start_balancer() {
  local port
  port=$(free_port)
  ICECAST_BALANCER_ADMIN_PASSWORD=bench-only RUST_LOG=warn \
    "$1" --database "$2" --listen "127.0.0.1:$port" --geoip "$WORK/city.mmdb" \
    --trusted-proxies 127.0.0.1 --poll-interval 15 >"$WORK/$3.log" 2>&1 &
  PIDS+=($!)
  URL="http://127.0.0.1:$port/icecast_balancer/live/"
  wait_http "http://127.0.0.1:$port/healthz"
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Forwarded-For: $(head -1 "$WORK/clients.txt")" "$URL")
  [ "$code" = 302 ] || { echo "bench: $3 answered $code, not 302" >&2; cat "$WORK/$3.log" >&2; exit 1; }
}
start_balancer "$BIN" "$DB" balancer
BURL=$URL
if [ -n "${BASELINE:-}" ]; then
  # Its own database, made by itself: an older build refuses one that a
  # newer build migrated further.
  BIN=$BASELINE setup_db "$WORK/baseline.db" "$WORK/relays.toml"
  start_balancer "$BASELINE" "$WORK/baseline.db" baseline
  OURL=$URL
fi

NPORT=$(free_port)
start_nginx "$NPORT"
NURL="http://127.0.0.1:$NPORT/icecast_balancer/live/"

export XFF_FILE="$WORK/clients.txt"
echo "saturation (wrk): $THREADS threads, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  run_wrk "$NURL" nginx -s "$ROOT/bench/wrk-xff.lua"
  [ -n "${BASELINE:-}" ] && run_wrk "$OURL" baseline -s "$ROOT/bench/wrk-xff.lua"
  run_wrk "$BURL" balancer -s "$ROOT/bench/wrk-xff.lua"
done
B=$(median "$WORK/balancer.rps")
N=$(median "$WORK/nginx.rps")
python3 -c "import sys; b, n = map(float, sys.argv[1:]); print(f'median: nginx {n:.0f} req/s, balancer {b:.0f} req/s, ratio balancer/nginx {b / n:.2f}x')" "$B" "$N"
if [ -n "${BASELINE:-}" ]; then
  O=$(median "$WORK/baseline.rps")
  python3 -c "import sys; o, b, n = map(float, sys.argv[1:]); print(f'median: baseline {o:.0f} req/s, ratio baseline/nginx {o / n:.2f}x, balancer/baseline {b / o:.2f}x')" "$O" "$B" "$N"
fi

# At half the balancer's saturation as asked, and lower, to show where an
# open-loop arrival pattern stops queueing on this machine.
for level in ${LEVELS-0.5 0.25}; do
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
