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
source "$(dirname "$0")/lib.sh"
need wrk redis-server python3 cargo curl
release_bin

redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 \
  --save '' --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -S "$WORK/redis.sock" ] && break; sleep 0.1; done
CLUSTER="unix://$WORK/redis.sock"

CONFIG="$WORK/config.toml"
# A limit far above what a run can fill: every redirect is counted.
static_relays "$RELAYS" "$CONFIG" 1000000000

start() { # name, port, extra flags...
  local name=$1 port=$2; shift 2
  local db="$WORK/$name.db"
  setup_db "$db" "$CONFIG"
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
