//! Hostile input and leaked secrets, through the real binary, a real PostgreSQL and real child
//! processes (issue 13). Each test's name says the fault it injects.

mod common;
use common::{App, SHA};

/// Every secret deploy-guard may hold, with a value that is easy to find in a dump of `env`.
const SECRETS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIADEPLOYGUARDLEAK1"),
    ("AWS_SECRET_ACCESS_KEY", "leak-secret-access-key-2"),
    ("AWS_SESSION_TOKEN", "leak-session-token-3"),
    ("GITHUB_TOKEN", "ghp_leakgithubtoken4"),
    ("DEPLOY_GUARD_SSH_KEY", "leak-ssh-private-key-5"),
    ("DEPLOY_GUARD_SSH_KEY_PASSPHRASE", "leak-ssh-passphrase-6"),
    ("DEPLOY_GUARD_MANIFEST_KEY", "leak-manifest-key-7"),
    ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "leak-oidc-request-8"),
];

#[test]
fn secrets_in_the_environment_never_reach_migration_deploy_or_health_commands() {
    let app = App::new("hard_env", &["v2"]);
    app.edit_config(|c| {
        c.replace("run: ./migrate.sh up {tag}", "run: env > migrate.env && ./migrate.sh up {tag}")
            .replace("deploy: ./app.sh deploy {tag}", "deploy: env > deploy.env && ./app.sh deploy {tag}")
            .replace("command: ./app.sh health", "command: env > health.env && ./app.sh health")
    });
    let mut env: Vec<(&str, &str)> = SECRETS.to_vec();
    // GitHub reporting stays off (no repository), whatever the machine running the tests sets.
    env.extend([("GITHUB_REPOSITORY", ""), ("DG_HARMLESS", "visible-to-children")]);
    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let dir = app.stage.app_dir();
    for file in ["migrate.env", "deploy.env", "health.env"] {
        let seen = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(seen.contains("DG_HARMLESS=visible-to-children"), "{file}: the child's env was not captured");
        for (name, value) in SECRETS {
            assert!(!seen.contains(value), "{file}: {name} reached a child command");
            assert!(!seen.contains(&format!("{name}=")), "{file}: {name} is set in a child command");
        }
    }
    // Nor did any of them reach the logs.
    let logs = format!("{}{}", common::stdout(&out), common::stderr(&out));
    for (name, value) in SECRETS {
        assert!(!logs.contains(value), "{name} reached the logs");
    }
}

#[test]
fn a_file_store_backup_is_0600_in_0700_directories_under_a_lax_umask() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new("hard_modes", &["v2"]);
    let store = app.tmp.path().join("modes-store");
    app.edit_config(|c| {
        let at = c.find("store: ").expect("store setting");
        format!("{}store: \"file://{}\"\n", &c[..at], store.display())
    });
    // A umask of 000 would make every file world-writable by default.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000; exec \"$0\" backup --sha \"$1\" --config \"$2\"")
        .arg(common::bin())
        .arg(SHA)
        .arg(&app.config)
        .env("GITHUB_REPOSITORY", "");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let (mut files, mut dirs) = (0, 0);
    let mut stack = vec![store.clone()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        dirs += 1;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
                files += 1;
            }
        }
    }
    assert!(files >= 2 && dirs >= 2, "the dump and its manifest, in a month directory: {files} files, {dirs} dirs");
}
