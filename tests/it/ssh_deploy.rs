//! Every simulate scenario as a real deploy over SSH: the binary reaches the sample app and its
//! PostgreSQL through a real sshd (runtime: shell), pinned host key, key from the environment.

use crate::common;
use common::{App, Sshd, SHA};
use deploy_guard::simulate::Staged;

/// Deploys `release` over SSH onto a stage with `staged` already wrong; returns the app, the
/// deploy's stderr and the target.
async fn deploy_over_ssh(release: &str, staged: Staged, code: i32, path: &str) -> (App, String, Sshd) {
    let sshd = Sshd::start().unwrap();
    let app = App::build(&format!("ssh_{}", release.replace('-', "_")), &[release], staged);
    app.edit_config(|t| format!("{t}{}", sshd.target_yaml()));
    let before = common::state(app.db()).await;
    let out = app
        .run_env(&["deploy", "--sha", SHA, "--tag", release, "--json"], &[("DEPLOY_GUARD_SSH_KEY", &sshd.client_key)]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    let r = common::json(&out);
    assert_eq!(r["path"], path, "{err}");
    assert!(!err.contains("BEGIN OPENSSH PRIVATE KEY") && !common::stdout(&out).contains("PRIVATE KEY"), "key leaked");
    if code == 0 {
        assert_eq!(app.tag(), release);
    } else {
        assert_eq!(app.tag(), "v1");
        assert_eq!(common::state(app.db()).await, before, "data not intact");
    }
    (app, err, sshd)
}

#[tokio::test]
async fn happy() {
    deploy_over_ssh("v2", Staged::Clean, 0, "none").await;
}

#[tokio::test]
async fn migration_fails() {
    deploy_over_ssh("v2-notnull", Staged::Clean, 1, "none").await;
}

#[tokio::test]
async fn unhealthy_after_migrate() {
    deploy_over_ssh("v2-crash", Staged::Clean, 1, "revert").await;
}

#[tokio::test]
async fn bad_down() {
    deploy_over_ssh("v2-bad-down", Staged::Clean, 1, "restore").await;
}

#[tokio::test]
async fn lying_down() {
    deploy_over_ssh("v2-lying-down", Staged::Clean, 1, "restore").await;
}

#[tokio::test]
async fn rename() {
    deploy_over_ssh("v2-rename", Staged::Clean, 1, "revert").await;
}

#[tokio::test]
async fn forward_only() {
    deploy_over_ssh("v2-no-down", Staged::Clean, 1, "restore").await;
}

#[tokio::test]
async fn backup_fails() {
    deploy_over_ssh("v2", Staged::CrashingPgDump, 4, "none").await;
}

/// An earlier migration run stopped part-way and left migrate.sh's dirty flag: refused before the
/// backup (no store written), the tool's commands named, the database as it was.
#[tokio::test]
async fn dirty_state() {
    let (app, err, _) = deploy_over_ssh("v2", Staged::DirtyMigration, 4, "none").await;
    assert!(err.contains("version 003 (customer_indexes) is dirty"), "{err}");
    assert!(err.contains("./migrate.sh force VERSION") && err.contains("SELECT * FROM schema_migrations"), "{err}");
    let stored: Vec<_> = std::fs::read_dir(app.stage.store_dir()).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(stored.is_empty(), "no backup was taken: {stored:?}");
    assert_eq!(app.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations WHERE dirty"), "003");
}

#[tokio::test]
async fn a_wrong_host_key_refuses_before_anything_runs() {
    let sshd = Sshd::start().unwrap();
    let app = App::new("ssh_wrongkey", &["v2"]);
    let other = Sshd::start().unwrap();
    // Pin the other server's key for this server's address.
    let wrong = other.known_hosts().replace(&format!(":{}", other.port), &format!(":{}", sshd.port));
    app.edit_config(|t| format!("{t}{}", sshd.target_yaml().replace(&sshd.known_hosts(), &wrong)));
    let before = common::state(app.db()).await;
    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2"], &[("DEPLOY_GUARD_SSH_KEY", &sshd.client_key)]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("is not the pinned one") && err.contains("nothing was changed"), "{err}");
    assert_eq!(common::state(app.db()).await, before);
    assert!(!app.stage.store_dir().exists());
}

#[tokio::test]
async fn a_connection_lost_during_migrate_is_assessed_not_retried() {
    let sshd = Sshd::start().unwrap();
    let app = App::new("ssh_dropped", &["v2"]);
    // The migration applies, then the link drops (the session's sshd process dies) before the
    // command's exit status reaches deploy-guard.
    let marker = app.tmp.path().join("migrate-runs");
    app.edit_config(|t| {
        let t = t.replace(
            "run: ./migrate.sh up {tag}",
            &format!("run: ./migrate.sh up {{tag}} && echo run >> {} && kill -9 $PPID", marker.display()),
        );
        format!("{t}{}", sshd.target_yaml())
    });
    let before = common::state(app.db()).await;
    let out =
        app.run_env(&["deploy", "--sha", SHA, "--tag", "v2", "--json"], &[("DEPLOY_GUARD_SSH_KEY", &sshd.client_key)]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let r = common::json(&out);
    assert_eq!(r["path"], "revert", "{err}");
    let migrate = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "migrate").unwrap();
    assert!(migrate["detail"].as_str().unwrap().contains("outcome is unknown"), "{migrate}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1, "the migration was re-run");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
}

#[tokio::test]
async fn destructive_down() {
    deploy_over_ssh("v2-drop-note", Staged::Clean, 1, "restore").await;
}

#[tokio::test]
async fn data_rewrite() {
    deploy_over_ssh("v2-rewrite-email", Staged::Clean, 1, "restore").await;
}

#[tokio::test]
async fn lost_writes() {
    let (app, _, sshd) = deploy_over_ssh("v2-app-writes", Staged::Clean, 1, "restore").await;
    // A forged replay file (its hash in the unsigned manifest updated) is refused over SSH too,
    // and its shell escape runs nowhere.
    let marker = app.tmp.path().join("replay-ran");
    let _forged =
        common::forge_replay(&app.stage.store_dir(), &format!("SELECT 1$a$ x $a$ \\! touch {}\n", marker.display()));
    let before = common::state(app.db()).await;
    let out = app.run_env(&["replay", "--sha", &SHA[..7]], &[("DEPLOY_GUARD_SSH_KEY", &sshd.client_key)]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("a dollar sign right after a number"), "{}", common::stderr(&out));
    assert!(!marker.exists(), "the forged replay file ran its shell escape");
    assert_eq!(common::state(app.db()).await, before);
}

/// Whether a session of the app's migration is still open in its database.
fn migration_running(app: &App) -> bool {
    let q = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name LIKE 'deploy-guard-migrate-%'",
        app.db()
    );
    common::cluster().psql("postgres", &q).unwrap() != "0"
}

#[tokio::test]
async fn a_migration_that_times_out_over_ssh_is_cancelled_where_it_runs_and_never_commits() {
    // Over SSH the remote command outlives its timeout unless killed with all it started (sshd
    // passes a kill on to the shell alone): left running, this migration would create
    // `late_table` seconds after deploy-guard moved on.
    let sshd = Sshd::start().unwrap();
    let app = App::new("ssh_slow", &[]);
    let dir = app.stage.app_dir().join("releases/v2-slow/migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(app.stage.app_dir().join("releases/v1/migrations")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    std::fs::write(
        dir.join("003_slow.up.sql"),
        "DO $$ BEGIN PERFORM pg_sleep(6); END $$;\nCREATE TABLE late_table (id int);",
    )
    .unwrap();
    std::fs::write(dir.join("003_slow.down.sql"), "DROP TABLE late_table;").unwrap();
    app.edit_config(|t| format!("{}{}", t.replace("timeout: 60s", "timeout: 2s"), sshd.target_yaml()));
    let before = common::state(app.db()).await;
    let out = app.run_env(
        &["deploy", "--sha", SHA, "--tag", "v2-slow", "--json"],
        &[("DEPLOY_GUARD_SSH_KEY", &sshd.client_key)],
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let r = common::json(&out);
    let migrate = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "migrate").unwrap()["detail"].to_string();
    assert!(migrate.contains("session(s) of the migration ended"), "{migrate}");
    // Wait for the orphaned remote command to be gone, then prove it committed nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while migration_running(&app) {
        assert!(std::time::Instant::now() < deadline, "the remote migration never ended");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(app.psql("SELECT to_regclass('late_table') IS NULL"), "t", "the timed-out migration committed");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
}

/// Over SSH with the shell runtime the migration tool gets the database the config names
/// (`DATABASE_URL`, libpq's variables) where the target's environment lacks it (what it sets is
/// left alone: `db::tests::the_tools_connection_defaults_leave_what_the_target_sets_alone`).
#[tokio::test]
async fn the_tool_on_the_target_gets_database_url_from_the_config() {
    let sshd = Sshd::start().unwrap();
    let app = App::new("ssh_dburl", &["v2"]);
    let seen = app.tmp.path().join("seen-url");
    app.edit_config(|t| {
        let t = t.replace(
            "run: ./migrate.sh up {tag}",
            &format!(
                "run: printf '%s|%s' \"$DATABASE_URL\" \"$PGDATABASE\" > {} && ./migrate.sh up {{tag}}",
                seen.display()
            ),
        );
        format!("{t}{}", sshd.target_yaml())
    });
    let key = [("DEPLOY_GUARD_SSH_KEY", sshd.client_key.as_str())];
    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2"], &key);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let c = common::cluster();
    let want = format!("postgresql://postgres@127.0.0.1:{}/{}|{}", c.port, app.db(), app.db());
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), want);
}
