//! Every simulate scenario, run through the real engine on its own throwaway cluster.

use deploy_guard::simulate::{self, ScenarioResult};

use crate::common;

async fn scenario(name: &str) -> ScenarioResult {
    let s = simulate::scenarios_named(name).unwrap();
    let mut r = simulate::run(&s, None, None, false).await.unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let r = r.remove(0);
    assert!(r.as_expected, "{name} did not end as it must: {:?}", r.problems);
    assert!(r.data_intact, "{name}: data not intact");
    r
}

#[tokio::test]
async fn happy() {
    let r = scenario("happy").await;
    assert_eq!((r.result.as_str(), r.path.as_str(), r.exit_code), ("deployed", "none", 0));
}

#[tokio::test]
async fn migration_fails() {
    let r = scenario("migration-fails").await;
    assert_eq!((r.result.as_str(), r.path.as_str(), r.exit_code), ("rolled-back", "none", 1));
}

#[tokio::test]
async fn unhealthy_after_migrate() {
    let r = scenario("unhealthy-after-migrate").await;
    assert_eq!((r.result.as_str(), r.path.as_str(), r.exit_code), ("rolled-back", "revert", 1));
}

#[tokio::test]
async fn bad_down() {
    let r = scenario("bad-down").await;
    assert_eq!((r.result.as_str(), r.path.as_str(), r.exit_code), ("rolled-back", "restore", 1));
}

#[tokio::test]
async fn lying_down() {
    let r = scenario("lying-down").await;
    assert_eq!((r.result.as_str(), r.path.as_str(), r.exit_code), ("rolled-back", "restore", 1));
}

/// A rename loses nothing: the revert is trusted, nothing is restored.
#[tokio::test]
async fn rename() {
    let r = scenario("rename").await;
    assert_eq!((r.result.as_str(), r.path.as_str(), r.exit_code), ("rolled-back", "revert", 1));
}

/// No down at all: restored, and the verdict checks no revert was tried.
#[tokio::test]
async fn forward_only() {
    let r = scenario("forward-only").await;
    assert_eq!((r.result.as_str(), r.path.as_str(), r.exit_code), ("rolled-back", "restore", 1));
}

#[tokio::test]
async fn backup_fails() {
    let r = scenario("backup-fails").await;
    assert_eq!((r.result.as_str(), r.path.as_str(), r.exit_code), ("aborted", "none", 4));
}

/// An earlier migration run left the tool's dirty flag: refused before the backup (the scenario
/// checks the refusal names the tool's commands, the store is empty and the flag is still set).
#[tokio::test]
async fn dirty_state() {
    let r = scenario("dirty-state").await;
    assert_eq!((r.result.as_str(), r.path.as_str(), r.exit_code), ("aborted", "none", 4));
    assert_eq!(r.recovery_secs, None, "nothing to recover from");
}

#[test]
fn the_dirty_state_row_of_the_table_says_the_deploy_was_refused() {
    let out =
        std::process::Command::new(common::bin()).args(["simulate", "--scenario", "dirty-state"]).output().unwrap();
    let stdout = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", common::stderr(&out));
    let row = stdout.lines().find(|l| l.starts_with("dirty-state ")).unwrap_or_else(|| panic!("{stdout}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..4], ["none", "aborted", "(4)"], "{row}");
    assert!(row.ends_with(" ok    yes"), "{row}");
    assert!(stdout.contains("all 1 scenarios ended as they must"), "{stdout}");
    let err = common::stderr(&out);
    assert!(err.contains("./migrate.sh force VERSION"), "the log names the tool's command: {err}");
}

#[test]
fn the_command_prints_a_table_and_records_a_rehearsal_log() {
    let dir = common::tempdir();
    let log = dir.path().join("rehearsals.md");
    let out = std::process::Command::new(common::bin())
        .args(["simulate", "--scenario", "happy,migration-fails", "--record"])
        .arg(&log)
        .output()
        .unwrap();
    let stdout = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", common::stderr(&out));
    assert!(
        stdout.contains("SCENARIO")
            && stdout.contains("migration-fails")
            && stdout.contains("all 2 scenarios ended as they must"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("| date | scenario | path | duration | result |"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("| ok (")).count(), 2, "{text}");
}

#[test]
fn an_unknown_scenario_is_a_usage_error() {
    let out = std::process::Command::new(common::bin()).args(["simulate", "--scenario", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("unknown; choose from happy"), "{}", common::stderr(&out));
}
