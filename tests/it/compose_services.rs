//! Every service that writes (issue "the real VPS", items 3 and 4) against a real Docker Engine
//! and Compose v2, over SSH: `app.services` are started on a tag together, stopped before a
//! restore and started again on the previous tag, each checked to run steadily; and the previous
//! tag is found when the app container is gone and the env file no longer names it.

use crate::common::docker;

use docker::Project;

fn sha(n: u8) -> String {
    format!("{n}").repeat(40)[..40].to_string()
}

fn report(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}), exit {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn with_services(p: &Project) {
    let text = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        text.replace("  service: backend\n", "  service: backend\n  services: [backend, worker]\n"),
    )
    .unwrap();
}

fn step<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["steps"].as_array().unwrap().iter().find(|s| s["step"] == name).unwrap_or_else(|| panic!("no step {name}: {r:#}"))
}

#[test]
fn the_api_and_the_worker_are_deployed_stopped_and_rolled_back_together() {
    docker::docker_ready();
    let p = Project::start("services");
    with_services(&p);
    let before = p.db_state();

    // A deploy starts both on the new tag, and both must run steadily.
    let out = p.deploy_guard(&["deploy", "--sha", &sha(1), "--tag", "v2", "--json"]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!((p.tag_of("backend"), p.tag_of("worker")), ("v2".into(), "v2".into()));
    assert!(step(&r, "health")["detail"].as_str().unwrap().contains("backend, worker running steadily"), "{r:#}");

    // A restore stops both before the swap, then starts both on the previous tag.
    let out = p.deploy_guard(&["rollback", "--sha", &sha(1), "--path", "restore", "--json"]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["path"], "restore");
    let stop = step(&r, "stop-app");
    assert!(stop["detail"].as_str().unwrap().contains("stopped"), "{stop}");
    assert_eq!((p.tag_of("backend"), p.tag_of("worker")), ("v1".into(), "v1".into()));
    assert_eq!(p.db_state(), before);
    p.wait_healthy("v1");

    // The plan names both services in every command that acts on the app.
    let out = p.deploy_guard(&["deploy", "--sha", &sha(2), "--tag", "v2", "--dry-run"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("up -d --no-deps backend worker") && plan.contains("stop backend worker"), "{plan}");
}

#[test]
fn a_service_not_in_the_compose_file_is_refused_before_the_backup() {
    docker::docker_ready();
    let p = Project::start("services-bad");
    let text = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        text.replace("  service: backend\n", "  service: backend\n  services: [backend, mailer]\n"),
    )
    .unwrap();
    let out = p.deploy_guard(&["deploy", "--sha", &sha(3), "--tag", "v2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(2 | 4)), "{err}");
    assert!(err.contains("app.services: \"mailer\" is not a service of"), "{err}");
    assert!(p.stored_files().is_empty(), "no backup: {:?}", p.stored_files());
    assert_eq!(p.tag_of("backend"), "v1");
}

#[test]
fn with_the_container_gone_and_no_tag_in_the_env_file_the_previous_tag_comes_from_the_journal() {
    docker::docker_ready();
    let p = Project::start("prev-journal");
    let out = p.deploy_guard(&["deploy", "--sha", &sha(4), "--tag", "v2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // The container is removed and someone deleted the tag line from the env file.
    p.compose_ok(&["rm", "-sf", "backend"]);
    let env: String =
        p.env_text().lines().filter(|l| !l.starts_with("APP_VERSION=")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&p.env_file, env).unwrap();

    // The next release crashes on start: the rollback must bring back v2, the journal's last success.
    let out = p.deploy_guard(&["deploy", "--sha", &sha(5), "--tag", "v2-crash", "--json"]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert_eq!(r["previous_tag"], "v2", "{r:#}");
    assert_eq!(r["previous_tag_source"], "journal", "{r:#}");
    assert_eq!(p.tag_of("backend"), "v2");
    p.wait_healthy("v2");
    assert!(p.env_text().contains("APP_VERSION=v2\n"), "{}", p.env_text());
}
