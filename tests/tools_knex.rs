//! The `knex` preset against real knex (tests/fixtures/knex, from npm) on real PostgreSQL,
//! through the drill scenarios, and knex's dirty state: a run that crashed leaves
//! `knex_migrations_lock` locked.

mod common;

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
