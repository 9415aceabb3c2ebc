//! The `prisma` preset against real Prisma (tests/fixtures/prisma, from npm) on real PostgreSQL:
//! the real `prisma migrate deploy` through the drill scenarios, Prisma's failed state (the row a
//! failed `migrate deploy` leaves), the revert through a migration's `rollback.sql`, and restore
//! when there is none.
//!
//! Which schema engine: Prisma's `migrate` normally runs a native `schema-engine` downloaded from
//! Prisma's own server at first use, which these machines cannot reach (no npm, PyPI or crates.io
//! package ships it, and Prisma 7 removed the driver-adapter path for `migrate`). So here the
//! fixture is Prisma 6.19.3 with its early-access driver-adapter migrations: `engine: "js"` in
//! `prisma.config.js`, the WebAssembly schema engine bundled in the CLI, connected through
//! `@prisma/adapter-pg` 7.10.1 (6.19.3's own adapter cannot read PostgreSQL's `name` columns:
//! "Column type 'name' could not be deserialized", prisma/orm#27403). The GitHub workflow's
//! `prisma-native` job runs this file with `DG_PRISMA_ENGINE=native`: the same fixture on the
//! native engine, which is also where `migrate resolve` runs (6.19.3's `resolve --rolled-back`
//! starts the native engine even with an adapter configured).

use crate::common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};
use deploy_guard::config::{Migrations, Tool};
use deploy_guard::migrate::Migrator;

/// `DG_PRISMA_ENGINE=native`: Prisma's native schema engine (it downloads at first use);
/// otherwise the WebAssembly one through `@prisma/adapter-pg`.
fn native() -> bool {
    std::env::var("DG_PRISMA_ENGINE").as_deref() == Ok("native")
}

const ADAPTER_CONFIG: &str = r#"// Prisma 6.19's driver-adapter migrations: the WebAssembly schema engine bundled with the CLI,
// connected through @prisma/adapter-pg (no native engine to download).
const { PrismaPg } = require("@prisma/adapter-pg");
module.exports = {
  experimental: { adapter: true },
  engine: "js",
  schema: "prisma/schema.prisma",
  adapter: async () => new PrismaPg({ connectionString: process.env.DATABASE_URL }),
};
"#;

const NATIVE_CONFIG: &str = "module.exports = { schema: \"prisma/schema.prisma\" };\n";

/// `engineType = "client"`: the CLI needs no native query engine either.
const SCHEMA: &str = r#"generator client {
  provider   = "prisma-client-js"
  engineType = "client"
}

datasource db {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}
"#;

const DEPLOY: &str = "npx --no-install prisma migrate deploy";

fn name(n: usize, slug: &str) -> String {
    format!("2024010100000{n}_{slug}")
}

/// `prisma/migrations/NAME/migration.sql`, and `rollback.sql` beside it unless the down is empty:
/// the release's migrations and no others (a release that drops a failed migration drops its
/// folder).
fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("prisma/migrations");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
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

fn spec() -> ToolSpec {
    ToolSpec {
        tool: "prisma",
        fixture: Some("prisma"),
        files: vec![
            ("prisma.config.js", if native() { NATIVE_CONFIG } else { ADAPTER_CONFIG }.into()),
            ("prisma/schema.prisma", SCHEMA.into()),
        ],
        yaml: "",
        write,
        setup: DEPLOY,
        // Every row in started_at order (`id` is a random UUID), a failed one marked.
        state_sql: "SELECT string_agg(migration_name || CASE WHEN finished_at IS NULL THEN ' (failed)' ELSE '' END \
                    || CASE WHEN rolled_back_at IS NULL THEN '' ELSE ' (rolled back)' END, ',' ORDER BY started_at) \
                    FROM _prisma_migrations",
        state_v1: "20240101000001_create_users",
        state_v2: "20240101000001_create_users,20240101000002_add_nickname",
        path: vec![],
    }
}

fn migrator() -> Migrator {
    Migrator::from_config(&Migrations { tool: Tool::Prisma, ..Default::default() })
}

