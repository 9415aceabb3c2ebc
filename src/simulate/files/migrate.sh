#!/bin/sh
# The sample app's migration tool (the drill's, and the compose e2e image's):
# NNN_name.{up,down}.sql in releases/TAG/migrations (or $MIGRATIONS_DIR), recorded in
# schema_migrations; each migration and its record in one transaction. Connection from PG*.
set -eu
cd "$(dirname "$0")"
[ -f ./env.sh ] && . ./env.sh
dir=${MIGRATIONS_DIR:-releases/${2:-}/migrations}
psql_run() { psql -X -q -v ON_ERROR_STOP=1 --single-transaction "$@"; }
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, name text NOT NULL)" 2>/dev/null
case "${1:-}" in
  up)
    for f in "$dir"/*.up.sql; do
      [ -e "$f" ] || continue
      base=$(basename "$f" .up.sql); version=${base%%_*}; name=${base#*_}
      done_already=$(psql -X -A -t -c "SELECT 1 FROM schema_migrations WHERE version = '$version'")
      [ -n "$done_already" ] && continue
      echo "applying $base"
      { cat "$f"; echo; echo "INSERT INTO schema_migrations VALUES ('$version', '$name');"; } | psql_run -f -
    done ;;
  down)
    last=$(psql -X -A -t -c "SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1")
    [ -n "$last" ] || { echo "nothing to revert" >&2; exit 1; }
    f=$(ls "$dir"/"$last"_*.down.sql 2>/dev/null | head -n 1)
    [ -n "$f" ] || { echo "no down migration for $last in $dir" >&2; exit 1; }
    echo "reverting $(basename "$f" .down.sql)"
    { cat "$f"; echo; echo "DELETE FROM schema_migrations WHERE version = '$last';"; } | psql_run -f - ;;
  *) echo "usage: migrate.sh up|down [TAG]" >&2; exit 2 ;;
esac
