//! `app.runtime: kubernetes` on a real control plane (etcd, kube-apiserver with RBAC,
//! kube-controller-manager, kube-scheduler, kwok: `common::k8s`), with real PostgreSQL and the
//! real golang-migrate run from the runner; deploy-guard acts as a service account holding exactly
//! the Role of docs/KUBERNETES.md. Each scenario runs the real binary and checks the database,
//! every Deployment's image and replicas, and the journal.

use crate::common::k8s::{control_plane, step, steps, K8s};
use crate::common::tool::{self, explain};
use deploy_guard::simulate::control_plane::{CRASH_TAG, JOB_FAILS_TAG, JOB_HANGS_TAG, JOB_LOG_LINE, UNREADY_TAG};

fn spec() -> tool::ToolSpec {
    crate::tools_golang_migrate::spec()
}

/// The release v2 (a nullable column and an index) with `down` as its down migration.
fn release(k: &K8s, down: &str) {
    k.w.release("add_nickname", tool::ADD_NICKNAME, down);
}

/// Deploys `tag`, which must end rolled back by `path`, with the database exactly at v1 and every
/// Deployment back at v1 with its replicas.
fn rolled_back(k: &K8s, tag: &str, path: &str) -> serde_json::Value {
    let out = k.deploy(tag);
    assert_eq!(k.w.ended(&out), (Some(1), "rolled-back".into(), path.into()), "{}", explain(&out));
    let r = crate::common::json(&out);
    assert_eq!(r["previous_tag"], "v1", "{r:#}");
    k.w.assert_back_at_v1("nickname");
    k.assert_running("v1");
    r
}