/// Whether Prisma's native schema engine is installed (`@prisma/engines`' postinstall downloads it
/// where Prisma's server is reachable): `migrate resolve` runs it even with an adapter configured.
fn native_engine_installed() -> bool {
    let dir = tool::fixture_dir("prisma").join("node_modules/@prisma/engines");
    let found = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("schema-engine-")))
        .unwrap_or(false);
    assert!(found || !native(), "DG_PRISMA_ENGINE=native, but no native schema engine in {}", dir.display());
    found
}

/// `migrate resolve --rolled-back NAME`: where the native engine is missing, it fails for that
/// alone (then `None`); else how it ended.
fn resolve_rolled_back(w: &tool::World, migration: &str) -> Option<(Option<i32>, String)> {
    let (code, said) = prisma(w, &format!("migrate resolve --rolled-back {migration}"));
    if native_engine_installed() {
        return Some((code, said));
    }
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("Could not find schema-engine binary"), "only the native engine is missing: {said}");
    None
}

/// What Prisma prints for the NOT NULL migration's failure: the native engine quotes
/// PostgreSQL, the adapter its own words for the same error.
fn null_failure() -> &'static str {
    if native() {
        "contains null values"
    } else {
        "Null constraint failed"
    }
}

/// The tool, run by hand in the app directory: (exit code, everything it printed).
fn prisma(w: &tool::World, args: &str) -> (Option<i32>, String) {
    let out = w.sh(&format!("npx --no-install prisma {args}"));
    (out.status.code(), format!("{}{}", common::stdout(&out), common::stderr(&out)))
}

#[test]
fn happy() {
    tool::happy(spec());
}

#[test]
fn bad_down() {
    tool::bad_down(spec());
}

#[test]
fn lying_down() {
    tool::lying_down(spec());
}

/// migration-fails: `migrate deploy` fails and leaves its row with `finished_at IS NULL` and the
/// error in `logs`, although PostgreSQL rolled the SQL back: Prisma's failed state, which it
/// refuses to deploy over. So the fast path is not trusted and the backup is restored, which
/// brings `_prisma_migrations` back as it was: nothing is left to resolve, and the next release
/// deploys.
#[test]
fn migration_fails_restores_and_leaves_nothing_to_resolve() {
    let w = tool::World::new(spec(), "prisma_fails", &[]);
    w.release("add_tier", tool::ADD_TIER_NOT_NULL, tool::DROP_TIER);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", tool::explain(&out));
    let r = common::json(&out);
    let detail = |step: &str| {
        let s = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == step);
        s.unwrap_or_else(|| panic!("no {step} step: {r:#}"))["detail"].as_str().unwrap_or_default().to_string()
    };
    assert!(detail("migrate").contains(null_failure()), "the tool's words are quoted: {}", detail("migrate"));
    assert!(detail("assess").contains("dirty or failed state"), "{}", detail("assess"));
    w.assert_back_at_v1("tier");
    // The next release deploys: Prisma finds no failed migration to refuse.
    w.release("add_nickname", tool::ADD_NICKNAME, tool::DROP_NICKNAME);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(0), "deployed".into(), "none".into()), "{}", tool::explain(&out));
    assert_eq!(w.state(), w.spec.state_v2);
}

/// unhealthy-after-migrate: the migration's `rollback.sql` and the removal of its row, in one
/// transaction. Prisma then sees the migration as not applied: `migrate status` lists it, and
/// `migrate deploy` applies it again.
#[test]
fn unhealthy_after_migrate_reverts_with_rollback_sql() {
    let (w, _) = tool::unhealthy_world(spec(), "prisma_unhealthy", tool::DROP_NICKNAME, "revert");
    let (code, said) = prisma(&w, "migrate status");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("have not yet been applied") && said.contains("20240101000002_add_nickname"), "{said}");
    let (code, said) = prisma(&w, "migrate deploy");
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(w.state(), w.spec.state_v2);
    assert!(w.has_column("nickname"));
}

