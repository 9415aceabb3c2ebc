//! The `drizzle` preset against real drizzle-kit (tests/fixtures/drizzle, from npm) on real
//! PostgreSQL. Drizzle is forward-only: no bad-down or lying-down; an unhealthy release goes
//! straight to restore, and `rollback --path revert` is bad usage.

use crate::common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};

const CONFIG: &str = r#"// The connection comes from DATABASE_URL, so the same file works for any database.
module.exports = {
  dialect: "postgresql",
  out: "./drizzle",
  dbCredentials: { url: process.env.DATABASE_URL },
};
"#;

/// drizzle-kit's layout: `drizzle/NNNN_tag.sql` (statements split by `--> statement-breakpoint`)
/// and the journal `drizzle/meta/_journal.json` listing them.
fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("drizzle");
    std::fs::create_dir_all(dir.join("meta")).unwrap();
    let mut entries = Vec::new();
    for m in migrations {
        let tag = format!("000{}_{}", m.n - 1, m.slug);
        let sql = m.up.replace(";\n", ";\n--> statement-breakpoint\n");
        std::fs::write(dir.join(format!("{tag}.sql")), sql).unwrap();
        entries.push(serde_json::json!({
            "idx": m.n - 1, "version": "7", "when": 1_700_000_000_000u64 + m.n as u64, "tag": tag, "breakpoints": true
        }));
    }
    let journal = serde_json::json!({"version": "7", "dialect": "postgresql", "entries": entries});
    std::fs::write(dir.join("meta/_journal.json"), serde_json::to_string_pretty(&journal).unwrap()).unwrap();
}

fn spec() -> ToolSpec {
    ToolSpec {
        tool: "drizzle",
        fixture: Some("drizzle"),
        files: vec![("drizzle.config.js", CONFIG.into())],
        yaml: "  config: drizzle.config.js\n",
        write,
        setup: "npx --no-install drizzle-kit migrate --config drizzle.config.js",
        state_sql: "SELECT count(*) FROM drizzle.__drizzle_migrations",
        state_v1: "1",
        state_v2: "2",
        path: vec![],
    }
}

#[test]
fn happy() {
    tool::happy(spec());
}

/// drizzle-kit 0.31.11 prints the database's error nowhere (not on stderr, not on stdout): the
/// end of its stdout is quoted, its spinner's escape codes removed.
#[test]
fn migration_fails() {
    tool::migration_fails_saying(spec(), "Using 'pg' driver for database querying\n[⣷] applying migrations...");
}

#[test]
fn unhealthy_after_migrate_goes_straight_to_restore() {
    tool::unhealthy_restores(spec());
}

#[test]
fn rollback_path_revert_is_bad_usage() {
    tool::revert_is_bad_usage(spec());
}

/// After a healthy deploy, a mistaken `--path revert` changes nothing and blocks nothing.
#[test]
fn rollback_path_revert_after_a_deploy_changes_nothing() {
    let v2 = [Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: "" }];
    tool::revert_of_a_forward_only_release_is_refused(spec(), "drizzle_rev", &v2, "drizzle");
}

#[test]
fn a_missing_config_is_bad_config() {
    let w = tool::World::new(spec(), "drizzle_missing", &[]);
    tool::missing_file_is_bad_config(
        &w,
        ("config: drizzle.config.js", "config: drizzle.prod.config.js"),
        "migrations.config",
    );
}
