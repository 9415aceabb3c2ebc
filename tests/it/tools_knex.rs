//! The `knex` preset against real knex (tests/fixtures/knex, from npm) on real PostgreSQL,
//! through the drill scenarios, and knex's dirty state: a run that crashed leaves
//! `knex_migrations_lock` locked.

use crate::common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};

const KNEXFILE: &str = r#"// The connection comes from DATABASE_URL, so the same file works for any database.
module.exports = {
  client: "pg",
  connection: process.env.DATABASE_URL,
  migrations: { directory: "./migrations" },
};
"#;

fn js(sql: &str) -> String {
    serde_json::to_string(sql).unwrap()
}

fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for m in migrations {
        let up = if m.up == "CRASH" {
            // The tool dies half-way (an OOM kill, a cancelled job): knex never frees its lock.
            format!("  await knex.raw({});\n  process.exit(137);", js("CREATE TABLE half_done (id int);"))
        } else {
            format!("  await knex.raw({});", js(m.up))
        };
        // A migration that cannot run in a transaction (CREATE INDEX CONCURRENTLY): knex then
        // takes its lock in a transaction of its own, committed before the migration runs.
        let config = if m.up == "CRASH" { "exports.config = { transaction: false };\n\n" } else { "" };
        let text = format!(
            "{config}exports.up = async function (knex) {{\n{up}\n}};\n\nexports.down = async function (knex) {{\n  await knex.raw({});\n}};\n",
            js(m.down)
        );
        std::fs::write(dir.join(format!("2024010100000{}_{}.js", m.n, m.slug)), text).unwrap();
    }
}

fn spec() -> ToolSpec {
    ToolSpec {
        tool: "knex",
        fixture: Some("knex"),
        files: vec![("knexfile.js", KNEXFILE.into())],
        yaml: "",
        write,
        setup: "npx --no-install knex migrate:latest",
        state_sql: "SELECT count(*) FROM knex_migrations",
        state_v1: "1",
        state_v2: "2",
        path: vec![],
    }
}

reverting_tool_scenarios!(spec());

#[test]
fn a_crashed_run_leaves_the_lock_and_the_next_deploy_is_refused() {
    let w = tool::World::new(spec(), "knex_dirty", &[]);
    w.release("crash", "CRASH", tool::DROP_NICKNAME);
    let out = w.sh("npx --no-install knex migrate:latest");
    assert_eq!(out.status.code(), Some(137), "the tool crashed");
    assert_eq!(w.psql("SELECT is_locked FROM knex_migrations_lock"), "1", "knex left its lock");
    std::fs::remove_file(w.app().join("migrations/20240101000002_crash.js")).unwrap();
    tool::dirty_refuses_deploy(&w, "knex migrate:unlock");
    // The tool's own command clears it, and the deploy goes through.
    let out = w.sh("npx --no-install knex migrate:unlock");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(0), "deployed".into(), "none".into()), "{}", common::stderr(&out));
}

#[test]
fn a_missing_knexfile_is_bad_config() {
    let w = tool::World::new(spec(), "knex_missing", &[]);
    tool::missing_file_is_bad_config(
        &w,
        ("  timeout: 120s\n", "  timeout: 120s\n  config: knexfile.prod.js\n"),
        "migrations.config",
    );
}

/// A deploy whose migration crashes knex half-way: the lock is left and the schema changed, so
/// the assessment reads the tool's dirty state, the fast path is not taken, and the backup is
/// restored (with the lock as it was before the deploy).
#[test]
fn a_crash_during_the_deploy_skips_the_fast_path_and_restores() {
    let w = tool::World::new(spec(), "knex_crash_deploy", &[]);
    w.release("crash", "CRASH", tool::DROP_NICKNAME);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", common::stderr(&out));
    let r = common::json(&out);
    let assess = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "assess").expect("an assess step");
    assert!(assess["detail"].as_str().unwrap().contains("dirty or failed state"), "{assess:#}");
    assert_eq!(w.psql("SELECT to_regclass('half_done') IS NULL"), "t");
    assert_eq!(w.psql("SELECT is_locked FROM knex_migrations_lock"), "0");
    w.assert_back_at_v1("nickname");
}
