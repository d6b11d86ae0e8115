#!/usr/bin/env bash
# Relay callback throughput: POST /icecast_balancer/relays/{server}/auth
# (listener_add and listener_remove in turn, with basic auth) against the
# redirect itself as the peer, measured with wrk in the same run.
#
#   bench/callbacks.sh           # 3 rounds of 10 s each, 64 connections
#   DURATION=30 CONNECTIONS=128 ROUNDS=5 bench/callbacks.sh
#
# Goal (issue 21): at least 20,000 callbacks/s with p99 under 5 ms.
# Needs: cargo, python3, wrk, curl.
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
source "$(dirname "$0")/lib.sh"
need wrk python3 cargo curl
release_bin

CONFIG="$WORK/config.toml"
static_relays 3 "$CONFIG" unlimited
TOKEN=bench-callback-token-0123456789
python3 - "$CONFIG" "$TOKEN" <<'PY'
import sys
path, token = sys.argv[1:3]
text = open(path).read().replace('name = "relay-1"\n', f'name = "relay-1"\ncallback_token = "{token}"\n', 1)
open(path, "w").write(text)
PY
DB="$WORK/bench.db"
setup_db "$DB" "$CONFIG"

BPORT=$(free_port)
ICECAST_BALANCER_ADMIN_PASSWORD=bench-only RUST_LOG=warn \
  "$BIN" --database "$DB" --listen "127.0.0.1:$BPORT" --poll-interval 15 >"$WORK/balancer.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$BPORT/healthz"
AUTH=$(printf 'relay-1:%s' "$TOKEN" | base64)
export AUTH
URL="http://127.0.0.1:$BPORT/icecast_balancer/relays/relay-1/auth"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "relay-1:$TOKEN" -d 'action=listener_add&client=1&mount=/live.mp3' "$URL")
[ "$code" = 200 ] || { echo "bench: callback answered $code, not 200" >&2; cat "$WORK/balancer.log" >&2; exit 1; }

echo "wrk: $THREADS threads, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  run_wrk "$URL" callbacks -s "$ROOT/bench/wrk-callbacks.lua"
  run_wrk "http://127.0.0.1:$BPORT/icecast_balancer/live/" redirects
done
python3 - "$WORK/callbacks.rps" "$WORK/redirects.rps" "$WORK/callbacks.p99" <<'PY'
import statistics, sys
c, r = (statistics.median(float(x) for x in open(p).read().split()) for p in sys.argv[1:3])
def ms(v):
    v = v.strip()
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
p99 = max(ms(x) for x in open(sys.argv[3]).read().split())
print(f"median: callbacks {c:.0f}/s (worst p99 {p99:.2f} ms), redirects {r:.0f}/s, ratio {c / r:.2f}x")
PY
