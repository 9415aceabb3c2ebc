//! The `node-pg-migrate` preset against real node-pg-migrate (tests/fixtures/node-pg-migrate,
//! from npm) on real PostgreSQL, through the drill scenarios.

use crate::common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};

fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for m in migrations {
        let text = format!("-- Up Migration\n{}\n-- Down Migration\n{}\n", m.up, m.down);
        std::fs::write(dir.join(format!("170000000000{}_{}.sql", m.n, m.slug)), text).unwrap();
    }
}

fn spec() -> ToolSpec {
    ToolSpec {
        tool: "node-pg-migrate",
        fixture: Some("node-pg-migrate"),
        files: vec![],
        yaml: "",
        write,
        setup: "npx --no-install node-pg-migrate up",
        state_sql: "SELECT count(*) FROM pgmigrations",
        state_v1: "1",
        state_v2: "2",
        path: vec![],
    }
}

reverting_tool_scenarios!(spec());

#[test]
fn a_missing_migrations_dir_is_bad_config() {
    let w = tool::World::new(spec(), "npm_missing", &[]);
    tool::missing_file_is_bad_config(
        &w,
        ("  timeout: 120s\n", "  timeout: 120s\n  dir: db/migrations\n"),
        "migrations.dir",
    );
}
