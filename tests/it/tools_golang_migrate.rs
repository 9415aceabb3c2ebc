//! The `golang-migrate` preset against the real `migrate` CLI (from the Go module proxy, built with
//! its postgres driver by scripts/go-tools into ~/.cache/deploy-guard/go/bin) on real PostgreSQL:
//! the drill scenarios, its dirty state, and releases with a missing or empty `.down.sql`.
//! `schema_migrations` holds only the head: the revert is `goto <recorded version>`.

use crate::common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};

const UP: &str = "migrate -path db/migrations -database \"$DATABASE_URL\" up";

/// `db/migrations/00000N_SLUG.up.sql`, and `.down.sql` unless the down is empty: the release's
/// migrations and no others.
fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("db/migrations");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for m in migrations {
        std::fs::write(dir.join(format!("00000{}_{}.up.sql", m.n, m.slug)), format!("{}\n", m.up)).unwrap();
        if !m.down.is_empty() {
            std::fs::write(dir.join(format!("00000{}_{}.down.sql", m.n, m.slug)), format!("{}\n", m.down)).unwrap();
        }
    }
}

pub fn spec() -> ToolSpec {
    let bin = tool::go_bin();
    tool::require(&bin.join("migrate"), "scripts/go-tools builds it");
    ToolSpec {
        tool: "golang-migrate",
        fixture: None,
        files: vec![],
        yaml: "",
        write,
        setup: UP,
        state_sql:
            "SELECT string_agg(version || CASE WHEN dirty THEN ' (dirty)' ELSE '' END, ',') FROM schema_migrations",
        state_v1: "1",
        state_v2: "2",
        path: vec![bin],
    }
}

#[test]
fn happy() {
    tool::happy(spec());
}

/// unhealthy-after-migrate: `goto 1` undoes v2.
#[test]
fn unhealthy_after_migrate() {
    tool::unhealthy_reverts(spec());
}

#[test]
fn bad_down() {
    tool::bad_down(spec());
}

#[test]
fn lying_down() {
    tool::lying_down(spec());
}

/// migration-fails: PostgreSQL rolls the failed migration back, but migrate has marked its version
/// dirty first, and the mark stays. So the fast path is not trusted and the backup is restored,
/// which brings `schema_migrations` back clean: the next release deploys.
#[test]
fn migration_fails_leaves_it_dirty_and_is_restored() {
    let w = tool::World::new(spec(), "gm_fails", &[]);
    w.release("add_tier", tool::ADD_TIER_NOT_NULL, tool::DROP_TIER);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", tool::explain(&out));
    let r = common::json(&out);
    let detail = |step: &str| {
        let s = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == step);
        s.unwrap_or_else(|| panic!("no {step} step: {r:#}"))["detail"].as_str().unwrap_or_default().to_string()
    };
    assert!(detail("migrate").contains("contains null values"), "the tool's words: {}", detail("migrate"));
    assert!(detail("assess").contains("dirty or failed state"), "{}", detail("assess"));
    w.assert_back_at_v1("tier");
    w.release("add_nickname", tool::ADD_NICKNAME, tool::DROP_NICKNAME);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(0), "deployed".into(), "none".into()), "{}", tool::explain(&out));
    assert_eq!(w.state(), w.spec.state_v2);
}

