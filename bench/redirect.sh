#!/usr/bin/env bash
# Redirect throughput: icecast-balancer vs nginx answering a bare `return 302`,
# measured with wrk in the same run on the same machine.
#
#   bench/redirect.sh            # 3 rounds of 10 s per server, 64 connections
#   DURATION=30 CONNECTIONS=128 ROUNDS=5 bench/redirect.sh
#   BIN=/tmp/other/icecast-balancer bench/redirect.sh
#
# Needs: cargo, python3, wrk, nginx (Debian: apt-get install wrk nginx-light).
# Everything listens on free loopback ports and is stopped on exit.
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
RELAYS=${RELAYS:-3}
ROUNDS=${ROUNDS:-3}
source "$(dirname "$0")/lib.sh"
need wrk nginx python3 cargo curl
release_bin

# Fake relays: a static load.xsl per relay.
CONFIG="$WORK/config.toml"
static_relays "$RELAYS" "$CONFIG" unlimited

DB="$WORK/bench.db"
setup_db "$DB" "$CONFIG"

BPORT=$(free_port)
ICECAST_BALANCER_ADMIN_PASSWORD=bench-only RUST_LOG=warn \
  "$BIN" --database "$DB" --listen "127.0.0.1:$BPORT" --poll-interval 15 >"$WORK/balancer.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$BPORT/healthz"
curl -s -o /dev/null -w '' "http://127.0.0.1:$BPORT/icecast_balancer/live/"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$BPORT/icecast_balancer/live/")
[ "$code" = 302 ] || { echo "bench: balancer answered $code, not 302" >&2; cat "$WORK/balancer.log" >&2; exit 1; }

NPORT=$(free_port)
start_nginx "$NPORT"

# wrk shares the cores with the server under test, so single runs swing by
# ±10%; alternating rounds and taking medians keeps the ratio honest.
echo "wrk: $THREADS threads, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  run_wrk "http://127.0.0.1:$NPORT/icecast_balancer/live/" nginx
  run_wrk "http://127.0.0.1:$BPORT/icecast_balancer/live/" balancer
done
python3 - "$WORK/balancer.rps" "$WORK/nginx.rps" <<'PY'
import statistics, sys
b, n = (statistics.median(float(x) for x in open(p).read().split()) for p in sys.argv[1:3])
print(f"median: nginx {n:.0f} req/s, balancer {b:.0f} req/s, ratio balancer/nginx {b / n:.2f}x")
PY
