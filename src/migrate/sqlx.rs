//! sqlx-cli: `migrate run`, `migrate revert` (reversible `.up.sql`/`.down.sql` pairs); table
//! `_sqlx_migrations`. A migration that failed outside a transaction (`-- no-transaction`) leaves
//! its row with `success = false`, and sqlx refuses to go on ("dirty").

use super::{dir_or, psql, FailedState, MigrationTool, PendingSql};
use crate::config::Migrations;

pub struct Sqlx;

fn source(m: &Migrations) -> String {
    format!(" --source {}", super::q(dir_or(m, "migrations")))
}

impl MigrationTool for Sqlx {
    fn name(&self) -> &'static str {
        "sqlx"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("sqlx migrate run{}", source(m))
    }
    fn revert(&self, m: &Migrations) -> Option<String> {
        Some(format!("sqlx migrate revert{}", source(m)))
    }
    fn table(&self) -> Option<&'static str> {
        Some("_sqlx_migrations")
    }
    fn order_by(&self) -> &'static str {
        "version"
    }
    fn failed_state(&self, m: &Migrations) -> Option<FailedState> {
        Some(FailedState {
            table: "_sqlx_migrations".into(),
            sql: "SELECT 'migration ' || version || ' (' || description || ') is dirty: success = false' \
                  FROM _sqlx_migrations WHERE NOT success ORDER BY version;"
                .into(),
            inspect: vec![format!("sqlx migrate info{}", source(m))],
            clear: vec![
                "# sqlx has no command to clear it: finish or undo the migration's SQL by hand, then".into(),
                psql("DELETE FROM _sqlx_migrations WHERE NOT success;"),
            ],
        })
    }
    fn pending_sql(&self, m: &Migrations) -> Option<PendingSql> {
        Some(PendingSql::Files(format!("{}/*.up.sql", dir_or(m, "migrations"))))
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        vec![("migrations.dir", dir_or(m, "migrations").to_string())]
    }
    fn needs(&self) -> &'static str {
        "the `sqlx` binary (sqlx-cli, features postgres) and the migrations folder; DATABASE_URL"
    }
}
