//! `lock status`, `lock freeze` and `lock unfreeze` through the binary, on the sample app and a
//! real PostgreSQL.

use std::time::{Duration, Instant};

use crate::common;
use common::{App, SHA};

const SHA2: &str = "89abcdef0123456789abcdef0123456789abcdef";

#[test]
fn status_names_the_run_holding_the_lock() {
    let app = App::new("lock_status", &["v2"]);
    let free = common::json(&app.run(&["lock", "status", "--json"]));
    assert!(free["held_by"].is_null() && free["frozen"].is_null(), "{free}");
    // A deploy whose migration is slow holds the lock meanwhile.
    app.edit_config(|t| t.replace("run: ./migrate.sh up {tag}", "run: sleep 3 && ./migrate.sh up {tag}"));
    let run_vars =
        [("GITHUB_SERVER_URL", "https://github.example"), ("GITHUB_REPOSITORY", "o/r"), ("GITHUB_RUN_ID", "77")];
    let mut deploy = std::process::Command::new(common::bin());
    deploy.args(["deploy", "--sha", SHA, "--tag", "v2", "--config"]).arg(&app.config);
    for v in ["GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ACTIONS", "GITHUB_TOKEN"] {
        deploy.env_remove(v);
    }
    let mut deploy = deploy.envs(run_vars).stderr(std::process::Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    let held = loop {
        let s = common::json(&app.run(&["lock", "status", "--json"]));
        if !s["held_by"].is_null() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the deploy never held the lock");
        assert!(deploy.try_wait().unwrap().is_none(), "the deploy ended before the lock was seen");
    };
    let h = &held["held_by"]["holder"];
    assert_eq!(h["command"], "deploy", "{held}");
    assert_eq!(h["sha"], SHA);
    assert_eq!(h["run_url"], "https://github.example/o/r/actions/runs/77");
    assert!(h["since"].as_str().unwrap().starts_with("20"), "{held}");
    let text = common::stdout(&app.run(&["lock", "status"]));
    assert!(
        text.contains(&format!("held by deploy of {SHA}"))
            && text.contains("run https://github.example/o/r/actions/runs/77"),
        "{text}"
    );
    // A second deploy meanwhile is refused, and told who holds the lock.
    let out = app.run(&["deploy", "--sha", SHA2, "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(common::stderr(&out).contains(&format!("(deploy of {SHA}")), "{}", common::stderr(&out));
    assert!(deploy.wait().unwrap().success());
    let after = common::json(&app.run(&["lock", "status", "--json"]));
    assert!(after["held_by"].is_null(), "{after}");
}

#[test]
fn a_freeze_refuses_deploys_but_not_rollbacks() {
    let app = App::new("lock_freeze", &["v2"]);
    assert_eq!(app.run(&["deploy", "--sha", SHA, "--tag", "v2"]).status.code(), Some(0));
    let out = app.run_env(&["lock", "freeze", "-m", "incident 42: replica down"], &[("GITHUB_ACTOR", "octocat")]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let status = common::json(&app.run(&["lock", "status", "--json"]));
    assert_eq!(status["frozen"]["message"], "incident 42: replica down");
    assert_eq!(status["frozen"]["by"], "octocat");

    // A deploy is refused before anything changes, with the message and who froze it.
    let backups = common::backup_files(&app.stage.store_dir()).len();
    let out = app.run(&["deploy", "--sha", SHA2, "--tag", "v2"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("incident 42: replica down") && err.contains("by octocat") && err.contains("frozen since"),
        "{err}"
    );
    assert!(err.contains("lock unfreeze"), "{err}");
    assert_eq!(common::backup_files(&app.stage.store_dir()).len(), backups, "a backup was taken");
    assert_eq!(app.tag(), "v2");

    // A rollback still runs.
    let out = app.run(&["rollback", "--sha", &SHA[..7]]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(app.tag(), "v1");

    // Unfrozen, deploys proceed.
    let out = app.run(&["lock", "unfreeze"]);
    assert!(common::stdout(&out).contains("lifted"), "{}", common::stdout(&out));
    assert!(common::json(&app.run(&["lock", "status", "--json"]))["frozen"].is_null());
    let out = app.run(&["deploy", "--sha", SHA2, "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(app.tag(), "v2");
}

#[test]
fn a_freeze_needs_a_message() {
    let app = App::new("lock_freeze_msg", &["v2"]);
    let out = app.run(&["lock", "freeze", "-m", "  "]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::json(&app.run(&["lock", "status", "--json"]))["frozen"].is_null());
}
