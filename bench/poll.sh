#!/usr/bin/env bash
# What a poll round costs the running server, at several relay counts.
#
# For each count in RELAYS (default "100 1000 5000"): fake relays on one
# port each (bench/tools/fake_relays.rs, streams of 20 relays), the release
# server with the built-in scheduler off (--poll-interval 0) and rounds
# triggered by POST /icecast_balancer/poll, which answers when the round
# is done. Per round, from /proc/<pid>: CPU (utime + stime), bytes written
# to storage (io write_bytes), wall time; the snapshot rebuilds from the
# server's metric when it has one, else by counting the snapshot's query in
# a debug log during one extra round. After ROUNDS rounds: RSS and open
# descriptors. At the largest count: redirect latency (constant rate,
# bench/tools/loadgen.rs) idle and during back-to-back rounds, a round with
# one relay in ten black-holed, and rounds under a descriptor limit of
# 1,024 (prlimit: soft only, then soft and hard).
#
#   bench/poll.sh
#   RELAYS="1000" ROUNDS=10 RATE=2000 bench/poll.sh
#
# Needs: cargo, python3, curl, prlimit (util-linux).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RELAYS=${RELAYS:-"100 1000 5000"}
ROUNDS=${ROUNDS:-10}
RATE=${RATE:-2000}
LAT_SECONDS=${LAT_SECONDS:-10}
TIMEOUT=${TIMEOUT:-5}
TOKEN=bench-poll-token
need python3 cargo curl prlimit
build_all
TICK=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
rebuilds() {
  curl -s "http://127.0.0.1:$PORT/metrics" \
    | awk '/^icecast_balancer_snapshot_rebuilds_total/ {print $2; found=1} END {if (!found) print "n/a"}'
}

# start_server DB [prefix command...]: the balancer on a fresh port; sets
# PORT and SPID.
start_server() {
  local db=$1
  shift
  PORT=$(free_port)
  ICECAST_BALANCER_ADMIN_PASSWORD=bench-only RUST_LOG=${LOG:-warn} \
    "$@" "$BIN" --database "$db" --listen "127.0.0.1:$PORT" --poll-interval 0 \
    --poll-timeout "$TIMEOUT" --poll-token "$TOKEN" --trusted-proxies 127.0.0.1 \
    >"$WORK/server.log" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
  wait_http "http://127.0.0.1:$PORT/healthz"
}

stop_server() {
  kill "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
}

# One round; prints "wall_s failed".
round() {
  local t0 t1
  t0=$(date +%s.%N)
  curl -s -o "$WORK/round.json" -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/icecast_balancer/poll"
  t1=$(date +%s.%N)
  python3 -c '
import json, sys
t0, t1, body = float(sys.argv[1]), float(sys.argv[2]), open(sys.argv[3]).read()
try:
    s = json.loads(body)
    failed = sum(1 for x in s["servers"] if not x["ok"])
    errors = sorted({x["error"] for x in s["servers"] if x.get("error")})
    print(f"{t1 - t0:.2f} {failed}", "|", "; ".join(e[:80] for e in errors[:2]))
except Exception:
    print(f"{t1 - t0:.2f} all | {body[:120]}")' "$t0" "$t1" "$WORK/round.json"
}

loadgen() {
  "$LOADGEN" --url "http://127.0.0.1:$PORT/icecast_balancer/live/" --rate "$RATE" \
    --duration "$LAT_SECONDS" --connections 32 --threads 1 --xff-count 1000 | sed 's/^/      /'
}

for n in $RELAYS; do
  echo "== $n relays"
  [ "${#PIDS[@]}" -gt 0 ] && { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
  start_relays "$n" "$WORK/relays.toml" --max 100000
  DB="$WORK/poll-$n.db"
  rm -f "$DB"*
  "$BIN" --database "$DB" import "$WORK/relays.toml" >"$WORK/setup.log" 2>&1 \
    || { echo "bench: import failed" >&2; tail "$WORK/setup.log" >&2; exit 1; }
  start_server "$DB"
  total_cpu=0
  for r in $(seq 1 "$ROUNDS"); do
    c0=$(cpu_ticks "$SPID"); w0=$(written "$SPID"); b0=$(rebuilds)
    out=$(round)
    c1=$(cpu_ticks "$SPID"); w1=$(written "$SPID"); b1=$(rebuilds)
    cpu=$(python3 -c "print(f'{($c1 - $c0) / $TICK:.2f}')")
    reb=n/a
    [ "$b0" != n/a ] && reb=$((b1 - b0))
    printf '  round %2d: wall %ss, failed %s, cpu %ss, written %s MB, rebuilds %s\n' \
      "$r" "${out%% *}" "$(echo "$out" | cut -d' ' -f2-)" "$cpu" \
      "$(python3 -c "print(f'{($w1 - $w0) / 1e6:.1f}')")" "$reb"
    [ "$r" -gt 1 ] && total_cpu=$(python3 -c "print($total_cpu + $cpu)")
  done
  # The rebuilds settle a little after the answer (a background refresh).
  sleep 2
  echo "  cpu per round (rounds 2..$ROUNDS): $(python3 -c "print(f'{$total_cpu / max(1, $ROUNDS - 1):.2f}')") s"
  echo "  after $ROUNDS rounds: RSS $(rss_mb "$SPID") MB, open descriptors $(fds "$SPID"), database $(du -sh "$DB"* | awk '{s = s $1 " "} END {print s}')"
  if [ "$(rebuilds)" = n/a ]; then
    stop_server
    LOG="warn,sqlx::query=debug" start_server "$DB"
    sleep 1
    before=$(grep -c 'FROM mount_status ORDER BY' "$WORK/server.log" || true)
    round >/dev/null
    sleep 2
    after=$(grep -c 'FROM mount_status ORDER BY' "$WORK/server.log" || true)
    echo "  snapshot rebuilds in one round (counted in the query log): $((after - before))"
  fi
  stop_server

  if [ "$n" = "${RELAYS##* }" ]; then
    start_server "$DB"
    round >/dev/null
    echo "  redirects at $RATE req/s, idle:"
    loadgen
    echo "  redirects at $RATE req/s during back-to-back rounds:"
    ( end=$((SECONDS + LAT_SECONDS + 1)); while [ $SECONDS -lt $end ]; do round >/dev/null; done ) &
    rounds_pid=$!
    loadgen
    wait "$rounds_pid" || true
    stop_server

    # A soft limit of 1,024 as systemd sets it (the server raises it to the
    # hard limit), then a hard limit of 1,024 too (it cannot).
    for limit in "1024:$(ulimit -Hn)" 1024:1024; do
      echo "  under prlimit --nofile=$limit:"
      start_server "$DB" prlimit --nofile="$limit"
      for r in 1 2; do
        echo "    round $r: $(round)"
      done
      echo "    open descriptors $(fds "$SPID"); log errors: $(grep -c -i 'error' "$WORK/server.log" || true)"
      grep -i -m2 'unable to open\|too many open' "$WORK/server.log" | cut -c1-160 | sed 's/^/      /' || true
      stop_server
    done
  fi
done

echo "== 1000 relays, one in ten black-holed (poll timeout ${TIMEOUT}s)"
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()
start_relays 1000 "$WORK/relays.toml" --blackhole 0.1
DB="$WORK/poll-dark.db"
rm -f "$DB"*
"$BIN" --database "$DB" import "$WORK/relays.toml" >"$WORK/setup.log" 2>&1
start_server "$DB"
for r in 1 2 3; do
  echo "  round $r: $(round)"
done
