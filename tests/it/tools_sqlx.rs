//! The `sqlx` preset against real sqlx-cli (crates.io, installed by scripts/setup into
//! ~/.cargo/bin) on real PostgreSQL, through the drill scenarios, and sqlx's dirty state.

use crate::common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};

fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for m in migrations {
        std::fs::write(dir.join(format!("000{}_{}.up.sql", m.n, m.slug)), format!("{}\n", m.up)).unwrap();
        std::fs::write(dir.join(format!("000{}_{}.down.sql", m.n, m.slug)), format!("{}\n", m.down)).unwrap();
    }
}

fn spec() -> ToolSpec {
    let bin = tool::cargo_bin();
    tool::require(
        &bin.join("sqlx"),
        "cargo install sqlx-cli --version 0.9.0 --no-default-features --features postgres,rustls --locked",
    );
    ToolSpec {
        tool: "sqlx",
        fixture: None,
        files: vec![],
        yaml: "",
        write,
        setup: "sqlx migrate run --source migrations",
        state_sql: "SELECT count(*) FROM _sqlx_migrations WHERE success",
        state_v1: "1",
        state_v2: "2",
        path: vec![bin],
    }
}

reverting_tool_scenarios!(spec());

/// A `-- no-transaction` migration that fails half-way: `CREATE UNIQUE INDEX CONCURRENTLY` on
/// duplicates leaves an INVALID index behind, and sqlx 0.9 records no row (it writes the row only
/// after the SQL succeeded), so only the schema tells. The schema changed with nothing recorded as
/// applied: the fast path is not trusted, the backup is restored.
#[test]
fn a_migration_outside_a_transaction_fails_half_way_and_is_restored() {
    let w = tool::World::new(spec(), "sqlx_half", &[]);
    w.release(
        "unique_name_length",
        "-- no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY users_name_length_key ON users (length(name));",
        "DROP INDEX users_name_length_key;",
    );
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", common::stderr(&out));
    assert_eq!(w.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_name_length_key'"), "0");
    w.assert_back_at_v1("tier");
}

/// `_sqlx_migrations.success = false`: the dirty state sqlx itself refuses to run over ("partially
/// applied"). sqlx 0.9 no longer writes it (its row is written after the SQL succeeds), older
/// versions did, and a table carried over from them keeps it: the row is set here by SQL, and the
/// real sqlx shows it refuses it too.
#[test]
fn a_dirty_row_refuses_the_deploy() {
    let w = tool::World::new(spec(), "sqlx_dirty", &[]);
    w.psql("UPDATE _sqlx_migrations SET success = false WHERE version = 1");
    let out = w.sh("sqlx migrate run --source migrations");
    let said = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(!out.status.success() && said.contains("partially applied"), "{said}");
    let mut spec = spec();
    spec.state_sql = "SELECT count(*) FROM _sqlx_migrations";
    let w = tool::World { spec, ..w };
    tool::dirty_refuses_deploy(&w, "sqlx migrate info --source migrations");
}

#[test]
fn a_missing_migrations_dir_is_bad_config() {
    let w = tool::World::new(spec(), "sqlx_missing", &[]);
    tool::missing_file_is_bad_config(
        &w,
        ("  timeout: 120s\n", "  timeout: 120s\n  dir: db/migrations\n"),
        "migrations.dir",
    );
}
