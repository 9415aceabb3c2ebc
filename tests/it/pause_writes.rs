//! `app.commands.pause_writes` / `resume_writes`: a restore pauses the app's writes instead of
//! stopping it, and resumes them once the previous tag runs (the sample app, real PostgreSQL).

use crate::common;
use common::{App, SHA};

#[tokio::test]
async fn a_restore_pauses_writes_instead_of_stopping_and_resumes_them_after_the_redeploy() {
    let app = App::new("pause_writes", &["v2-bad-down"]);
    app.edit_config(|t| {
        t.replace(
            "    logs: ./app.sh logs {lines}\n",
            "    logs: ./app.sh logs {lines}\n    pause_writes: echo writes-paused >> state/log\n    \
             resume_writes: echo writes-resumed >> state/log\n",
        )
    });
    let before = common::state(app.db()).await;
    let out = app.run(&["deploy", "--sha", SHA, "--tag", "v2-bad-down", "--json"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(common::json(&out)["path"], "restore", "{err}");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    let log = std::fs::read_to_string(app.stage.app_dir().join("state/log")).unwrap();
    let at = |what: &str| log.find(what).unwrap_or_else(|| panic!("no {what:?} in the app's log:\n{log}"));
    assert!(!log.contains("stopped"), "the app was stopped, not paused:\n{log}");
    // The app started v1 before the deploy too: the redeploy is the last start.
    let redeployed = log.rfind("started v1").unwrap();
    assert!(at("writes-paused") < redeployed && redeployed < at("writes-resumed"), "{log}");
}

#[test]
fn pausing_without_resuming_is_refused() {
    let app = App::new("pause_only", &["v2"]);
    app.edit_config(|t| {
        t.replace("    logs: ./app.sh logs {lines}\n", "    logs: ./app.sh logs {lines}\n    pause_writes: echo x\n")
    });
    let out = app.run(&["deploy", "--sha", SHA, "--tag", "v2"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("pause_writes and resume_writes: set both or neither"), "{err}");
    assert_eq!(app.tag(), "v1");
}
