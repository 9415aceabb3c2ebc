//! The `prisma` preset, as far as it runs without Prisma's native schema engine.
//!
//! What was tried: `prisma migrate deploy` of prisma 7.10.1 (tests/fixtures/prisma, from npm)
//! fetches `schema-engine` from Prisma's own server at first use (`request to
//! https://binaries.prisma.sh/…/schema-engine.gz.sha256 failed … ENOTFOUND`), which these machines
//! cannot reach; no npm, PyPI or crates.io package ships that binary. So the end-to-end `migrate
//! deploy` runs where the engine downloads, and here everything that does not need the engine
//! runs against real PostgreSQL and real psql: the preset's revert (a migration's `rollback.sql`
//! and its row's removal, in one transaction), `_prisma_migrations` read in `started_at` order
//! (its `id` is a random UUID), and Prisma's failed state refusing a deploy through the binary.
//!
//! The `_prisma_migrations` table and its rows are written here by SQL exactly as Prisma's schema
//! engine writes them (the table's DDL is Prisma's own).

mod common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};
use deploy_guard::config::{Migrations, Tool};
use deploy_guard::migrate::Migrator;

/// Prisma's own DDL for its migration table (schema-engine, PostgreSQL flavour).
const PRISMA_TABLE: &str = r#"CREATE TABLE "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
);"#;

fn name(n: usize, slug: &str) -> String {
    format!("2024010100000{n}_{slug}")
}

/// `prisma/migrations/NAME/migration.sql`, and `rollback.sql` beside it unless the down is empty.
fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("prisma/migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("migration_lock.toml"), "provider = \"postgresql\"\n").unwrap();
    for m in migrations {
        let d = dir.join(name(m.n, m.slug));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("migration.sql"), format!("{}\n", m.up)).unwrap();
        if !m.down.is_empty() {
            std::fs::write(d.join("rollback.sql"), format!("{}\n", m.down)).unwrap();
        }
    }
}

/// The database at v1 as `migrate deploy` leaves it: the migration's SQL, then its row finished.
fn setup() -> String {
    format!(
        "psql -X -q -v ON_ERROR_STOP=1 -c {table} && psql -X -q -v ON_ERROR_STOP=1 --single-transaction \
         -f prisma/migrations/{m1}/migration.sql -c {row}",
        table = deploy_guard::exec::quote(PRISMA_TABLE),
        m1 = name(1, "create_users"),
        row = deploy_guard::exec::quote(&applied_row(V1_ID, &name(1, "create_users"), "now() - interval '1 hour'")),
    )
}

/// The row of a migration `migrate deploy` applied. Its id is a UUID like Prisma's random one,
/// chosen so that v2's sorts BEFORE v1's: only `started_at` tells the order.
fn applied_row(id: &str, migration: &str, started: &str) -> String {
    format!(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, finished_at, applied_steps_count) \
         VALUES ('{id}', md5('{migration}') || md5('x'), '{migration}', {started}, {started}, 1)"
    )
}

const V1_ID: &str = "ffffffff-0000-4000-8000-000000000000";
const V2_ID: &str = "00000000-0000-4000-8000-000000000000";

fn spec() -> ToolSpec {
    ToolSpec {
        tool: "prisma",
        fixture: Some("prisma"),
        files: vec![],
        yaml: "",
        write,
        setup: Box::leak(setup().into_boxed_str()),
        state_sql: "SELECT string_agg(migration_name, ',' ORDER BY started_at) FROM _prisma_migrations",
        state_v1: "20240101000001_create_users",
        state_v2: "20240101000001_create_users,20240101000002_add_nickname",
        path: vec![],
    }
}

fn migrator() -> Migrator {
    Migrator::from_config(&Migrations { tool: Tool::Prisma, ..Default::default() })
}

/// v2 applied as `migrate deploy` applies it.
fn apply_v2(w: &tool::World, down: &str) {
    w.release("add_nickname", tool::ADD_NICKNAME, down);
    let m2 = name(2, "add_nickname");
    let out = w.sh(&format!(
        "psql -X -q -v ON_ERROR_STOP=1 --single-transaction -f prisma/migrations/{m2}/migration.sql -c {}",
        deploy_guard::exec::quote(&applied_row(V2_ID, &m2, "now()"))
    ));
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(w.state(), w.spec.state_v2);
}

async fn rows(w: &tool::World) -> Vec<serde_json::Value> {
    let m = migrator();
    common::postgres(&w.db).migration_rows(&w.db, m.table.as_deref().unwrap(), &m.order_by).await.unwrap()
}

