//! knex: `migrate:latest`, `migrate:down` (one migration); table `knex_migrations`. A run that
//! crashed leaves `knex_migrations_lock.is_locked = 1`, and knex refuses to run until unlocked.

use super::{flag, psql, FailedState, MigrationTool};
use crate::config::Migrations;

pub struct Knex;

fn knexfile(m: &Migrations) -> String {
    flag("--knexfile", m.config.as_deref())
}

impl MigrationTool for Knex {
    fn name(&self) -> &'static str {
        "knex"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("npx --no-install knex migrate:latest{}", knexfile(m))
    }
    fn revert(&self, m: &Migrations) -> Option<String> {
        Some(format!("npx --no-install knex migrate:down{}", knexfile(m)))
    }
    fn table(&self) -> Option<&'static str> {
        Some("knex_migrations")
    }
    fn failed_state(&self, m: &Migrations) -> Option<FailedState> {
        Some(FailedState {
            table: "knex_migrations_lock".into(),
            sql: "SELECT 'knex_migrations_lock is locked (a migration run crashed or is still running)' \
                  FROM knex_migrations_lock WHERE is_locked <> 0;"
                .into(),
            inspect: vec![
                format!("npx --no-install knex migrate:status{}", knexfile(m)),
                psql("SELECT * FROM knex_migrations_lock;"),
            ],
            clear: vec![format!("npx --no-install knex migrate:unlock{}", knexfile(m))],
        })
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        vec![("migrations.config", m.config.clone().unwrap_or_else(|| "knexfile.js".into()))]
    }
    fn needs(&self) -> &'static str {
        "node, `knex` and `pg`, the knexfile"
    }
}
