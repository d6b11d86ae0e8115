# Shared by the bench scripts: free ports, waiting for HTTP, the release
# binary and the bench tools (bench/tools/*.rs), nginx, cleanup.
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
  (cd "$ROOT" && cargo build --release --quiet \
    --example loadgen --example fake_relays --example geoip_fixture)
  local dir="$ROOT/target/release/examples"
  LOADGEN=$dir/loadgen FAKE_RELAYS=$dir/fake_relays GEOIP_FIXTURE=$dir/geoip_fixture
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

# run_wrk URL NAME [wrk args...]: one wrk run; prints a line and appends
# its req/s to $WORK/NAME.rps and its p99 to $WORK/NAME.p99.
run_wrk() {
  local url=$1 name=$2
  shift 2
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" > "$WORK/wrk.out" 2>&1
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.out")
  bad=$(awk '/Non-2xx or 3xx/ {print $NF}' "$WORK/wrk.out")
  printf '  %-12s %12s req/s   p50 %-9s p99 %-9s non-3xx %s\n' "$name" "$rps" "$p50" "$p99" "${bad:-0}"
  echo "$rps" >> "$WORK/$name.rps"
  echo "$p99" >> "$WORK/$name.p99"
}

# static_relays N CONFIG MAX: N relays, each a static load.xsl served by
# python's http.server, listing /live.mp3 with limit MAX ("unlimited" or a
# number); writes their servers and one stream "live" to CONFIG.
static_relays() {
  local n=$1 config=$2 max=$3 i port mounts=""
  : > "$config"
  for i in $(seq 1 "$n"); do
    port=$(free_port)
    mkdir -p "$WORK/relay$i"
    printf '<load><mount name="/live.mp3" listeners="%d" max="%s">%s</mount></load>\n' \
      "$((i * 10))" "$max" "$max" > "$WORK/relay$i/load.xsl"
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WORK/relay$i" >/dev/null 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$port/load.xsl"
    printf '[[servers]]\nname = "relay-%d"\nurl = "http://127.0.0.1:%d"\n\n' "$i" "$port" >> "$config"
    mounts="$mounts{ server = \"relay-$i\", mount = \"/live.mp3\" },"
  done
  printf '[[streams]]\nname = "live"\nmounts = [%s]\n' "${mounts%,}" >> "$config"
}

# release_bin: BIN if set (another profile or commit), else this checkout's
# release build.
release_bin() {
  if [ -z "${BIN:-}" ]; then
    echo "building release binary..."
    (cd "$ROOT" && cargo build --release --quiet)
    BIN="$ROOT/target/release/icecast-balancer"
  fi
}
