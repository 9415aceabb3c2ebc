#!/bin/sh
# The sample app's migration tool (the drill's, and the compose e2e image's):
# NNN_name.{up,down}.sql in releases/TAG/migrations (or $MIGRATIONS_DIR), recorded in
# schema_migrations; each migration and its record in one transaction. Connection from PG*.
# A migration whose first line is `-- no-transaction` (CREATE INDEX CONCURRENTLY cannot run in
# one) runs statement by statement, golang-migrate's way: its row is written `dirty` first and
# made clean once it has run, so one that stops part-way leaves the version dirty, and `up`
# refuses to go on until a person has checked the schema and run `force VERSION`.
set -eu
cd "$(dirname "$0")"
[ -f ./env.sh ] && . ./env.sh
dir=${MIGRATIONS_DIR:-releases/${2:-}/migrations}
psql_run() { psql -X -q -v ON_ERROR_STOP=1 --single-transaction "$@"; }
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, name text NOT NULL, dirty boolean NOT NULL DEFAULT false)" 2>/dev/null
case "${1:-}" in
  up)
    dirty=$(psql -X -A -t -c "SELECT version FROM schema_migrations WHERE dirty ORDER BY version LIMIT 1")
    [ -z "$dirty" ] || { echo "error: version $dirty is dirty (it stopped part-way): check the schema, then ./migrate.sh force VERSION" >&2; exit 1; }
    for f in "$dir"/*.up.sql; do
      [ -e "$f" ] || continue
      base=$(basename "$f" .up.sql); version=${base%%_*}; name=${base#*_}
      done_already=$(psql -X -A -t -c "SELECT 1 FROM schema_migrations WHERE version = '$version'")
      [ -n "$done_already" ] && continue
      echo "applying $base"
      if [ "$(head -n 1 "$f")" = "-- no-transaction" ]; then
        psql -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO schema_migrations VALUES ('$version', '$name', true)"
        psql -X -q -v ON_ERROR_STOP=1 -f "$f" ||
          { echo "error: $base stopped part-way: version $version is dirty" >&2; exit 1; }
        psql -X -q -v ON_ERROR_STOP=1 -c "UPDATE schema_migrations SET dirty = false WHERE version = '$version'"
      else
        { cat "$f"; echo; echo "INSERT INTO schema_migrations VALUES ('$version', '$name');"; } | psql_run -f -
      fi
    done ;;
  down)
    last=$(psql -X -A -t -c "SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1")
    [ -n "$last" ] || { echo "nothing to revert" >&2; exit 1; }
    f=$(ls "$dir"/"$last"_*.down.sql 2>/dev/null | head -n 1)
    [ -n "$f" ] || { echo "no down migration for $last in $dir" >&2; exit 1; }
    echo "reverting $(basename "$f" .down.sql)"
    { cat "$f"; echo; echo "DELETE FROM schema_migrations WHERE version = '$last';"; } | psql_run -f - ;;
  lacking)
    # The migrations without a down file: a release that applied one cannot be reverted.
    for f in "$dir"/*.up.sql; do
      [ -e "$f" ] || continue
      base=$(basename "$f" .up.sql)
      [ -e "$dir/$base.down.sql" ] || echo "${base#*_}"
    done ;;
  force)
    # The schema is at VERSION (checked by a person): newer rows go, VERSION's is clean.
    v=${2:?usage: migrate.sh force VERSION}
    psql_run -c "DELETE FROM schema_migrations WHERE version > '$v'" \
      -c "UPDATE schema_migrations SET dirty = false WHERE version = '$v'" ;;
  *) echo "usage: migrate.sh up|down|lacking [TAG] | force VERSION" >&2; exit 2 ;;
esac
