//! The compose runtime on three hosts (`target.hosts`): each host an sshd in a network namespace
//! of its own, running its own compose project (`backend`, `worker`) on this machine's dockerd;
//! the primary's project holds the database (common/compose_hosts.rs). Each scenario asserts every
//! host's running containers' tags (`docker inspect`), their env files, what dockerd did to them
//! (its events), the database, the exit code and the journal's row per host.

use crate::common::compose_hosts::ComposeHosts;
use crate::compose_docker::{expect, sha};

fn all(tag: &str) -> Vec<String> {
    vec![tag.to_string(); 3]
}

/// Every host's backend and worker run `tag`, their env files name it, the journal says so.
fn every_host_on(f: &ComposeHosts, tag: &str) {
    assert_eq!(f.tags("backend"), all(tag), "the backends' tags");
    assert_eq!(f.tags("worker"), all(tag), "the workers' tags");
    assert_eq!(f.env_tags(), all(tag), "the env files' tags");
    assert_eq!(f.journal_tags(), all(tag), "the journal's rows: {:#}", f.journal()["hosts"]);
    for d in &f.deployments {
        d.wait_healthy(tag);
    }
}

#[test]
fn happy_every_host_gets_the_tag_one_at_a_time_and_a_rollback_by_sha_puts_every_one_back() {
    let f = ComposeHosts::start("hc_happy", None);
    let before = f.primary().db_state();
    let out = f.deploy_guard(&["deploy", "--sha", &sha(1), "--tag", "v2", "--json"]);
    let r = expect(&out, 0, "deployed", "none");
    every_host_on(&f, "v2");
    let after = f.primary().db_state();
    assert_eq!(after.user_columns, "id,name,nickname");
    assert_eq!(after.migrations, "CreateUsers1700000000000,AddNickname1700000000001");
    assert_eq!(after.users, before.users, "the deploy changed the users' data");
    // The summary's rows, and the rollout's order: each host in turn.
    let n = f.names();
    let rows: Vec<&str> = r["hosts"].as_array().unwrap().iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(rows, n.iter().map(String::as_str).collect::<Vec<_>>(), "{r:#}");
    let deploy = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "deploy").unwrap();
    let detail = deploy["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("{}, {}, {}", n[0], n[1], n[2])) && detail.contains("one at a time"), "{detail}");

    // The job ended; a new process rolls every host back by SHA (TypeORM's down() on the primary).
    let out = f.deploy_guard(&["rollback", "--sha", &sha(1)[..7], "--json"]);
    let r = crate::compose_docker::report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(r["path"], "revert", "{r:#}");
    every_host_on(&f, "v1");
    assert_eq!(f.primary().db_state(), before, "the database is back as it was");
}

#[test]
fn the_second_host_unhealthy_rolls_the_first_back_and_never_touches_the_third() {
    let f = ComposeHosts::start("hc_sick", Some((1, "v2")));
    let before = f.primary().db_state();
    let watch = f.watch();
    let out = f.deploy_guard(&["deploy", "--sha", &sha(2), "--tag", "v2", "--json"]);
    let events = watch.seen();
    expect(&out, 1, "rolled-back", "revert");
    every_host_on(&f, "v1");
    assert_eq!(f.primary().db_state(), before, "the database is back as it was");
    // The first two got v2 (their containers created on it), the third was never touched.
    for (i, seen) in events[..2].iter().enumerate() {
        for s in ["backend", "worker"] {
            let v2 = seen.iter().position(|e| *e == format!("create {s} v2"));
            let v1 = seen.iter().rposition(|e| *e == format!("create {s} v1"));
            assert!(matches!((v2, v1), (Some(a), Some(b)) if a < b), "host {i}'s {s}: {seen:?}");
        }
    }
    assert_eq!(events[2], Vec::<String>::new(), "the third host was touched");
    let (err, n) = (String::from_utf8_lossy(&out.stderr), f.names());
    assert!(err.contains(&format!("host {}", n[1])) && err.contains(&format!("{} not touched", n[2])), "{err}");
}

/// A release whose down migration errors: the backup is restored, with every host's writers (the
/// backend and the worker) stopped before the swap and all of them started again after.
#[test]
fn the_restore_path_stops_the_writers_on_every_host_and_brings_them_all_back() {
    let f = ComposeHosts::start("hc_restore", None);
    let before = f.primary().db_state();
    let watch = f.watch();
    let out = f.deploy_guard(&["deploy", "--sha", &sha(3), "--tag", "v2-bad-down", "--json"]);
    let events = watch.seen();
    let r = expect(&out, 1, "rolled-back", "restore");
    every_host_on(&f, "v1");
    assert_eq!(f.primary().db_state(), before, "the database is the backup's");
    let kept = format!("shop__failed_{}", &sha(3)[..7]);
    let sql = format!("SELECT count(*) FROM pg_database WHERE datname = '{kept}'");
    assert_eq!(f.primary().psql(&sql), "1", "the broken database is kept");
    // The primary got the new tag (it is unhealthy there, on every host): the others never did,
    // yet their writers were stopped, then started again as they were (not recreated).
    for s in ["backend", "worker"] {
        let seen = &events[0];
        let stopped = seen.iter().position(|e| *e == format!("stop {s} v2-bad-down"));
        let back = seen.iter().rposition(|e| *e == format!("start {s} v1"));
        assert!(matches!((stopped, back), (Some(a), Some(b)) if a < b), "the primary's {s}: {seen:?}");
    }
    for (i, seen) in events.iter().enumerate().skip(1) {
        assert!(!seen.iter().any(|e| e.starts_with("create")), "host {i}: {seen:?}");
        for s in ["backend", "worker"] {
            let stop = seen.iter().position(|e| *e == format!("stop {s} v1"));
            let start = seen.iter().rposition(|e| *e == format!("start {s} v1"));
            assert!(matches!((stop, start), (Some(a), Some(b)) if a < b), "host {i}'s {s}: {seen:?}");
        }
    }
    let stop = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "stop-app").unwrap();
    let detail = stop["detail"].as_str().unwrap();
    assert!(f.names().iter().all(|n| detail.contains(&format!("app stopped on {n}"))), "{detail}");
}

/// `check` reaches every host and says what each one's containers run; a host whose backend is
/// stopped is named, exit 3.
#[test]
fn check_has_a_line_per_host_with_its_containers() {
    let f = ComposeHosts::start("hc_check", None);
    let line = |r: &serde_json::Value, n: &str| {
        let parts = r.as_array().or_else(|| r["parts"].as_array()).unwrap_or_else(|| panic!("{r:#}"));
        parts
            .iter()
            .find(|l| l["part"] == format!("host {n}").as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{n}: {r:#}"))
    };
    let out = f.deploy_guard(&["check", "--json"]);
    let r = crate::compose_docker::report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}\n{}", String::from_utf8_lossy(&out.stderr));
    for n in f.names() {
        let detail = line(&r, &n)["detail"].as_str().unwrap().to_string();
        assert!(detail.contains("backend running") && detail.contains("worker running, tag v1"), "{n}: {detail}");
    }

    f.deployments[2].compose_ok(&["stop", "backend"]);
    let out = f.deploy_guard(&["check", "--json"]);
    let r = crate::compose_docker::report(&out);
    assert_eq!(out.status.code(), Some(3), "{r:#}");
    let n = f.names();
    assert_eq!(line(&r, &n[0])["ok"], true, "{r:#}");
    assert_eq!(line(&r, &n[2])["ok"], false, "{r:#}");
    assert!(line(&r, &n[2])["detail"].as_str().unwrap().contains("backend exited"), "{r:#}");
}