#[tokio::test]
async fn the_revert_applies_rollback_sql_and_removes_the_newest_row_by_started_at() {
    let w = tool::World::new(spec(), "prisma_revert", &[]);
    let before = rows(&w).await;
    apply_v2(&w, tool::DROP_NICKNAME);
    let now = rows(&w).await;
    let m = migrator();
    assert_eq!(m.applied(&before, &now), Some(1), "read in started_at order, v2 is the one applied");
    let out = w.sh(&m.revert_script("v2", common::SHA, Some(&before)).unwrap());
    assert!(out.status.success(), "{}{}", common::stdout(&out), common::stderr(&out));
    assert!(common::stdout(&out).contains("reverting 20240101000002_add_nickname"));
    let after = rows(&w).await;
    assert!(m.reverted_one(&now, &after, &before), "exactly the newest row went");
    assert_eq!(after, before);
    w.assert_back_at_v1("nickname");
}

#[tokio::test]
async fn a_failing_rollback_sql_changes_nothing() {
    let w = tool::World::new(spec(), "prisma_bad_down", &[]);
    apply_v2(&w, tool::BAD_DOWN);
    let out = w.sh(&migrator().revert_script("v2", common::SHA, None).unwrap());
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("nick_name"), "{}", common::stderr(&out));
    // One transaction: the index its first statement dropped is still there, and the row.
    assert_eq!(w.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_nickname_idx'"), "1");
    assert_eq!(w.state(), w.spec.state_v2);
}

#[tokio::test]
async fn without_rollback_sql_restore_is_the_only_way_back() {
    let w = tool::World::new(spec(), "prisma_no_down", &[]);
    apply_v2(&w, "");
    let out = w.sh(&migrator().revert_script("v2", common::SHA, None).unwrap());
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("has no rollback.sql: restoring the backup is the only way back"));
    assert!(w.has_column("nickname"));
    assert_eq!(w.state(), w.spec.state_v2);
}

/// A failed `migrate deploy` leaves its row with `finished_at IS NULL` and the error in `logs`,
/// although PostgreSQL rolled its SQL back: Prisma's failed state. It is not "one migration
/// applied", and it refuses the next deploy (exit 4, nothing changed) with Prisma's commands.
#[tokio::test]
async fn a_failed_migration_refuses_the_deploy() {
    let w = tool::World::new(spec(), "prisma_failed", &[]);
    let before = rows(&w).await;
    w.psql(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, logs) VALUES \
         (gen_random_uuid()::text, md5('x') || md5('y'), '20240101000002_add_tier', now(), \
          'Database error code: 23502\nERROR: column \"tier\" of relation \"users\" contains null values')",
    );
    let now = rows(&w).await;
    assert_eq!(migrator().applied(&before, &now), Some(0), "a failed row is not an applied migration");
    let found = migrator().failed_state(&common::postgres(&w.db), &w.db).await.unwrap();
    assert_eq!(found.as_deref(), Some("migration 20240101000002_add_tier failed: Database error code: 23502"));
    let mut spec = spec();
    spec.state_sql = "SELECT count(*) FROM _prisma_migrations";
    let w = tool::World { spec, ..w };
    tool::dirty_refuses_deploy(&w, "prisma migrate resolve --rolled-back");
    // `migrate resolve --rolled-back NAME` sets rolled_back_at: the state is clean again.
    w.psql("UPDATE _prisma_migrations SET rolled_back_at = now() WHERE finished_at IS NULL");
    assert_eq!(migrator().failed_state(&common::postgres(&w.db), &w.db).await.unwrap(), None);
}

/// What was tried to run Prisma's own `migrate deploy` here, kept as a test so a machine that
/// can fetch the engine shows it: it must fail only for the engine's download.
#[test]
fn prisma_migrate_deploy_needs_the_schema_engine_download() {
    let w = tool::World::new(spec(), "prisma_engine", &[]);
    std::fs::write(w.app().join("prisma/schema.prisma"), "datasource db {\n  provider = \"postgresql\"\n}\n").unwrap();
    std::fs::write(
        w.app().join("prisma.config.js"),
        "module.exports = { schema: \"prisma/schema.prisma\", datasource: { url: process.env.DATABASE_URL } };\n",
    )
    .unwrap();
    let version =
        std::fs::read_to_string(tool::fixture_dir("prisma").join("node_modules/prisma/package.json")).unwrap();
    assert!(version.contains("\"version\": \"7.10.1\""), "the fixture's prisma");
    let out = w.sh("npx --no-install prisma migrate deploy");
    let said = format!("{}{}", common::stdout(&out), common::stderr(&out));
    if out.status.success() {
        // The engine could be fetched: then it applied nothing new and the table stands.
        assert_eq!(w.state(), w.spec.state_v1, "{said}");
    } else {
        assert!(said.contains("schema-engine"), "it fails for the engine's download only: {said}");
    }
}
