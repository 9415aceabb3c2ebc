//! Alembic: `upgrade head`; `alembic_version` holds only the head (one row that changes), so
//! what a deploy applied is "from the recorded head to the new one", and the revert is
//! `downgrade <recorded head>` (`base` when nothing was applied before).

use serde_json::Value;

use super::{flag, History, MigrationTool, PendingSql};
use crate::config::Migrations;

pub struct Alembic;

fn alembic(m: &Migrations) -> String {
    format!("alembic{}", flag("-c", m.config.as_deref()))
}

impl MigrationTool for Alembic {
    fn name(&self) -> &'static str {
        "alembic"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("{} upgrade head", alembic(m))
    }
    fn revert(&self, m: &Migrations) -> Option<String> {
        Some(format!("{} downgrade {{head}}", alembic(m)))
    }
    fn table(&self) -> Option<&'static str> {
        Some("alembic_version")
    }
    fn order_by(&self) -> &'static str {
        "version_num"
    }
    fn history(&self) -> History {
        History::HeadOnly
    }
    fn revert_target(&self, recorded: &[Value]) -> Option<String> {
        let head = recorded.first().and_then(|r| r["version_num"].as_str());
        Some(head.unwrap_or("base").to_string())
    }
    fn pending_sql(&self, m: &Migrations) -> Option<PendingSql> {
        // Alembic's offline mode prints the SQL of a revision range without running it.
        Some(PendingSql::Command(format!("{} upgrade {{head}}:head --sql", alembic(m))))
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        vec![("migrations.config", m.config.clone().unwrap_or_else(|| "alembic.ini".into()))]
    }
    fn needs(&self) -> &'static str {
        "python with `alembic` and a PostgreSQL driver (psycopg2), alembic.ini and the versions"
    }
}
