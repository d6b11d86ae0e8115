# Shared by the bench scripts: free ports, waiting for HTTP, the release
# binary and the bench tools (benches/*.rs), nginx, cleanup.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] && echo "work dir kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "bench: $1 did not come up" >&2
  return 1
}

# Builds the release binary (unless BALANCER names one, e.g. an older
# build to compare with) and the bench tools (unless BENCH_TOOLS names a
# directory holding them); sets BIN, LOADGEN,
# FAKE_RELAYS, GEOIP_FIXTURE.
build_all() {
  echo "building release binary and bench tools..."
  if [ -n "${BALANCER:-}" ]; then
    BIN=$BALANCER
  else
    (cd "$ROOT" && cargo build --release --quiet)
    BIN="$ROOT/target/release/icecast-balancer"
  fi
  if [ -n "${BENCH_TOOLS:-}" ]; then
    # Tools built earlier (copied out of target/), so a run needs no build.
    LOADGEN=$BENCH_TOOLS/loadgen FAKE_RELAYS=$BENCH_TOOLS/fake_relays GEOIP_FIXTURE=$BENCH_TOOLS/geoip_fixture
    return
  fi
  local json
  json=$(cd "$ROOT" && cargo bench --quiet --no-run --message-format=json \
    --bench loadgen --bench fake_relays --bench geoip_fixture 2>/dev/null)
  tool() {
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1" <<<"$json"
  }
  LOADGEN=$(tool loadgen)
  FAKE_RELAYS=$(tool fake_relays)
  GEOIP_FIXTURE=$(tool geoip_fixture)
  for t in "$LOADGEN" "$FAKE_RELAYS" "$GEOIP_FIXTURE"; do
    [ -x "$t" ] || { echo "bench: a bench tool did not build" >&2; exit 1; }
  done
}

# start_relays N CONFIG [fake_relays args...]: starts the fake relays and
# waits until they wrote CONFIG.
start_relays() {
  local n=$1 config=$2
  shift 2
  "$FAKE_RELAYS" --count "$n" --config "$config" "$@" >"$WORK/relays.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 600); do
    grep -q ready "$WORK/relays.log" && return 0
    sleep 0.1
  done
  echo "bench: fake relays did not start" >&2
  cat "$WORK/relays.log" >&2
  exit 1
}

# start_nginx PORT: nginx answering every request with a bare 302.
start_nginx() {
  cat > "$WORK/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$1;
    location / { return 302 http://127.0.0.1:8000/live.mp3; }
  }
}
NGINX
  nginx -c "$WORK/nginx.conf" -p "$WORK"
  wait_http "http://127.0.0.1:$1/icecast_balancer/live/"
}

# setup_db DB CONFIG: imports CONFIG and polls once.
setup_db() {
  local step
  for step in "import $2" poll; do
    # shellcheck disable=SC2086
    "$BIN" --database "$1" $step >"$WORK/setup.log" 2>&1 \
      || { echo "bench: $step failed" >&2; tail -20 "$WORK/setup.log" >&2; exit 1; }
  done
}

median() {
  python3 -c 'import statistics, sys; print(f"{statistics.median(float(x) for x in open(sys.argv[1]).read().split()):.0f}")' "$1"
}
