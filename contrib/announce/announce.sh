#!/bin/sh
# Announces this relay to the balancer (POST /api/v1/relays/announce).
# Settings come from the environment (see announce.env): run it every
# minute from cron or icecast-balancer-announce.timer. A relay that stops
# announcing is drained by the balancer after --announce-drain-after
# (180 s by default) and removed after --announce-remove-after.
set -eu

: "${BALANCER_URL:?set BALANCER_URL, e.g. https://balancer.example.com}"
: "${RELAY_NAME:?set RELAY_NAME (letters, digits, - and _)}"
: "${RELAY_URL:?set RELAY_URL, where listeners are sent}"
: "${RELAY_MOUNTS:?set RELAY_MOUNTS, e.g. live=/live.mp3,talk=/talk.mp3}"
TOKEN_FILE=${TOKEN_FILE:-/etc/icecast-balancer-announce/token}

# The mounts as JSON: stream=/path[:max_listeners],…
mounts=""
old_ifs=$IFS; IFS=,
for m in $RELAY_MOUNTS; do
  stream=${m%%=*}; rest=${m#*=}; path=${rest%%:*}
  entry="{\"stream\":\"$stream\",\"mount\":\"$path\""
  case $rest in *:*) entry="$entry,\"max_listeners\":${rest#*:}" ;; esac
  mounts="$mounts${mounts:+,}$entry}"
done
IFS=$old_ifs

opt() { [ -n "$2" ] && printf ',"%s":%s' "$1" "$2" || true; }
str() { [ -n "$2" ] && printf ',"%s":"%s"' "$1" "$2" || true; }
body="{\"name\":\"$RELAY_NAME\",\"url\":\"$RELAY_URL\"$(str poll_url "${RELAY_POLL_URL:-}")$(str https_url "${RELAY_HTTPS_URL:-}")$(str country "${RELAY_COUNTRY:-}")$(opt latitude "${RELAY_LATITUDE:-}")$(opt longitude "${RELAY_LONGITUDE:-}")$(opt max_listeners "${RELAY_MAX_LISTENERS:-}"),\"mounts\":[$mounts]}"

# The token goes in a header read from a file, so it shows in no process list.
printf 'Authorization: Bearer %s\n' "$(head -n1 "$TOKEN_FILE")" |
  curl -fsS --max-time 20 -o /dev/null \
    -H @- -H 'Content-Type: application/json' \
    --data "$body" "$BALANCER_URL/api/v1/relays/announce"
