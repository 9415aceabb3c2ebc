//! The example workflows grant exactly the token permissions the GitHub reporting they enable
//! needs: with `contents: read` only, every deployment, comment and incident failed as a warning
//! on every run. (What each report needs is the README's table and src/report/github.rs.)

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

/// The permissions a job running deploy-guard needs, from the reporting its steps enable.
fn needed(steps: &[&Value]) -> BTreeMap<String, String> {
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
    need
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
            let guard_steps: Vec<&Value> = job["steps"]
                .as_sequence()
                .map(|s| {
                    s.iter()
                        .filter(|st| st["uses"].as_str().is_some_and(|u| u.starts_with("station/deploy-guard@")))
                        .collect()
                })
                .unwrap_or_default();
            if guard_steps.is_empty() {
                continue;
            }
            assert_eq!(
                permissions(job),
                needed(&guard_steps),
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
        needed(&[&step]),
        BTreeMap::from([("contents".into(), "read".into()), ("deployments".into(), "write".into())])
    );
}