const NO_DOWN: &[Migration] = &[Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: "" }];

/// Two migrations, the first with a `rollback.sql`, the second without: the release as a whole
/// cannot be reverted.
const MIXED: &[Migration] = &[
    Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: tool::DROP_NICKNAME },
    Migration { n: 3, slug: "add_note", up: "ALTER TABLE users ADD COLUMN note text;", down: "" },
];

/// A migration without `rollback.sql`: assess knows the release cannot be reverted and restores,
/// with no revert step.
#[test]
fn without_rollback_sql_the_backup_is_restored_without_a_revert() {
    tool::forward_only_release_restores(spec(), "prisma_no_down", NO_DOWN, &name(2, "add_nickname"));
}

/// A mixed release (one migration with a down, one without): the same.
#[test]
fn a_mixed_release_is_restored_without_a_revert() {
    let (w, _) = tool::forward_only_release_restores(spec(), "prisma_mixed", MIXED, &name(3, "add_note"));
    assert_eq!(w.psql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"), "0");
}

/// `rollback --path revert` after a healthy deploy without `rollback.sql`: refused, nothing
/// recorded, the next deploy goes ahead.
#[test]
fn a_manual_revert_of_a_release_without_rollback_sql_is_refused() {
    tool::revert_of_a_forward_only_release_is_refused(spec(), "prisma_rev_no_down", NO_DOWN, &name(2, "add_nickname"));
}

#[test]
fn a_manual_revert_of_a_mixed_release_is_refused() {
    tool::revert_of_a_forward_only_release_is_refused(spec(), "prisma_rev_mixed", MIXED, &name(3, "add_note"));
}

/// With every migration's `rollback.sql`, the manual revert goes ahead (the check does not refuse
/// what can be reverted).
#[test]
fn a_manual_revert_of_a_release_with_rollback_sql_reverts() {
    let w = tool::World::new(spec(), "prisma_rev_ok", &[]);
    w.release("add_nickname", tool::ADD_NICKNAME, tool::DROP_NICKNAME);
    assert_eq!(w.ended(&w.deploy("v2")).0, Some(0));
    let out = w.dg(&["rollback", "--sha", &common::SHA[..7], "--path", "revert", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", tool::explain(&out));
    assert_eq!(common::json(&out)["path"], "revert");
    w.assert_back_at_v1("nickname");
}

/// A failed `migrate deploy` run by hand (outside deploy-guard) leaves Prisma's failed state: the
/// next deploy is refused before anything changes (exit 4), naming `migrate resolve
/// --rolled-back`. That command clears it (on the native engine; 6.19's adapter path still starts
/// the native engine for it), and the deploy goes through.
#[test]
fn a_failed_migrate_deploy_refuses_the_next_deploy_until_resolved() {
    let w = tool::World::new(spec(), "prisma_failed", &[]);
    let before = rows(&w);
    w.release("add_tier", tool::ADD_TIER_NOT_NULL, tool::DROP_TIER);
    let (code, said) = prisma(&w, "migrate deploy");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains(null_failure()), "{said}");
    let failed = name(2, "add_tier");
    assert_eq!(w.state(), format!("{},{failed} (failed)", w.spec.state_v1));
    assert_eq!(
        w.psql(&format!("SELECT logs IS NOT NULL FROM _prisma_migrations WHERE migration_name = '{failed}'")),
        "t"
    );
    assert_eq!(migrator().applied(&before, &rows(&w)), Some(0), "a failed row is not an applied migration");
    let found = runtime().block_on(migrator().failed_state(&common::postgres(&w.db), &w.db)).unwrap();
    let found = found.expect("Prisma's failed state is found");
    assert!(found.starts_with(&format!("migration {failed} failed: ")) && found.contains(null_failure()), "{found}");
    // Prisma itself refuses to deploy over it (P3009).
    let (code, said) = prisma(&w, "migrate deploy");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("P3009"), "{said}");

    tool::dirty_refuses_deploy(&w, "prisma migrate resolve --rolled-back MIGRATION_NAME");
    match resolve_rolled_back(&w, &failed) {
        Some((code, said)) => assert_eq!(code, Some(0), "{said}"),
        // What `resolve --rolled-back` records, written as the schema engine writes it.
        None => {
            w.psql(&format!("UPDATE _prisma_migrations SET rolled_back_at = now() WHERE migration_name = '{failed}'"));
        }
    }
    assert_eq!(w.state(), format!("{},{failed} (failed) (rolled back)", w.spec.state_v1));
    assert_eq!(runtime().block_on(migrator().failed_state(&common::postgres(&w.db), &w.db)).unwrap(), None);
    // The fixed release deploys; the rolled-back row stays as Prisma's audit trail.
    w.release("add_nickname", tool::ADD_NICKNAME, tool::DROP_NICKNAME);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(0), "deployed".into(), "none".into()), "{}", tool::explain(&out));
    assert!(w.has_column("nickname"));
}

