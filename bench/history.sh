#!/usr/bin/env bash
# Listener history at scale: what a week of it at 1,000 mounts costs on
# disk and what it does to the dashboard and /api/status.
#
# 1,000 relays with one configured mount each (streams of 20) are imported
# (no relay is started: the history is written directly with sqlite3, as
# the poll would have left it), then the balancer serves the admin and the
# page times are the median of REPEAT requests, logged in.
#
# With a release build that still has the raw `mount_history` table (one
# row per mount per 15 s poll) it writes DAYS (default 1) of raw samples;
# with the rollups (migration 0006) a full week: 5-minute peaks for the
# last day and hourly peaks for the week.
#
# With RATE (redirects per second), also the listeners' side of a heavy
# admin page: redirect latency (bench/tools/loadgen.rs, open loop, 10 s) idle
# and while the dashboard is fetched back to back. No relay runs, so the
# redirects are answered 503 "no relay available" (the same path up to the
# answer; --full-recheck 0 so none waits for a poll).
#
#   bench/history.sh
#   BALANCER=/path/to/old/icecast-balancer DAYS=1 bench/history.sh
#   RATE=2000 REPEAT=1 bench/history.sh
#
# Needs: cargo, python3, curl, sqlite3.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MOUNTS=${MOUNTS:-1000}
DAYS=${DAYS:-1}
REPEAT=${REPEAT:-5}
need python3 cargo curl sqlite3
build_all

python3 - "$MOUNTS" > "$WORK/config.toml" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    print(f'[[servers]]\nname = "relay-{i:05}"\nurl = "http://127.0.0.1:{10000 + i}"\n')
for i in range(n):
    if i % 20 == 0:
        print(f'[[streams]]\nname = "s{i // 20}"\n')
    print(f'[[streams.mounts]]\nserver = "relay-{i:05}"\nmount = "/live.mp3"\n')
PY
DB="$WORK/history.db"
"$BIN" --database "$DB" import "$WORK/config.toml" >"$WORK/setup.log" 2>&1 \
  || { echo "bench: import failed" >&2; tail "$WORK/setup.log" >&2; exit 1; }

NOW=$(($(date +%s) * 1000))
if [ "$(sqlite3 "$DB" "SELECT COUNT(*) FROM sqlite_master WHERE name = 'mount_history'")" = 1 ]; then
  SAMPLES=$((DAYS * 86400 / 15))
  echo "raw history: $DAYS day(s) of 15 s samples at $MOUNTS mounts ($((SAMPLES * MOUNTS)) rows)..."
  sqlite3 "$DB" <<SQL
PRAGMA journal_mode = WAL;
WITH RECURSIVE t(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM t WHERE k < $SAMPLES - 1)
INSERT INTO mount_history (server_id, mount, at, listeners, max_listeners)
SELECT m.server_id, m.mount, $NOW - t.k * 15000, (t.k * 7 + m.id) % 400, 1000 FROM t, mounts m;
SQL
else
  echo "rollups: a week at $MOUNTS mounts (minute peaks for 2 h, 5-minute for a day, hourly for 7 days)..."
  sqlite3 "$DB" <<SQL
PRAGMA journal_mode = WAL;
WITH RECURSIVE t(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM t WHERE k < 119)
INSERT INTO history_1m (mount_id, bucket, listeners)
SELECT m.id, ($NOW / 60000 - t.k) * 60000, (t.k * 7 + m.id) % 400 FROM t, mounts m;
WITH RECURSIVE t(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM t WHERE k < 287)
INSERT INTO history_5m (mount_id, bucket, listeners)
SELECT m.id, ($NOW / 300000 - t.k) * 300000, (t.k * 7 + m.id) % 400 FROM t, mounts m;
WITH RECURSIVE t(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM t WHERE k < 167)
INSERT INTO history_1h (mount_id, bucket, listeners)
SELECT m.id, ($NOW / 3600000 - t.k) * 3600000, (t.k * 7 + m.id) % 400 FROM t, mounts m;
SQL
fi
sqlite3 "$DB" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
echo "database: $(du -sh "$DB" | cut -f1)"

PORT=$(free_port)
ICECAST_BALANCER_ADMIN_PASSWORD=bench-only RUST_LOG=warn \
  "$BIN" --database "$DB" --listen "127.0.0.1:$PORT" --poll-interval 0 \
  --full-recheck 0 >"$WORK/server.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PORT/healthz"
echo "database after the server's first start (a one-time VACUUM on an old file): $(du -sh "$DB" | cut -f1)"

JAR="$WORK/cookies"
token=$(curl -s -c "$JAR" "http://127.0.0.1:$PORT/admin/login" | sed -n 's/.*name="login_token" value="\([^"]*\)".*/\1/p')
code=$(curl -s -o /dev/null -w '%{http_code}' -b "$JAR" -c "$JAR" \
  --data-urlencode "login_token=$token" --data-urlencode "username=admin" \
  --data-urlencode "password=bench-only" --data-urlencode "next=/admin/" \
  "http://127.0.0.1:$PORT/admin/login")
[ "$code" = 303 ] || [ "$code" = 302 ] || { echo "bench: login answered $code" >&2; exit 1; }

timed() {
  local t
  for _ in $(seq 1 "$REPEAT"); do
    t=$(curl -s -o "$WORK/page" -w '%{http_code} %{time_total}' -b "$JAR" "http://127.0.0.1:$PORT$1")
    [ "${t%% *}" = 200 ] || { echo "bench: $1 answered ${t%% *}" >&2; exit 1; }
    echo "${t#* }"
  done > "$WORK/times"
  printf '  %-14s median %s ms over %s requests (%s bytes)\n' "$1" \
    "$(python3 -c 'import statistics, sys; print(f"{statistics.median(float(x) for x in open(sys.argv[1])) * 1000:.0f}")' "$WORK/times")" \
    "$REPEAT" "$(wc -c < "$WORK/page")"
}
timed /admin/
timed /api/status

if [ -n "${RATE:-}" ]; then
  redirects() {
    "$LOADGEN" --url "http://127.0.0.1:$PORT/icecast_balancer/s0/" --rate "$RATE" \
      --duration 10 --connections 32 --xff-count 1000 | sed 's/^/    /'
  }
  echo "redirects at $RATE req/s, idle:"
  redirects
  echo "redirects at $RATE req/s while the dashboard is fetched back to back:"
  (while :; do curl -s -o /dev/null -b "$JAR" "http://127.0.0.1:$PORT/admin/"; done) &
  LOOP=$!
  PIDS+=($LOOP)
  redirects
  kill "$LOOP"
fi
