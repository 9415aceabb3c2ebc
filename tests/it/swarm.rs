//! The swarm runtime against a real Docker Swarm: a single node (this machine's dockerd in swarm
//! mode; no second dockerd runs here), a stack of `postgres`, `backend` (1 replica, a healthcheck)
//! and `worker` (2 replicas) deployed with `docker stack deploy`, reached over SSH (loopback sshd,
//! host key pinned). The backend image holds the real TypeORM fixture; its migrations run as a
//! one-off job on the swarm; pg_dump and psql run in the postgres task. Each test runs the real
//! binary and checks the report, every service's image and replicas, the database and the journal.

use crate::common::docker::DbState;
use crate::common::swarm::Stack;
use crate::compose_docker::{expect, report, sha};

const V1_MIGRATIONS: &str = "CreateUsers1700000000000";

/// Both services on `tag` with their replicas (backend 1, worker 2), every replica running.
fn on(s: &Stack, tag: &str) {
    s.wait_services(&[("backend", tag, 1), ("worker", tag, 2)]);
}

/// The database, every service and health back as before the deploy.
fn assert_back_at_v1(s: &Stack, before: &DbState) {
    assert_eq!(&s.db_state(), before, "the database is not as it was before the deploy");
    assert_eq!(before.migrations, V1_MIGRATIONS);
    on(s, "v1");
    s.wait_healthy("v1");
}

/// The manifest recorded each service's image and replicas before anything changed.
fn assert_recorded(s: &Stack, m: &serde_json::Value) {
    let want = serde_json::json!([
        { "service": format!("{}_backend", s.name), "image": format!("{}:v1", s.repo), "replicas": 1 },
        { "service": format!("{}_worker", s.name), "image": format!("{}:v1", s.repo), "replicas": 2 },
    ]);
    assert_eq!(m["services"], want, "{m:#}");
}

/// The journal's steps, each with how it ended.
fn journal(m: &serde_json::Value) -> Vec<(String, String)> {
    m["journal"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["step"].as_str().unwrap().to_string(), e["state"].as_str().unwrap().to_string()))
        .collect()
}

fn ended(m: &serde_json::Value, step: &str) -> String {
    let j = journal(m);
    j.iter().rev().find(|(s, _)| s == step).map(|(_, e)| e.clone()).unwrap_or_else(|| panic!("no {step} in {j:?}"))
}

/// Deploys `tag` over v1, which must end rolled back by `path` with everything back at v1.
fn rolled_back(test: &str, n: u8, tag: &str, path: &str) -> (Stack, serde_json::Value, serde_json::Value) {
    let s = Stack::start(test);
    let before = s.db_state();
    let out = s.deploy_guard(&["deploy", "--sha", &sha(n), "--tag", tag, "--json"]);
    let r = expect(&out, 1, "rolled-back", path);
    assert_eq!(r["previous_tag"], "v1", "{r:#}");
    assert_back_at_v1(&s, &before);
    let m = s.manifest(&sha(n));
    assert_recorded(&s, &m);
    assert_eq!(m["outcome"]["result"], "rolled-back", "{m:#}");
    (s, r, m)
}