/// `resolve --rolled-back` is not the step after reverting a migration that succeeded: Prisma
/// accepts only a failed one.
#[test]
fn resolve_rolled_back_refuses_a_migration_that_succeeded() {
    let w = tool::World::new(spec(), "prisma_resolve_ok", &[]);
    if let Some((code, said)) = resolve_rolled_back(&w, &name(1, "create_users")) {
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains("P3012"), "{said}");
    }
    assert_eq!(w.state(), w.spec.state_v1);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn rows(w: &tool::World) -> Vec<serde_json::Value> {
    let m = migrator();
    runtime().block_on(common::postgres(&w.db).migration_rows(&w.db, m.table.as_deref().unwrap(), &m.order_by)).unwrap()
}

/// v2 applied by the real `migrate deploy`, its row's random `id` then made to sort BEFORE v1's:
/// only `started_at` tells the order.
fn apply_v2(w: &tool::World, down: &str) {
    w.release("add_nickname", tool::ADD_NICKNAME, down);
    let (code, said) = prisma(w, "migrate deploy");
    assert_eq!(code, Some(0), "{said}");
    w.psql(&format!(
        "UPDATE _prisma_migrations SET id = '00000000-0000-4000-8000-000000000000' WHERE migration_name = '{}'",
        name(2, "add_nickname")
    ));
    w.psql(&format!(
        "UPDATE _prisma_migrations SET id = 'ffffffff-0000-4000-8000-000000000000' WHERE migration_name = '{}'",
        name(1, "create_users")
    ));
    assert_eq!(w.state(), w.spec.state_v2);
}

#[test]
fn the_revert_removes_the_newest_row_by_started_at() {
    let w = tool::World::new(spec(), "prisma_revert", &[]);
    let before = rows(&w);
    apply_v2(&w, tool::DROP_NICKNAME);
    let now = rows(&w);
    let m = migrator();
    assert_eq!(before.len(), 1);
    let before = now[..1].to_vec();
    assert_eq!(m.applied(&before, &now), Some(1), "read in started_at order, v2 is the one applied");
    let out = w.sh(&m.revert_script("v2", common::SHA, Some(&before)).unwrap());
    assert!(out.status.success(), "{}", tool::explain(&out));
    assert!(common::stdout(&out).contains("reverting 20240101000002_add_nickname"));
    let after = rows(&w);
    assert!(m.reverted_one(&now, &after, &before), "exactly the newest row went");
    w.assert_back_at_v1("nickname");
}

#[test]
fn a_failing_rollback_sql_changes_nothing() {
    let w = tool::World::new(spec(), "prisma_bad_rollback", &[]);
    apply_v2(&w, tool::BAD_DOWN);
    let out = w.sh(&migrator().revert_script("v2", common::SHA, None).unwrap());
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("nick_name"), "{}", common::stderr(&out));
    // One transaction: the index its first statement dropped is still there, and the row.
    assert_eq!(w.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_nickname_idx'"), "1");
    assert_eq!(w.state(), w.spec.state_v2);
}
