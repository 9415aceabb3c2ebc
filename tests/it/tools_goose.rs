//! The `goose` preset against the real `goose` CLI (from the Go module proxy, built with only its
//! postgres driver by scripts/go-tools into ~/.cache/deploy-guard/go/bin) on real PostgreSQL: the
//! drill scenarios, what a `NO TRANSACTION` migration that fails half-way leaves (goose records
//! no failed state), and releases whose `-- +goose Down` is empty or missing.

use crate::common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};

const UP: &str = "GOOSE_DRIVER=postgres GOOSE_DBSTRING=\"$DATABASE_URL\" goose -dir migrations up";

/// `migrations/0000N_SLUG.sql` with its Up section, and its Down section unless the down is empty:
/// the release's migrations and no others.
fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("migrations");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for m in migrations {
        let down = if m.down.is_empty() { String::new() } else { format!("\n-- +goose Down\n{}\n", m.down) };
        let text = format!("-- +goose Up\n{}\n{down}", m.up);
        std::fs::write(dir.join(format!("0000{}_{}.sql", m.n, m.slug)), text).unwrap();
    }
}

fn spec() -> ToolSpec {
    let bin = tool::go_bin();
    tool::require(&bin.join("goose"), "scripts/go-tools builds it");
    ToolSpec {
        tool: "goose",
        fixture: None,
        files: vec![],
        yaml: "",
        write,
        setup: UP,
        // Version 0 is goose's own row.
        state_sql: "SELECT string_agg(version_id::text, ',' ORDER BY id) FROM goose_db_version WHERE version_id <> 0",
        state_v1: "1",
        state_v2: "1,2",
        path: vec![bin],
    }
}

reverting_tool_scenarios!(spec());

/// A `-- +goose NO TRANSACTION` migration whose second statement fails: goose keeps what the first
/// did (a column) and records no row. The schema changed with nothing recorded as applied: the fast
/// path is not trusted, the backup is restored.
#[test]
fn a_no_transaction_migration_that_fails_half_way_is_restored() {
    let w = tool::World::new(spec(), "goose_half", &[]);
    w.release(
        "tier_and_unique_length",
        HALF_WAY,
        "DROP INDEX users_name_length_key;\nALTER TABLE users DROP COLUMN tier;",
    );
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", tool::explain(&out));
    let assess = common::json(&out)["steps"].as_array().unwrap().iter().find(|s| s["step"] == "assess").cloned();
    let said = assess.expect("an assess step")["detail"].as_str().unwrap_or_default().to_string();
    assert!(said.contains("the schema changed but no migration was recorded as applied"), "{said}");
    assert_eq!(w.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_name_length_key'"), "0");
    w.assert_back_at_v1("tier");
}

/// Adds a column, then fails on a unique index the rows break (Ana and Zoë: both 3 long).
const HALF_WAY: &str = "-- +goose NO TRANSACTION\nALTER TABLE users ADD COLUMN tier int;\n\
                        CREATE UNIQUE INDEX CONCURRENTLY users_name_length_key ON users (length(name));";

/// The same migration failed half-way by hand, before the deploy: goose records nothing, so
/// neither it nor deploy-guard can see it (`status` calls it pending). The deploy's `goose up`
/// starts it again from the top, fails on what the first run left, and changes nothing: the
/// deploy is rolled back to v1 with the half-done state as it was, and goose's words say why.
#[test]
fn a_half_way_failure_left_before_the_deploy_is_not_seen_and_its_rerun_changes_nothing() {
    let w = tool::World::new(spec(), "goose_left", &[]);
    w.release(
        "tier_and_unique_length",
        HALF_WAY,
        "DROP INDEX users_name_length_key;\nALTER TABLE users DROP COLUMN tier;",
    );
    assert!(!w.sh(UP).status.success());
    assert_eq!(w.state(), "1", "no row for the half-done migration");
    assert!(w.has_column("tier"));
    let check = w.dg(&["check"]);
    assert_eq!(check.status.code(), Some(0), "nothing records it: {}", tool::explain(&check));
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(1), "rolled-back".into(), "none".into()), "{}", tool::explain(&out));
    let migrate = common::json(&out)["steps"].as_array().unwrap().iter().find(|s| s["step"] == "migrate").cloned();
    let said = migrate.expect("a migrate step")["detail"].as_str().unwrap_or_default().to_string();
    assert!(said.contains("column \"tier\" of relation \"users\" already exists"), "{said}");
    assert_eq!(
        (w.state(), w.has_column("tier"), w.users(), w.tag()),
        ("1".into(), true, tool::USERS.into(), "v1".into())
    );
    assert_eq!(w.psql("SELECT count(*) FROM pg_index WHERE NOT indisvalid"), "1", "the INVALID index is still there");
}

#[test]
fn a_missing_migrations_dir_is_bad_config() {
    let w = tool::World::new(spec(), "goose_missing", &[]);
    tool::missing_file_is_bad_config(
        &w,
        ("  timeout: 120s\n", "  timeout: 120s\n  dir: db/migrations\n"),
        "migrations.dir",
    );
}

#[test]
fn only_the_up_sections_of_pending_files_are_classified() {
    tool::classifies_only_pending_ups(spec());
}

/// No `-- +goose Down` at all: goose's down would only delete the row ("EMPTY").
const NO_DOWN: &[Migration] = &[Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: "" }];

/// A Down section with nothing in it but a comment: the same.
const EMPTY_DOWN: &[Migration] =
    &[Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: "-- nothing to undo" }];

/// The first migration has a down, the second has none.
const MIXED: &[Migration] = &[
    Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: tool::DROP_NICKNAME },
    Migration { n: 3, slug: "add_note", up: "ALTER TABLE users ADD COLUMN note text;", down: "" },
];

#[test]
fn without_a_down_section_the_backup_is_restored_without_a_revert() {
    tool::forward_only_release_restores(spec(), "goose_no_down", NO_DOWN, "2");
}

#[test]
fn with_an_empty_down_section_the_backup_is_restored_without_a_revert() {
    tool::forward_only_release_restores(spec(), "goose_empty_down", EMPTY_DOWN, "2");
}

#[test]
fn a_mixed_release_is_restored_without_a_revert() {
    let (w, _) = tool::forward_only_release_restores(spec(), "goose_mixed", MIXED, "3");
    assert_eq!(w.psql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"), "0");
}

#[test]
fn a_manual_revert_of_a_release_without_a_down_is_refused() {
    tool::revert_of_a_forward_only_release_is_refused(spec(), "goose_rev_no_down", EMPTY_DOWN, "2");
}

#[test]
fn a_manual_revert_of_a_mixed_release_is_refused() {
    tool::revert_of_a_forward_only_release_is_refused(spec(), "goose_rev_mixed", MIXED, "3");
}