#[test]
fn happy_deploy_updates_every_service_and_a_rollback_by_sha_from_a_new_process_puts_them_back() {
    let s = Stack::start("happy");
    let before = s.db_state();

    let out = s.deploy_guard(&["deploy", "--sha", &sha(1), "--tag", "v2", "--json"]);
    let r = expect(&out, 0, "deployed", "none");
    assert_eq!(r["previous_tag"], "v1");
    let after = s.db_state();
    assert_eq!(after.user_columns, "id,name,nickname");
    assert_eq!(after.migrations, "CreateUsers1700000000000,AddNickname1700000000001");
    assert_eq!(after.users, before.users, "the deploy changed the users' data");
    on(&s, "v2");
    s.wait_healthy("v2");
    let m = s.manifest(&sha(1));
    assert_recorded(&s, &m);
    assert_eq!(ended(&m, "deploy"), "ok");
    assert_eq!(ended(&m, "health"), "ok");
    // Swarm's own rollback is off for every service deploy-guard updated.
    for svc in ["backend", "worker"] {
        let action = crate::common::docker::ok(&mut crate::common::docker::docker(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.UpdateConfig.FailureAction}}",
            &format!("{}_{svc}", s.name),
        ]));
        assert_eq!(action.trim(), "pause", "{svc}");
    }
    // No one-off job is left.
    let left = crate::common::docker::ok(&mut crate::common::docker::docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        "label=deploy-guard.run=deploy-guard-migrate-1111111",
    ]));
    assert_eq!(left.trim(), "");

    // `check` reports each service's image, replicas and update state.
    let out = s.deploy_guard(&["check"]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let backend = format!("{}_backend {}:v2, 1/1 running, update completed", s.name, s.repo);
    let worker = format!("{}_worker {}:v2, 2/2 running, update completed", s.name, s.repo);
    assert!(said.contains(&backend) && said.contains(&worker), "{said}");

    // The job ended; a new process rolls back by SHA: TypeORM's down() in a one-off job of v2.
    let out = s.deploy_guard(&["rollback", "--sha", &sha(1)[..7], "--json"]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "rollback: {r:#}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(r["path"], "revert", "{r:#}");
    assert_back_at_v1(&s, &before);
    let m = s.manifest(&sha(1));
    assert_eq!(ended(&m, "redeploy"), "ok");
    assert_eq!(ended(&m, "revert"), "ok");
}

#[test]
fn a_failed_migration_leaves_every_service_on_the_previous_image() {
    let (s, _, m) = rolled_back("migration-fails", 2, "v2-notnull", "none");
    assert_eq!(ended(&m, "migrate"), "failed");
    assert!(!journal(&m).iter().any(|(s, _)| s == "deploy"), "nothing was deployed: {:?}", journal(&m));

    // A service the swarm does not run: `check` names it and what runs; a deploy changes nothing.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let bad = s.tmp.path().join("bad.yml");
    std::fs::write(&bad, text.replace(&format!("{}_worker]", s.name), &format!("{}_wroker]", s.name))).unwrap();
    let out = crate::common::docker::deploy_guard(&s.sshd.client_key, &bad, &["check"]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{said}");
    let named = format!("no such service: {}_wroker", s.name);
    assert!(said.contains(&named) && said.contains(&format!("{}_worker", s.name)), "{said}");
    let before = s.db_state();
    let out = crate::common::docker::deploy_guard(
        &s.sshd.client_key,
        &bad,
        &["deploy", "--sha", &sha(5), "--tag", "v2", "--json"],
    );
    expect(&out, 4, "aborted", "none");
    assert_eq!(s.db_state(), before);
    on(&s, "v1");
}

#[test]
fn an_image_that_never_becomes_healthy_is_reverted_and_every_service_put_back() {
    let (_, r, m) = rolled_back("unhealthy", 3, "v2-crash", "revert");
    // The update paused on the failing task: deploy-guard, not Swarm, rolled back.
    let deploy = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "deploy").expect("a deploy step");
    let said = deploy["detail"].as_str().unwrap_or_default();
    assert!(said.contains("is paused") || said.contains("not converged"), "{r:#}");
    assert_eq!(ended(&m, "deploy"), "failed");
    assert_eq!(ended(&m, "revert"), "ok");
    assert_eq!(ended(&m, "redeploy"), "ok");
}

#[test]
fn a_down_that_errors_restores_with_the_writers_scaled_to_zero_and_back_to_their_replicas() {
    let (s, _, m) = rolled_back("bad-down", 4, "v2-bad-down", "restore");
    assert_eq!(ended(&m, "stop-app"), "ok");
    assert_eq!(ended(&m, "swap"), "ok");
    assert_eq!(ended(&m, "redeploy"), "ok");
    let kept = format!("shop__failed_{}", &sha(4)[..7]);
    assert_eq!(s.psql(&format!("SELECT count(*) FROM pg_database WHERE datname = '{kept}'")), "1", "broken db kept");
}
