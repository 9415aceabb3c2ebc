//! Drizzle: `drizzle-kit migrate`; forward-only (no down migrations: forward-fix or restore);
//! journal table `drizzle.__drizzle_migrations`. All pending migrations run in one transaction.

use super::{dir_or, flag, MigrationTool, PendingSql};
use crate::config::Migrations;

pub struct Drizzle;

impl MigrationTool for Drizzle {
    fn name(&self) -> &'static str {
        "drizzle"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("npx --no-install drizzle-kit migrate{}", flag("--config", m.config.as_deref()))
    }
    fn revert(&self, _m: &Migrations) -> Option<String> {
        None
    }
    fn table(&self) -> Option<&'static str> {
        Some("drizzle.__drizzle_migrations")
    }
    fn pending_sql(&self, m: &Migrations) -> Option<PendingSql> {
        Some(PendingSql::Files(format!("{}/*.sql", dir_or(m, "drizzle"))))
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        let mut f: Vec<(&'static str, String)> =
            m.config.clone().map(|c| ("migrations.config", c)).into_iter().collect();
        f.push(("migrations.dir", format!("{}/meta/_journal.json", dir_or(m, "drizzle"))));
        f
    }
    fn needs(&self) -> &'static str {
        "node, `drizzle-kit`, `drizzle-orm` and `pg`, the drizzle config and the migrations folder"
    }
}
