//! dbmate: `up`, `rollback`; table `schema_migrations` (version). Each migration runs in its own
//! transaction, and dbmate records no failed state.

use super::{dir_or, MigrationTool, PendingSql};
use crate::config::Migrations;

pub struct Dbmate;

fn args(m: &Migrations) -> String {
    format!("dbmate --no-dump-schema --migrations-dir {}", super::q(dir_or(m, "db/migrations")))
}

impl MigrationTool for Dbmate {
    fn name(&self) -> &'static str {
        "dbmate"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("{} up", args(m))
    }
    fn revert(&self, m: &Migrations) -> Option<String> {
        Some(format!("{} rollback", args(m)))
    }
    fn table(&self) -> Option<&'static str> {
        Some("schema_migrations")
    }
    fn order_by(&self) -> &'static str {
        "version"
    }
    fn pending_sql(&self, m: &Migrations) -> Option<PendingSql> {
        Some(PendingSql::Files(format!("{}/*.sql", dir_or(m, "db/migrations"))))
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        vec![("migrations.dir", dir_or(m, "db/migrations").to_string())]
    }
    fn needs(&self) -> &'static str {
        "the `dbmate` binary (or the npm package) and the migrations folder; DATABASE_URL"
    }
}
