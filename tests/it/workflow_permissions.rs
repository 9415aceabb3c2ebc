//! The example workflows grant exactly the token permissions the GitHub reporting they enable
//! needs: with `contents: read` only, every deployment, comment and incident failed as a warning
//! on every run. (What each report needs is the README's table and src/report/github.rs.) And they
//! work copy-pasted: one deployment per run, a rollback no push can cancel, OIDC credentials that
//! nothing overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "expected the deploy and rollback examples in {}", dir.display());
    files
}

/// A reporting switch (`github.deployments`, …): on unless the step's env turns it off.
fn enabled(step: &Value, key: &str) -> bool {
    let var = format!("DEPLOY_GUARD_GITHUB_{}", key.to_uppercase());
    match &step["env"][var.as_str()] {
        Value::Bool(b) => *b,
        Value::String(s) => !matches!(s.as_str(), "false" | "0" | "no"),
        _ => true,
    }
}

/// The permissions a job running deploy-guard needs, from the reporting its steps enable (and
/// `id-token: write` when the job exchanges its OIDC token for AWS credentials).
fn needed(steps: &[&Value], oidc: bool) -> BTreeMap<String, String> {
    let mut need = BTreeMap::from([("contents".to_string(), "read".to_string())]);
    let mut grant = |k: &str, v: &str| {
        need.insert(k.to_string(), v.to_string());
    };
    for step in steps {
        if step["with"]["command"].as_str() == Some("plan") {
            // The PR check posts its comment on the pull request, and reports nothing else.
            if enabled(step, "comment") {
                grant("pull-requests", "write");
            }
            continue;
        }
        if enabled(step, "deployments") {
            grant("deployments", "write");
        }
        if enabled(step, "comment") {
            // A comment on the pull request, else on the commit.
            grant("pull-requests", "write");
            grant("contents", "write");
        }
        if enabled(step, "incident") {
            grant("issues", "write");
        }
    }
    if oidc {
        grant("id-token", "write");
    }
    need
}

fn is_guard(step: &Value) -> bool {
    step["uses"].as_str().is_some_and(|u| u.starts_with("station/deploy-guard@"))
}

/// A step that assumes an AWS role with the job's OIDC token.
fn is_oidc(step: &Value) -> bool {
    step["uses"].as_str().is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@"))
        && step["with"]["role-to-assume"].as_str().is_some()
}

fn permissions(job: &Value) -> BTreeMap<String, String> {
    let Value::Mapping(m) = &job["permissions"] else {
        return BTreeMap::new();
    };
    m.iter().map(|(k, v)| (k.as_str().unwrap_or("").to_string(), v.as_str().unwrap_or("").to_string())).collect()
}

#[test]
fn example_workflows_grant_exactly_what_their_github_reporting_needs() {
    let mut checked = 0;
    for file in examples() {
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let Value::Mapping(jobs) = &doc["jobs"] else { panic!("{name}: no jobs") };
        for (job_name, job) in jobs {
            let job_name = job_name.as_str().unwrap_or("?");
            let steps: Vec<&Value> = job["steps"].as_sequence().map(|s| s.iter().collect()).unwrap_or_default();
            let guard_steps: Vec<&Value> = steps.iter().copied().filter(|s| is_guard(s)).collect();
            if guard_steps.is_empty() {
                continue;
            }
            assert_eq!(
                permissions(job),
                needed(&guard_steps, steps.iter().any(|s| is_oidc(s))),
                "{name}: job `{job_name}` must grant exactly what deploy-guard's GitHub reporting needs \
                 (deployments → deployments: write; comment → pull-requests: write and contents: write; \
                 incident → issues: write)"
            );
            checked += 1;
        }
        // The workflow-wide default stays read-only: jobs widen it themselves.
        assert_eq!(
            doc["permissions"]["contents"].as_str(),
            Some("read"),
            "{name}: the workflow-wide permissions must be `contents: read`"
        );
    }
    assert!(checked >= 2, "expected a deploy-guard job in each example workflow");
}

#[test]
fn turning_a_report_off_drops_its_permission() {
    let step: Value = serde_yaml::from_str(
        "uses: station/deploy-guard@v1\nenv: { DEPLOY_GUARD_GITHUB_COMMENT: 'false', DEPLOY_GUARD_GITHUB_INCIDENT: false }",
    )
    .unwrap();
    assert_eq!(
        needed(&[&step], false),
        BTreeMap::from([("contents".into(), "read".into()), ("deployments".into(), "write".into())])
    );
}

/// What the examples promise a user who copies them.
#[test]
fn example_workflows_make_one_deployment_queue_deploys_per_job_and_let_oidc_credentials_through() {
    let mut groups = BTreeMap::new();
    let mut oidc_jobs = 0;
    for file in examples() {
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        // A workflow-wide group would let a push displace a queued manual rollback.
        assert!(doc["concurrency"].is_null(), "{name}: concurrency belongs on the deploy-guard job, not the workflow");
        for (job_name, job) in doc["jobs"].as_mapping().unwrap() {
            let job_name = job_name.as_str().unwrap_or("?");
            let steps: Vec<&Value> = job["steps"].as_sequence().map(|s| s.iter().collect()).unwrap_or_default();
            let guard_steps: Vec<&Value> = steps.iter().copied().filter(|s| is_guard(s)).collect();
            if guard_steps.is_empty() {
                continue;
            }
            // deploy-guard makes the run's deployment; the job's `environment:` would make a second.
            if guard_steps.iter().any(|s| enabled(s, "deployments")) {
                assert!(job["environment"].is_null(), "{name}: job `{job_name}` makes two deployments per run");
            }
            // A PR check changes nothing: a newer push may cancel it. A run that changes the
            // target is never cut short by another.
            let checks_only = guard_steps.iter().all(|s| s["with"]["command"].as_str() == Some("plan"));
            if checks_only {
                continue;
            }
            assert_eq!(job["concurrency"]["cancel-in-progress"].as_bool(), Some(false), "{name}: `{job_name}`");
            let group =
                job["concurrency"]["group"].as_str().unwrap_or_else(|| panic!("{name}: `{job_name}`: no group"));
            groups.insert(name.clone(), (group.to_string(), job_name == "rollback"));
            if steps.iter().any(|s| is_oidc(s)) {
                oidc_jobs += 1;
                for s in &guard_steps {
                    let aws: Vec<&str> = s["env"]
                        .as_mapping()
                        .map(|m| m.keys().filter_map(Value::as_str).filter(|k| k.starts_with("AWS_")).collect())
                        .unwrap_or_default();
                    assert!(aws.is_empty(), "{name}: {aws:?} on the deploy-guard step override the OIDC credentials");
                }
            }
        }
    }
    assert!(oidc_jobs >= 1, "an example with OIDC credentials for S3");
    let rollback: Vec<&String> = groups.values().filter(|(_, r)| *r).map(|(g, _)| g).collect();
    assert_eq!(rollback.len(), 1, "{groups:?}");
    for (file, (group, is_rollback)) in &groups {
        if !is_rollback {
            assert_ne!(group, rollback[0], "{file}: a deploy shares the rollback's group: a push could displace it");
        }
    }
}