#[test]
fn happy_deploy_then_a_manual_rollback_by_sha_from_a_new_process() {
    let k = K8s::new(spec(), "k8s_happy", 600, "");
    release(&k, tool::DROP_NICKNAME);
    let out = k.deploy("v2");
    assert_eq!(k.w.ended(&out), (Some(0), "deployed".into(), "none".into()), "{}", explain(&out));
    let r = crate::common::json(&out);
    assert_eq!(r["previous_tag"], "v1", "the previous tag is the Deployment's image: {r:#}");
    assert!(k.w.has_column("nickname"));
    assert_eq!(k.w.state(), "2");
    assert_eq!(k.w.users(), tool::USERS);
    k.assert_running("v2");
    let health = step(&r, "health")["detail"].as_str().unwrap_or_default().to_string();
    assert!(health.contains("api tag v2: 2/2 ready") && health.contains("worker tag v2: 1/1 ready"), "{health}");

    // `check` reads each Deployment's image, ready replicas and rollout.
    let check = k.w.dg(&["check"]);
    let said = crate::common::stdout(&check);
    assert!(said.contains("api tag v2: 2/2 ready") && said.contains("rolled out"), "{}", explain(&check));

    // The job ended; a new process rolls back by SHA: golang-migrate's down, the recorded image.
    let out = k.w.dg(&["rollback", "--sha", &crate::common::SHA[..7], "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert_eq!(crate::common::json(&out)["path"], "revert");
    k.w.assert_back_at_v1("nickname");
    k.assert_running("v1");
}

#[test]
fn migration_fails_leaves_golang_migrate_dirty_and_is_restored() {
    let k = K8s::new(spec(), "k8s_fails", 600, "");
    k.w.release("add_tier", tool::ADD_TIER_NOT_NULL, tool::DROP_TIER);
    let out = k.deploy("v2");
    assert_eq!(k.w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", explain(&out));
    let r = crate::common::json(&out);
    assert!(step(&r, "migrate")["detail"].as_str().unwrap_or_default().contains("contains null values"), "{r:#}");
    assert!(!steps(&r).contains(&"deploy".to_string()), "v2 was never set: {:?}", steps(&r));
    k.w.assert_back_at_v1("tier");
    k.assert_running("v1");
}

/// With `pause_env`, the restore pauses the writers (the variable set on every Deployment and
/// its rollout waited for) instead of scaling them to 0, and removes it after.
#[test]
fn a_restore_pauses_writes_with_the_env_var_and_resumes_them() {
    let k = K8s::new(spec(), "k8s_pause", 600, "");
    let text = std::fs::read_to_string(k.w.config()).unwrap();
    std::fs::write(
        k.w.config(),
        text.replace("    container: app\n", "    container: app\n    pause_env: READ_ONLY_MODE=true\n"),
    )
    .unwrap();
    k.w.release("add_tier", tool::ADD_TIER_NOT_NULL, tool::DROP_TIER);
    let out = k.deploy("v2");
    assert_eq!(k.w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", explain(&out));
    let r = crate::common::json(&out);
    let stop = step(&r, "stop-app")["detail"].as_str().unwrap_or_default().to_string();
    assert!(stop.contains("writes paused"), "{stop}");
    assert!(step(&r, "redeploy")["detail"].as_str().unwrap_or_default().contains("writes resumed"), "{r:#}");
    k.w.assert_back_at_v1("tier");
    k.assert_running("v1");
    for (d, _) in crate::common::k8s::DEPLOYMENTS {
        let env =
            k.kubectl(&["get", "deployment", d, "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"]);
        assert_eq!(env, "DATABASE_URL", "{d}: READ_ONLY_MODE removed, the rest kept");
    }
}

/// The runbook gives this deployment's kubectl lines, made from the commands that run.
#[test]
fn the_runbook_gives_the_kubectl_lines() {
    let k = K8s::new(spec(), "k8s_runbook", 600, "");
    let out = k.w.dg(&["runbook"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let text = crate::common::stdout(&out);
    let ns = &k.ns;
    for line in [
        format!("kubectl --namespace {ns} set image deployment/api deployment/worker app=registry.test/app:"),
        format!("kubectl --namespace {ns} scale deployment/\"$d\" --replicas=0"),
    ] {
        assert!(text.contains(&line), "{line:?} not in the runbook:\n{text}");
    }
    assert!(!text.contains("token"), "no credential in the runbook");
}

#[test]
fn an_unready_release_reverts_api_and_worker_together() {
    let k = K8s::new(spec(), "k8s_unready", 600, "");
    release(&k, tool::DROP_NICKNAME);
    let r = rolled_back(&k, UNREADY_TAG, "revert");
    let health = step(&r, "health")["detail"].as_str().unwrap_or_default().to_string();
    assert!(health.contains("not rolled out within 30s") && health.contains("api tag v2-unready"), "{health}");
    let redeploy = step(&r, "redeploy-health")["detail"].as_str().unwrap_or_default().to_string();
    assert!(redeploy.contains("api tag v1: 2/2 ready") && redeploy.contains("worker tag v1: 1/1 ready"), "{redeploy}");
}

#[test]
fn a_bad_down_restores_with_the_writers_scaled_to_zero_and_back_to_their_recorded_replicas() {
    let k = K8s::new(spec(), "k8s_bad_down", 600, "");
    release(&k, tool::BAD_DOWN);
    let r = rolled_back(&k, UNREADY_TAG, "restore");
    let stop = step(&r, "stop-app")["detail"].as_str().unwrap_or_default().to_string();
    assert!(stop.contains("api=2 worker=1"), "the replica counts are in the journal: {stop}");
    let order = steps(&r);
    let at = |s: &str| order.iter().position(|x| x == s).unwrap_or_else(|| panic!("no {s}: {order:?}"));
    assert!(at("stop-app") < at("swap") && at("swap") < at("redeploy"), "{order:?}");
}

#[test]
fn a_destructive_release_is_restored_with_its_data() {
    let k = K8s::new(spec(), "k8s_destructive", 600, "");
    k.w.release("drop_name", "ALTER TABLE users DROP COLUMN name;", "ALTER TABLE users ADD COLUMN name text;");
    let out = k.w.dg(&["deploy", "--sha", crate::common::SHA, "--tag", UNREADY_TAG, "--allow-destructive", "--json"]);
    assert_eq!(k.w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", explain(&out));
    assert_eq!(k.w.users(), tool::USERS, "the names are back");
    assert_eq!(k.w.state(), "1");
    k.assert_running("v1");
}

#[test]
fn a_crash_looping_image_stops_at_its_progress_deadline_and_reverts() {
    let k = K8s::new(spec(), "k8s_crash", 5, "");
    release(&k, tool::DROP_NICKNAME);
    let r = rolled_back(&k, CRASH_TAG, "revert");
    let health = step(&r, "health")["detail"].as_str().unwrap_or_default().to_string();
    assert!(health.contains("exceeded its progress deadline"), "{health}");
}

#[test]
fn a_timed_out_migration_job_is_deleted_with_its_pod_before_the_restore() {
    let k = K8s::new(spec(), "k8s_job_hangs", 600, "  where: job\n");
    let text = std::fs::read_to_string(k.w.config()).unwrap();
    std::fs::write(k.w.config(), text.replace("timeout: 120s", "timeout: 8s")).unwrap();
    release(&k, tool::DROP_NICKNAME);
    let out = k.deploy(JOB_HANGS_TAG);
    let r = crate::common::json(&out);
    assert_eq!(k.w.ended(&out).0, Some(1), "{}", explain(&out));
    assert_eq!(r["result"], "rolled-back", "{r:#}");
    let migrate = step(&r, "migrate")["detail"].as_str().unwrap_or_default().to_string();
    assert!(migrate.contains("1 container(s)"), "the Job was deleted: {migrate}");
    let jobs = k.kubectl(&["get", "jobs", "-o", "name"]);
    assert!(jobs.trim().is_empty(), "no Job left: {jobs}");
    assert!(k.pods().iter().all(|p| !p.contains("deploy-guard-migrate")), "no Job pod left: {:?}", k.pods());
    k.w.assert_back_at_v1("nickname");
    k.assert_running("v1");
}

/// A migration Job whose pod fails: the failure is said, nothing ran, v1 stays.
#[test]
fn a_failing_migration_job_rolls_back_with_nothing_to_revert() {
    let k = K8s::new(spec(), "k8s_job_fails", 600, "  where: job\n");
    release(&k, tool::DROP_NICKNAME);
    let out = k.deploy(JOB_FAILS_TAG);
    assert_eq!(k.w.ended(&out), (Some(1), "rolled-back".into(), "none".into()), "{}", explain(&out));
    let r = crate::common::json(&out);
    let migrate = step(&r, "migrate")["detail"].as_str().unwrap_or_default().to_string();
    assert!(migrate.contains("the migration Job deploy-guard-migrate-0123456 failed"), "{migrate}");
    // Its log, read through the apiserver from the node (kwok serves a file for it), is quoted.
    assert!(migrate.contains(JOB_LOG_LINE), "the Job's log is quoted: {migrate}");
    let read = control_plane().opened(&k.ns, "log");
    assert!(read.iter().any(|p| p.starts_with("deploy-guard-migrate-0123456-")), "{read:?}");
    k.w.assert_back_at_v1("nickname");
    k.assert_running("v1");
}

/// The database runs in the cluster (`database.service: pod/postgres-0`): the backup's pg_dump
/// and the restore's psql run in its pod through `kubectl exec -i` (kwok runs them on this
/// machine, against the real server), with the extra Role of docs/KUBERNETES.md and no more.
#[test]
fn a_database_in_a_pod_is_backed_up_and_restored_through_kubectl_exec() {
    let k = K8s::new(spec(), "k8s_db_pod", 600, "");
    let cp = control_plane();
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: postgres-0\n  namespace: {}\nspec:\n  containers:\n  \
         - name: postgres\n    image: postgres:16\n",
        k.ns
    );
    cp.apply(&pod).unwrap();
    k.grant(&crate::common::k8s::documented_block("role-exec"));
    let text = std::fs::read_to_string(k.w.config()).unwrap();
    std::fs::write(k.w.config(), text.replace("database:\n", "database:\n  service: pod/postgres-0\n")).unwrap();
    k.w.release("add_tier", tool::ADD_TIER_NOT_NULL, tool::DROP_TIER);
    let out = k.deploy("v2");
    assert_eq!(k.w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", explain(&out));
    k.w.assert_back_at_v1("tier");
    k.assert_running("v1");
    let entered = cp.opened(&k.ns, "exec");
    // The version checks, the dump, and the restore's scratch load at least.
    assert!(entered.len() >= 3 && entered.iter().all(|p| p == "postgres-0"), "{entered:?}");
}

/// The control plane enforces RBAC: the documented Role is all deploy-guard holds, and less is
/// refused (so the scenarios above prove that Role is enough).
#[test]
fn the_documented_role_is_enough_and_rbac_is_enforced() {
    let k = K8s::new(spec(), "k8s_rbac", 600, "");
    let cp = control_plane();
    let can = |verb: &str, what: &str| {
        let sa = format!("--as=system:serviceaccount:{}:deploy-guard", k.ns);
        let out = cp.kubectl(&["-n", &k.ns, "auth", "can-i", verb, what, &sa]).unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    assert!(can("patch", "deployments.apps"));
    assert!(can("patch", "deployments.apps/scale"));
    assert!(can("create", "jobs.batch"));
    assert!(!can("delete", "deployments.apps"), "the Role grants no more than documented");
    assert!(!can("create", "pods/exec"));
    assert!(!can("get", "secrets"));
    // Without the Role's binding, deploy-guard cannot read the Deployments and says so.
    cp.kubectl_ok(&["-n", &k.ns, "delete", "rolebinding", "deploy-guard"]).unwrap();
    let out = k.w.dg(&["check"]);
    assert_ne!(out.status.code(), Some(0), "{}", explain(&out));
    let said = format!("{}{}", crate::common::stdout(&out), crate::common::stderr(&out));
    assert!(said.contains("forbidden"), "{said}");
    let token_line = std::fs::read_to_string(&k.kubeconfig).unwrap();
    let token = token_line.lines().find_map(|l| l.trim().strip_prefix("token: ")).unwrap();
    assert!(!said.contains(token), "the token is never printed");
}

/// `simulate --runtime kubernetes` runs the drill on a control plane of its own.
#[test]
fn simulate_runs_the_drill_on_the_control_plane() {
    let out = std::process::Command::new(crate::common::bin())
        .args(["simulate", "--runtime", "kubernetes", "--scenario", "bad-down", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let r = crate::common::json(&out);
    assert_eq!(r[0]["scenario"], "bad-down", "{r:#}");
    assert_eq!(r[0]["path"], "restore", "{r:#}");
    assert_eq!(r[0]["as_expected"], true, "{r:#}");
}

/// Where the control plane is not built, the drill says so and what builds it.
#[test]
fn simulate_says_clearly_where_there_is_no_control_plane() {
    let empty = crate::common::tempdir();
    let out = std::process::Command::new(crate::common::bin())
        .args(["simulate", "--runtime", "kubernetes", "--scenario", "happy"])
        .env("DG_K8S_BIN", empty.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", explain(&out));
    let said = crate::common::stderr(&out);
    assert!(
        said.contains("the Kubernetes control plane is not built here") && said.contains("scripts/k8s-tools"),
        "{said}"
    );
}
