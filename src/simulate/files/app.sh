#!/bin/sh
# The drill's sample app: "runs" a release tag; healthy when the release is and the database answers.
set -eu
cd "$(dirname "$0")"
. ./env.sh
case "$1" in
  deploy)
    [ -d "releases/$2" ] || { echo "no release $2" >&2; exit 1; }
    printf '%s\n' "$2" > state/tag
    touch state/running
    # A release that writes when it starts (signups, edits) writes once.
    if [ -f "releases/$2/writes.sql" ] && [ ! -f "state/wrote-$2" ]; then
      psql -X -q -v ON_ERROR_STOP=1 -f "releases/$2/writes.sql" && touch "state/wrote-$2"
    fi
    echo "$(date -u +%FT%TZ) started $2" >> state/log ;;
  stop)
    rm -f state/running
    echo "$(date -u +%FT%TZ) stopped" >> state/log ;;
  current-tag) cat state/tag ;;
  status)
    if [ -f state/running ]; then echo "running $(cat state/tag)"; else echo "stopped ($(cat state/tag))"; fi ;;
  logs) tail -n "${2:-20}" state/log ;;
  health)
    [ -f state/running ] || { echo "not running" >&2; exit 1; }
    tag=$(cat state/tag)
    if [ ! -f "releases/$tag/healthy" ]; then
      echo "$(date -u +%FT%TZ) $tag: TypeError: cannot read properties of undefined (reading 'tier')" >> state/log
      exit 1
    fi
    psql -X -q -A -t -c "SELECT count(*) FROM customers" > /dev/null ;;
  *) echo "usage: app.sh deploy TAG|stop|current-tag|status|logs [N]|health" >&2; exit 2 ;;
esac
