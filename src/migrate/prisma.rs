//! Prisma: `migrate deploy`; forward-only except where a migration has a hand-written
//! `rollback.sql` beside its `migration.sql`. The revert applies that file and deletes the
//! migration's row in one transaction: `migrate resolve --rolled-back` accepts only a *failed*
//! migration, so it cannot mark a successful one as reverted; without its row, Prisma sees the
//! migration as not applied (and `migrate deploy` applies it again). `_prisma_migrations.id` is a
//! random UUID: rows are ordered by `started_at`. A failed `migrate deploy` leaves a row with
//! `finished_at IS NULL` (PostgreSQL rolled the SQL back): the failed state Prisma refuses to
//! deploy over until `migrate resolve` clears it.

use serde_json::Value;

use super::{dir_or, flag, psql, FailedState, MigrationTool, PendingSql};
use crate::config::Migrations;

pub struct Prisma;

fn schema(m: &Migrations) -> String {
    flag("--schema", m.config.as_deref())
}

impl MigrationTool for Prisma {
    fn name(&self) -> &'static str {
        "prisma"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("npx --no-install prisma migrate deploy{}", schema(m))
    }
    fn revert(&self, m: &Migrations) -> Option<String> {
        let dir = super::q(dir_or(m, "prisma/migrations"));
        Some(format!(
            "set -eu; \
             name=$(psql \"${{DATABASE_URL:-}}\" -X -A -t -v ON_ERROR_STOP=1 -c \"SELECT migration_name FROM \
             _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY started_at DESC \
             LIMIT 1\"); \
             [ -n \"$name\" ] || {{ echo 'no applied Prisma migration to revert' >&2; exit 1; }}; \
             [ -f {dir}/\"$name\"/rollback.sql ] || {{ echo \"$name has no rollback.sql: restoring the backup is \
             the only way back\" >&2; exit 1; }}; \
             echo \"reverting $name with its rollback.sql\"; \
             psql \"${{DATABASE_URL:-}}\" -X -q -v ON_ERROR_STOP=1 --single-transaction -f {dir}/\"$name\"/rollback.sql \
             -c \"DELETE FROM _prisma_migrations WHERE migration_name = '$name'\""
        ))
    }
    fn missing_downs(&self, m: &Migrations) -> Option<String> {
        let dir = super::q(dir_or(m, "prisma/migrations"));
        Some(format!("cd {dir} && for d in */; do [ -f \"$d\"rollback.sql ] || echo \"${{d%/}}\"; done"))
    }
    fn table(&self) -> Option<&'static str> {
        Some("_prisma_migrations")
    }
    fn order_by(&self) -> &'static str {
        "started_at"
    }
    fn counts(&self, row: &Value) -> bool {
        !row["finished_at"].is_null() && row["rolled_back_at"].is_null()
    }
    fn failed_state(&self, m: &Migrations) -> Option<FailedState> {
        Some(FailedState {
            table: "_prisma_migrations".into(),
            // The start of its logs, whitespace squashed: the native engine's first line is only
            // "Database error code: 23502", the adapter's "external connector error".
            sql: "SELECT 'migration ' || migration_name || ' failed' || coalesce(': ' || \
                  left(regexp_replace(btrim(logs), '\\s+', ' ', 'g'), 200), '') FROM _prisma_migrations \
                  WHERE rolled_back_at IS NULL AND (finished_at IS NULL OR logs IS NOT NULL) ORDER BY started_at;"
                .into(),
            inspect: vec![
                format!("npx --no-install prisma migrate status{}", schema(m)),
                psql(
                    "SELECT migration_name, started_at, finished_at, rolled_back_at, logs FROM _prisma_migrations \
                     ORDER BY started_at;",
                ),
            ],
            clear: vec![
                "# the SQL of a failed migration was rolled back by PostgreSQL (check the schema), then:".into(),
                format!("npx --no-install prisma migrate resolve --rolled-back MIGRATION_NAME{}", schema(m)),
            ],
        })
    }
    fn pending_sql(&self, m: &Migrations) -> Option<PendingSql> {
        Some(PendingSql::Files(format!("{}/*/migration.sql", dir_or(m, "prisma/migrations"))))
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        let mut f = vec![("migrations.dir", dir_or(m, "prisma/migrations").to_string())];
        f.extend(m.config.clone().map(|c| ("migrations.config", c)));
        f
    }
    fn needs(&self) -> &'static str {
        "node, `prisma` with its schema engine (the native one, or Prisma 6.19's WebAssembly one through a driver \
         adapter), the migrations folder; `psql` for rollback.sql; DATABASE_URL"
    }
}
