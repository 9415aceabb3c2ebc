//! The `dbmate` preset against real dbmate (the npm package `dbmate`, whose binary comes in an
//! optional dependency; tests/fixtures/dbmate) on real PostgreSQL, through the drill scenarios.

use crate::common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};

fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("db/migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for m in migrations {
        let text = format!("-- migrate:up\n{}\n\n-- migrate:down\n{}\n", m.up, m.down);
        std::fs::write(dir.join(format!("2024010100000{}_{}.sql", m.n, m.slug)), text).unwrap();
    }
}

fn spec() -> ToolSpec {
    ToolSpec {
        tool: "dbmate",
        fixture: Some("dbmate"),
        files: vec![],
        yaml: "",
        write,
        setup: "dbmate --no-dump-schema up",
        state_sql: "SELECT count(*) FROM schema_migrations",
        state_v1: "1",
        state_v2: "2",
        path: vec![tool::fixture_dir("dbmate").join("node_modules/.bin")],
    }
}

reverting_tool_scenarios!(spec());

#[test]
fn a_missing_migrations_dir_is_bad_config() {
    let w = tool::World::new(spec(), "dbmate_missing", &[]);
    tool::missing_file_is_bad_config(
        &w,
        ("  timeout: 120s\n", "  timeout: 120s\n  dir: migrations\n"),
        "migrations.dir",
    );
}
