#!/usr/bin/env bash
# The compose runtime end to end with real Docker (CI runners have it; this machine kind does not):
# a failing deploy is reverted, a bad down() falls back to restoring the backup, a good deploy
# lands, a manual rollback brings it back. Every check reads the real state.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
compose=(docker compose -f "$here/docker-compose.yml" --env-file "$here/env.e2e")
cleanup() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "E2E FAILED: $*" >&2; "${compose[@]}" ps -a >&2 || true; "${compose[@]}" logs --tail 50 >&2 || true; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release --locked --manifest-path "$root/Cargo.toml"
dg="$CARGO_TARGET_DIR/release/deploy-guard"

# The image carries the same migration tool the drill uses.
cp -R "$here/app" "$work/context"
cp "$root/src/simulate/files/migrate.sh" "$work/context/migrate.sh"
for release in v1 v2 v2-crash v2-bad-down; do
  docker build -q -t "dg-e2e-app:$release" --build-arg "RELEASE=$release" "$work/context" >/dev/null
done

APP_VERSION=v1 "${compose[@]}" up -d --wait
APP_VERSION=v1 "${compose[@]}" run --rm --no-deps -T backend /app/migrate.sh up
psql_() { "${compose[@]}" exec -T postgres psql -X -A -t -U shop -d shop -c "$1"; }
psql_ "INSERT INTO customers (name, email) SELECT 'Zoë ' || i, 'c' || i || '@example.org' FROM generate_series(1, 500) i;"
psql_ "INSERT INTO orders (customer_id, total) SELECT 1 + i % 500, i / 7.0 FROM generate_series(1, 1500) i;"
content() { psql_ "SELECT md5(string_agg(c::text, ',' ORDER BY id)) || (SELECT count(*) FROM orders) FROM customers c;"; }
before=$(content)

cat > "$work/deploy-guard.yml" <<YAML
project: compose-e2e
app:
  runtime: compose
  compose_file: $here/docker-compose.yml
  service: backend
  env_file: $here/env.e2e
  tag_variable: APP_VERSION
  health: { url: "http://127.0.0.1:18080/health", timeout: 20s, interval: 1s }
database:
  service: postgres
  name: \${DATABASE_NAME}
  user: \${DATABASE_USER}
migrations:
  tool: command
  run: /app/migrate.sh up
  revert: /app/migrate.sh down
  table: schema_migrations
  order_by: version
backup:
  store: file://$work/backups
YAML

running_tag() { docker inspect --format '{{.Config.Image}}' "$("${compose[@]}" ps -q backend)"; }
expect() { # expect CODE PATH -- deploy-guard args…
  local code=$1 path=$2; shift 3
  set +e; "$dg" "$@" --config "$work/deploy-guard.yml" --json > "$work/report.json"; local got=$?; set -e
  [ "$got" = "$code" ] || fail "$* exited $got, expected $code"
  grep -q "\"path\": \"$path\"" "$work/report.json" || fail "$* took another path than $path: $(cat "$work/report.json")"
}

"$dg" check --config "$work/deploy-guard.yml" || fail "check"

expect 1 revert -- deploy --sha 1111111111111111111111111111111111111111 --tag v2-crash
[ "$(running_tag)" = "dg-e2e-app:v1" ] || fail "after revert: $(running_tag) runs"
[ "$(psql_ 'SELECT count(*) FROM schema_migrations')" = 2 ] || fail "after revert: migrations"
[ "$(content)" = "$before" ] || fail "after revert: data changed"

expect 1 restore -- deploy --sha 2222222222222222222222222222222222222222 --tag v2-bad-down
[ "$(running_tag)" = "dg-e2e-app:v1" ] || fail "after restore: $(running_tag) runs"
[ "$(content)" = "$before" ] || fail "after restore: data changed"
[ "$(psql_ "SELECT count(*) FROM pg_database WHERE datname = 'shop__failed_2222222'")" = 1 ] || fail "broken db not kept"

expect 0 none -- deploy --sha 3333333333333333333333333333333333333333 --tag v2
[ "$(running_tag)" = "dg-e2e-app:v2" ] || fail "after deploy: $(running_tag) runs"
[ "$(psql_ 'SELECT count(*) FROM schema_migrations')" = 3 ] || fail "after deploy: migrations"

expect 0 revert -- rollback --sha 3333333
[ "$(running_tag)" = "dg-e2e-app:v1" ] || fail "after rollback: $(running_tag) runs"
[ "$(content)" = "$before" ] || fail "after rollback: data changed"

echo "compose e2e: 4 passed, 0 failed"
