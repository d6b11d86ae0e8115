#!/usr/bin/env bash
# Redirect throughput and latency with the cluster off and on, side by side:
# the same relays, the same release binary; "off" is one instance on its own,
# "on" is the same instance with --cluster (a local redis-server on a Unix
# socket) and a second member beside it. Mounts have a (very high) limit, so
# every redirect goes through the slot leases; wrk's one address and agent
# would otherwise be one listener repeating itself, so the per-client check
# is off (--max-reservations-per-client 0).
#
#   bench/cluster.sh                  # 3 rounds of 10 s each, 64 connections
#   DURATION=30 ROUNDS=5 bench/cluster.sh
#   BIN=/tmp/other/icecast-balancer bench/cluster.sh
#
# Needs: cargo, python3, wrk, redis-server (Debian: apt-get install wrk redis-server).
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
RELAYS=${RELAYS:-3}
ROUNDS=${ROUNDS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

for tool in wrk redis-server python3 cargo curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
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

# BIN=path/to/icecast-balancer measures a binary built elsewhere.
if [ -z "${BIN:-}" ]; then
  echo "building release binary..."
  (cd "$ROOT" && cargo build --release --quiet)
  BIN="$ROOT/target/release/icecast-balancer"
fi

redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 \
  --save '' --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -S "$WORK/redis.sock" ] && break; sleep 0.1; done
CLUSTER="unix://$WORK/redis.sock"

CONFIG="$WORK/config.toml"
: > "$CONFIG"
MOUNTS=""
for i in $(seq 1 "$RELAYS"); do
  port=$(free_port)
  mkdir -p "$WORK/relay$i"
  # A limit far above what a run can fill: every redirect is counted.
  printf '<load><mount name="/live.mp3" listeners="%d" max="1000000000">%d</mount></load>\n' \
    "$((i * 10))" "$((1000000000 - i * 10))" > "$WORK/relay$i/load.xsl"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WORK/relay$i" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/load.xsl"
  printf '[[servers]]\nname = "relay-%d"\nurl = "http://127.0.0.1:%d"\n\n' "$i" "$port" >> "$CONFIG"
  MOUNTS="$MOUNTS{ server = \"relay-$i\", mount = \"/live.mp3\" },"
done
printf '[[streams]]\nname = "live"\nmounts = [%s]\n' "${MOUNTS%,}" >> "$CONFIG"

start() { # name, port, extra flags...
  local name=$1 port=$2; shift 2
  local db="$WORK/$name.db"
  for step in "import $CONFIG" poll; do
    # shellcheck disable=SC2086
    "$BIN" --database "$db" $step >"$WORK/setup.log" 2>&1 \
      || { echo "bench: $step failed" >&2; cat "$WORK/setup.log" >&2; exit 1; }
  done
  ICECAST_BALANCER_ADMIN_PASSWORD=bench-only RUST_LOG=warn \
    "$BIN" --database "$db" --listen "127.0.0.1:$port" --poll-interval 15 \
    --max-reservations-per-client 0 "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/healthz"
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/icecast_balancer/live/")
  [ "$code" = 302 ] || { echo "bench: $name answered $code, not 302" >&2; cat "$WORK/$name.log" >&2; exit 1; }
}

# Started here, not in a subshell, so cleanup knows their pids.
OFF=$(free_port); start off "$OFF"
ON=$(free_port); start on "$ON" --cluster "$CLUSTER" --cluster-instance bench-on
PEER=$(free_port); start peer "$PEER" --cluster "$CLUSTER" --cluster-instance bench-peer
sleep 2
curl -s "http://127.0.0.1:$ON/api/status" | python3 -c '
import json, sys
c = json.load(sys.stdin).get("cluster") or {}
print("cluster:", c.get("mode"), "members:", [m["name"] for m in c.get("members", [])])'

run_wrk() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$1" > "$WORK/wrk.out" 2>&1
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.out")
  bad=$(awk '/Non-2xx or 3xx/ {print $NF}' "$WORK/wrk.out")
  printf '  %-12s %12s req/s   p50 %-9s p99 %-9s non-3xx %s\n' "$2" "$rps" "$p50" "$p99" "${bad:-0}"
  echo "$rps" >> "$WORK/$2.rps"
  echo "$p99" >> "$WORK/$2.p99"
}

echo "wrk: $THREADS threads, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  run_wrk "http://127.0.0.1:$OFF/icecast_balancer/live/" cluster-off
  run_wrk "http://127.0.0.1:$ON/icecast_balancer/live/" cluster-on
done
python3 - "$WORK" <<'PY'
import statistics, sys, re
w = sys.argv[1]
def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
for name in ("cluster-off", "cluster-on"):
    rps = statistics.median(float(x) for x in open(f"{w}/{name}.rps").read().split())
    p99 = statistics.median(ms(x) for x in open(f"{w}/{name}.p99").read().split())
    print(f"median {name:12} {rps:9.0f} req/s   p99 {p99:.2f} ms")
PY
