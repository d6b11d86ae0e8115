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
ROOT=$(cd "$(dirname "$0")/.." && pwd)

for tool in wrk nginx python3 cargo; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "bench: $1 did not come up" >&2
  return 1
}

echo "building release binary..."
# BIN=path/to/icecast-balancer measures a binary built elsewhere (another
# profile or commit); otherwise the release build of this checkout.
if [ -z "${BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  BIN="$ROOT/target/release/icecast-balancer"
fi

# Fake relays: a static load.xsl per relay, served by python's http.server.
CONFIG="$WORK/config.toml"
: > "$CONFIG"
MOUNTS=""
for i in $(seq 1 "$RELAYS"); do
  port=$(free_port)
  mkdir -p "$WORK/relay$i"
  printf '<load><mount name="/live.mp3" listeners="%d" max="unlimited">unlimited</mount></load>\n' "$((i * 10))" \
    > "$WORK/relay$i/load.xsl"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WORK/relay$i" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/load.xsl"
  printf '[[servers]]\nname = "relay-%d"\nurl = "http://127.0.0.1:%d"\n\n' "$i" "$port" >> "$CONFIG"
  MOUNTS="$MOUNTS{ server = \"relay-$i\", mount = \"/live.mp3\" },"
done
printf '[[streams]]\nname = "live"\nmounts = [%s]\n' "${MOUNTS%,}" >> "$CONFIG"

DB="$WORK/bench.db"
for step in "import $CONFIG" poll; do
  # shellcheck disable=SC2086
  "$BIN" --database "$DB" $step >"$WORK/setup.log" 2>&1 \
    || { echo "bench: $step failed" >&2; cat "$WORK/setup.log" >&2; exit 1; }
done

BPORT=$(free_port)
ICECAST_BALANCER_ADMIN_PASSWORD=bench-only RUST_LOG=warn \
  "$BIN" --database "$DB" --listen "127.0.0.1:$BPORT" --poll-interval 15 >"$WORK/balancer.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$BPORT/healthz"
curl -s -o /dev/null -w '' "http://127.0.0.1:$BPORT/icecast_balancer/live/"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$BPORT/icecast_balancer/live/")
[ "$code" = 302 ] || { echo "bench: balancer answered $code, not 302" >&2; cat "$WORK/balancer.log" >&2; exit 1; }

NPORT=$(free_port)
cat > "$WORK/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NPORT;
    location / { return 302 http://127.0.0.1:8000/live.mp3; }
  }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK"
wait_http "http://127.0.0.1:$NPORT/icecast_balancer/live/"

run_wrk() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$1" > "$WORK/wrk.out" 2>&1
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.out")
  bad=$(awk '/Non-2xx or 3xx/ {print $NF}' "$WORK/wrk.out")
  printf '  %-10s %12s req/s   p50 %-9s p99 %-9s non-3xx %s\n' "$2" "$rps" "$p50" "$p99" "${bad:-0}"
  echo "$rps" >> "$WORK/$2.rps"
}

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
