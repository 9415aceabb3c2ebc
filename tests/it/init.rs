//! `deploy-guard init` in a repository: detects the tool and the compose services, writes a
//! config that loads, never overwrites one.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

fn init(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::bin()).arg("init").args(args).current_dir(dir).output().expect("run deploy-guard")
}

fn config(dir: &Path) -> deploy_guard::config::Config {
    let text = std::fs::read_to_string(dir.join("deploy-guard.yml")).unwrap();
    deploy_guard::config::Config::from_yaml(&text, &[]).unwrap_or_else(|e| panic!("{e:#}\n{text}"))
}

#[test]
fn a_knex_project_under_compose_gets_a_config_that_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("package.json"), r#"{"dependencies": {"knex": "^3.1.0", "pg": "^8"}}"#).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        "services:\n  postgres:\n    image: postgres:16\n  worker:\n    build: .\n  backend:\n    image: ghcr.io/acme/api:${API_TAG}\n    env_file: .env.production\n  jobs:\n    image: ghcr.io/acme/api:${API_TAG}\n    command: node jobs.js\n",
    )
    .unwrap();
    let out = init(dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let c = config(dir);
    assert_eq!(c.migrations.tool, deploy_guard::config::Tool::Knex);
    assert_eq!(c.app.runtime, deploy_guard::config::RuntimeKind::Compose);
    assert_eq!(
        (c.app.service.as_deref(), c.app.tag_variable.as_deref(), c.app.env_file.as_deref()),
        (Some("backend"), Some("API_TAG"), Some(".env.production"))
    );
    assert_eq!(c.database.service.as_deref(), Some("postgres"));
    // The service on the app's image writes too: it is stopped and deployed with the app.
    assert_eq!(c.app.services, ["backend", "jobs"]);
    assert!(dir.join(".github/workflows/deploy-guard-deploy.yml").exists());
    assert!(dir.join(".github/workflows/deploy-guard-rollback.yml").exists());

    // A second run changes nothing and says why.
    let before = std::fs::read(dir.join("deploy-guard.yml")).unwrap();
    let again = init(dir, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(common::stderr(&again).contains("exists"), "{}", common::stderr(&again));
    assert_eq!(std::fs::read(dir.join("deploy-guard.yml")).unwrap(), before);
}

/// init never writes through a symbolic link: not a dangling `deploy-guard.yml`, not a
/// `.github` that points elsewhere.
#[test]
fn init_writes_through_no_symbolic_link() {
    let tmp = common::tempdir();
    let dir = tmp.path();
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("victim.yml"), dir.join("deploy-guard.yml")).unwrap();
    let out = init(dir, &["--tool", "knex", "--runtime", "shell"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("exists"), "{}", common::stderr(&out));
    assert!(!elsewhere.join("victim.yml").exists(), "init wrote through the dangling link");
    std::fs::remove_file(dir.join("deploy-guard.yml")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join(".github")).unwrap();
    let out = init(dir, &["--tool", "knex", "--runtime", "shell"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("symbolic link"), "{}", common::stderr(&out));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "init wrote a workflow through the link");
    assert!(!dir.join("deploy-guard.yml").exists(), "init changed something before it refused");
}

#[test]
fn the_tool_and_runtime_can_be_chosen_and_bad_choices_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("alembic.ini"), "[alembic]\n").unwrap();
    let out = init(dir, &["--runtime", "shell"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let c = config(dir);
    assert_eq!(
        (c.migrations.tool, c.app.runtime),
        (deploy_guard::config::Tool::Alembic, deploy_guard::config::RuntimeKind::Shell)
    );

    let other = tempfile::tempdir().unwrap();
    let out = init(other.path(), &["--tool", "prisma"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(config(other.path()).migrations.tool, deploy_guard::config::Tool::Prisma);

    let empty = tempfile::tempdir().unwrap();
    for bad in [&["--tool", "flyway"][..], &["--runtime", "compose"]] {
        let out = init(empty.path(), bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", common::stderr(&out));
        assert!(!empty.path().join("deploy-guard.yml").exists());
    }
}
