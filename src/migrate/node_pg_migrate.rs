//! node-pg-migrate: `up`, `down 1`; table `pgmigrations`. Each run holds an advisory lock that
//! ends with its session, so a crash leaves no dirty state behind.

use super::{dir_or, flag, MigrationTool, PendingSql};
use crate::config::Migrations;

pub struct NodePgMigrate;

fn args(m: &Migrations) -> String {
    format!("{}{}", flag("-m", m.dir.as_deref()), flag("-f", m.config.as_deref()))
}

impl MigrationTool for NodePgMigrate {
    fn name(&self) -> &'static str {
        "node-pg-migrate"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("npx --no-install node-pg-migrate up{}", args(m))
    }
    fn revert(&self, m: &Migrations) -> Option<String> {
        Some(format!("npx --no-install node-pg-migrate down 1{}", args(m)))
    }
    fn table(&self) -> Option<&'static str> {
        Some("pgmigrations")
    }
    fn pending_sql(&self, m: &Migrations) -> Option<PendingSql> {
        Some(PendingSql::Files(format!("{}/*.sql", dir_or(m, "migrations"))))
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        let mut f = vec![("migrations.dir", dir_or(m, "migrations").to_string())];
        f.extend(m.config.clone().map(|c| ("migrations.config", c)));
        f
    }
    fn needs(&self) -> &'static str {
        "node, `node-pg-migrate` and `pg`; DATABASE_URL"
    }
}
