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
fn password_in_the_database_url() {
    let app = App::new("cfg_password", &["v2"]);
    app.edit_config(|t| t.replace("  host: 127.0.0.1\n", "  url: postgres://postgres:hunter2@127.0.0.1/x\n"));
    let out = app.run(&deploy_args("v2"));
    assert!(!common::stderr(&out).contains("hunter2"), "the secret was printed");
    refused(&app, &deploy_args("v2"), &[], "contains a password");
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

/// One broken config: how it is broken, and what its error must say.
struct Broken {
    name: &'static str,
    edit: fn(String) -> String,
    env: &'static [(&'static str, &'static str)],
    /// The key, and where it is (None: not in the file — the setting is missing, or came from
    /// an environment variable).
    key: Option<&'static str>,
    line: Option<usize>,
    /// What says what to write instead.
    suggestion: &'static str,
}

const BROKEN: &[Broken] = &[
    Broken {
        name: "typo'd key",
        edit: |t| t.replace("  health:\n", "  helth:\n"),
        env: &[],
        key: Some("app.helth"),
        line: Some(13),
        suggestion: "did you mean `health`?",
    },
    Broken {
        name: "wrong type",
        edit: |t| {
            t.replace("  user: postgres\n", "  user: postgres\n  port: five\n").replacen("  port: ", "  #port: ", 1)
        },
        env: &[],
        key: Some("database.port"),
        line: Some(21),
        suggestion: "expected a whole number from 0 to 65535, e.g. 5432, got \"five\"",
    },
    Broken {
        name: "bad duration",
        edit: |t| t.replace("timeout: 60s", "timeout: 60 parsecs"),
        env: &[],
        key: Some("migrations.timeout"),
        line: Some(33),
        suggestion: "expected a duration such as 90s, 2m or 1h30m, got \"60 parsecs\"",
    },
    Broken {
        name: "typo'd value",
        edit: |t| t.replace("tool: command", "tool: comand"),
        env: &[],
        key: Some("migrations.tool"),
        line: Some(24),
        suggestion: "did you mean `command`?",
    },
    Broken {
        name: "a list for text",
        edit: |t| t.replace("  workdir: ", "  workdir: [a, b]\n  #"),
        env: &[],
        key: Some("app.workdir"),
        line: Some(6),
        suggestion: "expected text",
    },
    Broken {
        name: "missing section",
        edit: |t| t.split("backup:").next().unwrap().to_string(),
        env: &[],
        key: Some("backup"),
        line: None,
        suggestion: "required, and not set",
    },
    Broken {
        name: "missing setting",
        edit: |t| t.replace("    current_tag: ./app.sh current-tag\n", ""),
        env: &[],
        key: Some("app.commands.current_tag"),
        line: Some(7),
        suggestion: "required with app.runtime: shell",
    },
    Broken {
        name: "bad value",
        edit: |t| t.replace("command: ./app.sh health", "url: api/health"),
        env: &[],
        key: Some("app.health.url"),
        line: Some(14),
        suggestion: "must start with http:// or https://",
    },
    Broken {
        name: "unset variable",
        edit: |t| t.replace("  name: \"", "  name: \"${DG_TEST_UNSET_NAME}\"\n  #"),
        env: &[],
        key: Some("database.name"),
        line: Some(21),
        suggestion: "set DG_TEST_UNSET_NAME there",
    },
    Broken {
        name: "bad env override",
        edit: |t| t,
        env: &[("DEPLOY_GUARD_APP_HEALTH_TIMEOUT", "soon")],
        key: Some("app.health.timeout"),
        line: None,
        suggestion: "DEPLOY_GUARD_APP_HEALTH_TIMEOUT (app.health.timeout): expected a duration such as 90s",
    },
    Broken {
        name: "typo'd env variable",
        edit: |t| t,
        env: &[("DEPLOY_GUARD_APP_HELTH_TIMEOUT", "2m")],
        key: None,
        line: None,
        suggestion: "did you mean DEPLOY_GUARD_APP_HEALTH_TIMEOUT?",
    },
    Broken {
        name: "not YAML",
        edit: |t| t.replace("  commands:\n", "  commands: [\n"),
        env: &[],
        key: None,
        line: Some(8),
        suggestion: "not valid YAML",
    },
];

#[test]
fn a_dozen_broken_configs_point_at_the_line_and_say_what_to_write() {
    let app = App::new("cfg_broken", &["v2"]);
    let good = std::fs::read_to_string(&app.config).unwrap();
    let file = app.config.display().to_string();
    for b in BROKEN {
        app.edit_config(|_| (b.edit)(good.clone()));
        let mut expected = vec![b.suggestion.to_string()];
        expected.extend(b.key.map(|k| format!("{k}: ")).filter(|_| b.env.is_empty()));
        expected.extend(b.line.map(|l| format!("{file}:{l}:")));
        for args in [deploy_args("v2"), vec!["check"], vec!["backup", "--sha", SHA]] {
            let out = app.run_env(&args, b.env);
            let err = common::stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{}: {args:?}: {err}", b.name);
            for e in &expected {
                assert!(err.contains(e.as_str()), "{}: {args:?}: expected {e:?} in: {err}", b.name);
            }
        }
        // --json: an error object on stdout.
        let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2", "--json"], b.env);
        let j = common::json(&out);
        assert_eq!(j["error"]["kind"], "config", "{}: {j}", b.name);
        assert_eq!(j["error"]["exit_code"], 2);
        assert_eq!(j["error"]["key"].as_str(), b.key, "{}: {j}", b.name);
        assert_eq!(j["error"]["line"].as_u64(), b.line.map(|l| l as u64), "{}: {j}", b.name);
        assert!(j["error"]["message"].as_str().unwrap().contains(b.suggestion.rsplit(": ").next().unwrap()), "{j}");
        // Under Actions: an annotation on the line (a variable's error names the variable instead).
        let mut env = b.env.to_vec();
        env.push(("GITHUB_ACTIONS", "true"));
        let err = common::stderr(&app.run_env(&deploy_args("v2"), &env));
        let annotation = match (b.env.is_empty(), b.line) {
            (true, Some(l)) => format!("::error file={},line={l},col=", file.replace(':', "%3A")),
            (true, None) => format!("::error file={},title=", file.replace(':', "%3A")),
            (false, _) => "::error title=deploy-guard::DEPLOY_GUARD_APP_".to_string(),
        };
        assert!(err.contains(&annotation), "{}: expected {annotation:?} in {err}", b.name);
    }
    // Nothing was changed by any of them.
    app.edit_config(|_| good.clone());
    assert!(!app.stage.store_dir().exists(), "the store was touched");
    assert_eq!(app.tag(), "v1");
    assert_eq!(app.psql("SELECT count(*) FROM schema_migrations"), "2");
}

#[test]
fn a_missing_config_suggests_init() {
    let dir = common::tempdir();
    let run = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .args(args)
            .current_dir(dir.path())
            .env_remove("DEPLOY_GUARD_CONFIG")
            .env_remove("GITHUB_ACTIONS")
            .output()
            .unwrap()
    };
    for args in [&["deploy", "--sha", SHA, "--tag", "v2"][..], &["check"], &["--config", "nope.yml", "check"]] {
        let out = run(args);
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("not found") && err.contains("run `deploy-guard init`"), "{err}");
    }
    let j = common::json(&run(&["check", "--json"]));
    assert_eq!(j["error"]["kind"], "config");
    assert_eq!(j["error"]["file"], "deploy-guard.yml");
}