/// A migration that fails half-way outside a transaction, run by hand before the deploy: `CREATE
/// UNIQUE INDEX CONCURRENTLY` on duplicates leaves an INVALID index, and migrate leaves version 2
/// dirty and refuses to go on. The deploy refuses it before the backup (exit 4), printing migrate's
/// own `force` command, which it never runs.
#[test]
fn a_dirty_version_refuses_the_deploy() {
    let w = tool::World::new(spec(), "gm_dirty", &[]);
    w.release(
        "unique_name_length",
        "CREATE UNIQUE INDEX CONCURRENTLY users_name_length_key ON users (length(name));",
        "DROP INDEX users_name_length_key;",
    );
    assert!(!w.sh(UP).status.success());
    assert_eq!(w.state(), "2 (dirty)");
    assert_eq!(w.psql("SELECT count(*) FROM pg_index WHERE NOT indisvalid"), "1", "an INVALID index is left");
    let out = w.sh(UP);
    let said = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(!out.status.success() && said.contains("Dirty database version 2"), "migrate refuses it too: {said}");
    tool::dirty_refuses_deploy(&w, "migrate -path db/migrations -database \"$DATABASE_URL\" force VERSION");
    assert_eq!(w.state(), "2 (dirty)", "force was not run");
    assert_eq!(w.backups(), 0, "refused before the backup");
    assert_eq!(w.psql("SELECT count(*) FROM pg_index WHERE NOT indisvalid"), "1", "the INVALID index left as it was");
}

#[test]
fn a_missing_migrations_dir_is_bad_config() {
    let w = tool::World::new(spec(), "gm_missing", &[]);
    tool::missing_file_is_bad_config(
        &w,
        ("  timeout: 120s\n", "  timeout: 120s\n  dir: migrations\n"),
        "migrations.dir",
    );
}

#[test]
fn only_the_pending_up_files_are_classified() {
    tool::classifies_only_pending_ups(spec());
}

/// A missing `.down.sql` is an empty down to migrate: `goto` would move the version back and leave
/// the column.
const NO_DOWN: &[Migration] = &[Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: "" }];

/// A `.down.sql` with no statement in it (`migrate create` writes it empty): the same.
const EMPTY_DOWN: &[Migration] =
    &[Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: "-- nothing to undo" }];

/// The first migration lacks its down, the second (the new head) has one: the one row records only
/// the head, and the release still cannot be reverted.
const MIXED: &[Migration] = &[
    Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: "" },
    Migration {
        n: 3,
        slug: "add_note",
        up: "ALTER TABLE users ADD COLUMN note text;",
        down: "ALTER TABLE users DROP COLUMN note;",
    },
];

#[test]
fn without_a_down_file_the_backup_is_restored_without_a_revert() {
    tool::forward_only_release_restores(spec(), "gm_no_down", NO_DOWN, "000002_add_nickname");
}

#[test]
fn with_an_empty_down_file_the_backup_is_restored_without_a_revert() {
    tool::forward_only_release_restores(spec(), "gm_empty_down", EMPTY_DOWN, "000002_add_nickname");
}

#[test]
fn a_release_missing_a_down_before_its_head_is_restored_without_a_revert() {
    let (w, _) = tool::forward_only_release_restores(spec(), "gm_mixed", MIXED, "000002_add_nickname");
    assert_eq!(w.psql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"), "0");
}

#[test]
fn a_manual_revert_of_a_release_without_a_down_file_is_refused() {
    tool::revert_of_a_forward_only_release_is_refused(spec(), "gm_rev_no_down", NO_DOWN, "000002_add_nickname");
}

#[test]
fn a_manual_revert_of_a_mixed_release_is_refused() {
    tool::revert_of_a_forward_only_release_is_refused(spec(), "gm_rev_mixed", MIXED, "000002_add_nickname");
}

/// With every down file, a release of two migrations is reverted by one `goto` to the recorded
/// version.
#[test]
fn a_manual_revert_of_two_migrations_goes_back_to_the_recorded_version() {
    let w = tool::World::new(spec(), "gm_rev_two", &[]);
    w.write(&[
        Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: tool::DROP_NICKNAME },
        Migration {
            n: 3,
            slug: "add_note",
            up: "ALTER TABLE users ADD COLUMN note text;",
            down: "ALTER TABLE users DROP COLUMN note;",
        },
    ]);
    assert_eq!(w.ended(&w.deploy("v2")).0, Some(0));
    assert_eq!(w.state(), "3");
    let out = w.dg(&["rollback", "--sha", &common::SHA[..7], "--path", "revert", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", tool::explain(&out));
    assert_eq!(common::json(&out)["path"], "revert");
    w.assert_back_at_v1("nickname");
    assert!(!w.has_column("note"));
}
