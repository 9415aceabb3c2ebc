//! Every bad input gets a clear error naming what is wrong, exit 2, and changes nothing.

use crate::common;
use common::{App, SHA};

/// Runs a deploy expected to be refused; checks exit 2, the message, and that nothing changed.
fn refused(app: &App, args: &[&str], env: &[(&str, &str)], message: &str) {
    let before_tag = app.tag();
    let before_rows = app.psql("SELECT count(*) FROM schema_migrations");
    let out = app.run_env(args, env);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(message), "{args:?}: expected {message:?} in: {err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(!app.stage.store_dir().exists(), "the store was touched");
    assert_eq!(app.tag(), before_tag);
    assert_eq!(app.psql("SELECT count(*) FROM schema_migrations"), before_rows);
}

fn deploy_args(tag: &str) -> Vec<&str> {
    vec!["deploy", "--sha", SHA, "--tag", tag]
}

#[test]
fn unknown_key() {
    let app = App::new("cfg_unknown", &["v2"]);
    app.edit_config(|t| t.replace("  health:\n", "  helth:\n"));
    refused(&app, &deploy_args("v2"), &[], "app.helth: unknown field `helth`");
}

#[test]
fn missing_key() {
    let app = App::new("cfg_missing", &["v2"]);
    app.edit_config(|t| t.split("backup:").next().unwrap().to_string());
    refused(&app, &deploy_args("v2"), &[], "missing field `backup`");
}

#[test]
fn bad_duration() {
    let app = App::new("cfg_duration", &["v2"]);
    app.edit_config(|t| t.replace("timeout: 60s", "timeout: 60 parsecs"));
    refused(&app, &deploy_args("v2"), &[], "migrations.timeout");
}

#[test]
fn sha_that_is_not_hex() {
    let app = App::new("cfg_sha", &["v2"]);
    refused(&app, &["deploy", "--sha", "not-a-sha!", "--tag", "v2"], &[], "not a git SHA");
}

#[test]
fn tags_that_are_not_image_tags() {
    let app = App::new("cfg_tag", &["v2"]);
    for tag in ["v1; touch /tmp/pwned", "$(id)", "`id`", "v1\nv2", "'q'", ".hidden"] {
        refused(&app, &deploy_args(tag), &[], "not a valid image tag");
    }
    refused(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--previous-tag", "a b"], &[], "--previous-tag");
}

#[test]
fn unknown_environment_setting() {
    let app = App::new("cfg_env", &["v2"]);
    refused(
        &app,
        &deploy_args("v2"),
        &[("DEPLOY_GUARD_APP_HELTH_URL", "http://x")],
        "DEPLOY_GUARD_APP_HELTH_URL: not a deploy-guard setting",
    );
    refused(&app, &deploy_args("v2"), &[("DEPLOY_GUARD_DATABASE_PORT", "five")], "expected a whole number");
}

#[test]
fn password_in_the_database_url() {
    let app = App::new("cfg_password", &["v2"]);
    app.edit_config(|t| t.replace("  host: 127.0.0.1\n", "  url: postgres://postgres:hunter2@127.0.0.1/x\n"));
    let out = app.run(&deploy_args("v2"));
    assert!(!common::stderr(&out).contains("hunter2"), "the secret was printed");
    refused(&app, &deploy_args("v2"), &[], "contains a password");
}

#[test]
fn bad_enum_value() {
    let app = App::new("cfg_enum", &["v2"]);
    app.edit_config(|t| format!("{t}rollback:\n  strategy: yolo\n"));
    refused(&app, &deploy_args("v2"), &[], "rollback.strategy: unknown variant `yolo`");
}

#[test]
fn no_config_at_all() {
    let dir = common::tempdir();
    let out = std::process::Command::new(common::bin())
        .args(["deploy", "--sha", SHA, "--tag", "v2"])
        .current_dir(dir.path())
        .env_remove("DEPLOY_GUARD_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("deploy-guard.yml not found"), "{}", common::stderr(&out));
}

#[test]
fn environment_overrides_reach_the_config() {
    // A valid override is used: pointing the store elsewhere moves where the backup lands.
    let app = App::new("cfg_override", &["v2"]);
    let elsewhere = app.tmp.path().join("elsewhere");
    let url = format!("file://{}", elsewhere.display());
    let out = app.run_env(&["backup", "--sha", SHA], &[("DEPLOY_GUARD_BACKUP_STORE", &url)]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(elsewhere.exists() && !app.stage.store_dir().exists());
}

#[test]
fn unknown_migration_tool() {
    let app = App::new("cfg_tool", &["v2"]);
    app.edit_config(|t| t.replace("tool: command", "tool: flyway"));
    let expected = "migrations.tool: unknown variant `flyway`";
    refused(&app, &deploy_args("v2"), &[], expected);
    refused(&app, &["check"], &[], expected);
}
