//! The whole deploy flow through the binary, against a real PostgreSQL and the sample app.

use crate::common;
use common::{App, SHA};

fn migrations(app: &App) -> String {
    app.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations")
}

#[tokio::test]
async fn a_good_deploy_exits_0_and_files_its_report() {
    let app = App::new("dep_happy", &["v2"]);
    let outputs = app.tmp.path().join("outputs");
    let summary = app.tmp.path().join("summary.md");
    let out = app.run_env(
        &["deploy", "--sha", SHA, "--tag", "v2", "--json"],
        &[("GITHUB_OUTPUT", outputs.to_str().unwrap()), ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let report = common::json(&out);
    assert_eq!(report["result"], "deployed");
    assert_eq!(app.tag(), "v2");
    assert_eq!(migrations(&app), "001,002,003");
    let outputs = std::fs::read_to_string(outputs).unwrap();
    assert!(
        outputs.contains("result=deployed\n")
            && outputs.contains("path=none\n")
            && outputs.contains("previous-tag=v1\n"),
        "{outputs}"
    );
    assert!(outputs.contains("backup-key=20"), "{outputs}");
    let md = std::fs::read_to_string(summary).unwrap();
    assert!(md.contains("deploy-guard deploy: deployed") && md.contains("```mermaid"), "{md}");
    // The manifest beside the backup is complete and verified.
    let listed = common::json(&app.run(&["backups", "--json"]));
    assert_eq!(listed[0]["verified"], true);
    assert_eq!(listed[0]["outcome"], "deployed");
}

#[tokio::test]
async fn an_unhealthy_release_is_reverted_with_the_data_intact() {
    let app = App::new("dep_revert", &["v2-crash"]);
    let before = common::state(app.db()).await;
    let out = app.run(&["deploy", "--sha", SHA, "--tag", "v2-crash", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!((r["result"].as_str(), r["path"].as_str()), (Some("rolled-back"), Some("revert")));
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    assert!(r["app_logs"].as_str().unwrap_or("").contains("TypeError"), "the app's last words belong in the report");
}

#[tokio::test]
async fn a_manual_rollback_by_sha_prefix_reverts_a_good_deploy() {
    let app = App::new("dep_manual", &["v2"]);
    let before = common::state(app.db()).await;
    assert_eq!(app.run(&["deploy", "--sha", SHA, "--tag", "v2"]).status.code(), Some(0));
    let out = app.run(&["rollback", "--sha", &SHA[..7], "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!(r["path"], "revert");
    assert_eq!(app.tag(), "v1");
    assert_eq!(common::state(app.db()).await.0, before.0);
    assert_eq!(migrations(&app), "001,002");
}

#[tokio::test]
async fn a_manual_rollback_can_insist_on_restore() {
    let app = App::new("dep_manual_restore", &["v2"]);
    let before = common::state(app.db()).await;
    assert_eq!(app.run(&["deploy", "--sha", SHA, "--tag", "v2"]).status.code(), Some(0));
    let out = app.run(&["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::json(&out)["path"], "restore");
    assert_eq!(common::state(app.db()).await, before);
    let kept = format!("{}__failed_{}", app.db(), &SHA[..7]);
    assert_eq!(
        common::cluster().psql(&kept, "SELECT count(*) FROM schema_migrations").unwrap(),
        "3",
        "the broken database is kept"
    );
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_touches_nothing() {
    let app = App::new("dep_dry", &["v2"]);
    // Even with the database unreachable: a dry run connects to nothing.
    app.edit_config(|t| t.replace(&format!("port: {}", app.stage.port), "port: 1"));
    let before = common::state(app.db()).await;
    let out = app.run(&["deploy", "--sha", SHA, "--tag", "v2", "--dry-run"]);
    let plan = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    for expected in [
        "pg_dump --no-password --format=plain",
        "./migrate.sh up v2",
        "./app.sh deploy v2",
        "./migrate.sh down v2",
        "__restore_0123456",
        "nothing was changed",
    ] {
        assert!(plan.contains(expected), "plan lacks {expected:?}:\n{plan}");
    }
    assert!(!app.stage.store_dir().exists());
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
}

/// A deploy that must abort before any change: exit 4, no migration, no backup recorded.
async fn aborts(app: &App, why: &str) {
    let before = common::state(app.db()).await;
    let out = app.run(&["deploy", "--sha", SHA, "--tag", "v2", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!(r["result"], "aborted");
    assert!(r["headline"].as_str().unwrap().contains(why), "{}", r["headline"]);
    assert_eq!(common::state(app.db()).await, before, "nothing may change");
    assert_eq!(app.tag(), "v1");
    let store = app.stage.store_dir();
    let files: Vec<String> = common::files_under(&store).iter().map(|p| p.display().to_string()).collect();
    assert!(
        files.iter().all(|f| !common::is_backup_data(f) && !f.ends_with(".manifest.json")),
        "backup recorded: {files:?}"
    );
}

#[tokio::test]
async fn pg_dump_crashing_mid_stream_aborts() {
    let app = App::build("dep_dumpcrash", &["v2"], deploy_guard::simulate::Staged::CrashingPgDump);
    aborts(&app, "pg_dump failed").await;
}

#[tokio::test]
async fn a_wrong_database_aborts() {
    let app = App::new("dep_wrongdb", &["v2"]);
    app.edit_config(|t| t.replace(&format!("name: \"{}\"", app.db()), "name: \"no_such_db\""));
    aborts(&app, "no_such_db").await;
}

#[tokio::test]
async fn a_wrong_port_aborts() {
    let app = App::new("dep_wrongport", &["v2"]);
    app.edit_config(|t| t.replace(&format!("port: {}", app.stage.port), "port: 1"));
    aborts(&app, "not reachable").await;
}

#[tokio::test]
async fn a_concurrent_deploy_is_refused_by_the_lock() {
    let app = App::new("dep_lock", &["v2"]);
    let pg = app.postgres();
    let holder = deploy_guard::db::Holder::here("deploy", Some("feedbeef"));
    let lock = pg.lock(&format!("{}/{}", app.db(), app.db()), &holder).await.unwrap();
    aborts(&app, "holds the deploy lock").await;
    lock.release().await;
    assert_eq!(app.run(&["deploy", "--sha", SHA, "--tag", "v2"]).status.code(), Some(0));
}

#[tokio::test]
async fn an_interrupted_deploy_must_be_dealt_with_first() {
    let app = App::new("dep_interrupted", &["v2", "v2-crash"]);
    assert_eq!(app.run(&["deploy", "--sha", SHA, "--tag", "v2"]).status.code(), Some(0));
    // Make the journal look like the job was cancelled during migrate.
    let manifest = common::files_under(&app.stage.store_dir())
        .into_iter()
        .find(|f| f.to_string_lossy().ends_with(".manifest.json"))
        .unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["outcome"] = serde_json::Value::Null;
    let journal = m["journal"]["entries"].as_array_mut().unwrap();
    let migrate = journal.iter().position(|e| e["step"] == "migrate").unwrap();
    journal.truncate(migrate + 1);
    journal[migrate]["state"] = "running".into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let other = "fedcba9876543210fedcba9876543210fedcba98";
    let out = app.run(&["deploy", "--sha", other, "--tag", "v2-crash"]);
    assert_eq!(out.status.code(), Some(4));
    let err = common::stderr(&out);
    assert!(err.contains("stopped during `migrate`") && err.contains("deploy-guard rollback --sha 0123456"), "{err}");
}

#[test]
fn backups_are_listed_and_found_by_sha_prefix() {
    let app = App::new("dep_list", &[]);
    let other = "0123999999999999999999999999999999999999";
    assert_eq!(app.run(&["backup", "--sha", SHA]).status.code(), Some(0));
    assert_eq!(app.run(&["backup", "--sha", other]).status.code(), Some(0));
    let table = common::stdout(&app.run(&["backups"]));
    assert!(table.contains("0123456") && table.contains("0123999") && table.contains("yes"), "{table}");
    let only = common::json(&app.run(&["backups", "--sha", "0123456", "--json"]));
    assert_eq!(only.as_array().unwrap().len(), 1);
    let ambiguous = app.run(&["restore", "--sha", "0123"]);
    assert_eq!(ambiguous.status.code(), Some(3));
    assert!(common::stderr(&ambiguous).contains("ambiguous"), "{}", common::stderr(&ambiguous));
    let unknown = app.run(&["restore", "--sha", "abcdef1"]);
    assert!(common::stderr(&unknown).contains("no backup for a deploy of SHA abcdef1"), "{}", common::stderr(&unknown));
}
