//! The docs stay true: every setting is in docs/CONFIG.md, every example config loads, and the
//! README's diagram is the tree the code follows.

#[test]
fn every_setting_is_documented() {
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md")).unwrap();
    let missing: Vec<&str> = deploy_guard::config::SETTINGS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !reference.contains(&format!("`{p}`")))
        .collect();
    assert!(missing.is_empty(), "docs/CONFIG.md lacks {missing:?}");
}

#[test]
fn every_example_config_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yml") {
            let text = std::fs::read_to_string(&p).unwrap();
            deploy_guard::config::Config::from_yaml(&text, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 2);
}

/// The README's diagram is the deploy's tree as `report::flowchart` draws it from the edges.
/// `DG_UPDATE_DOCS=1` rewrites it after the tree changed.
#[test]
fn the_readme_diagram_is_the_tree() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- tree:begin", "<!-- tree:end -->");
    let start = readme.find(begin).expect("README has no tree:begin marker");
    let body_start = start + readme[start..].find('\n').unwrap() + 1;
    let body_end = readme.find(end).expect("README has no tree:end marker");
    let chart = deploy_guard::report::flowchart::mermaid(deploy_guard::guard::Mode::Deploy, true);
    let want = format!("```mermaid\n{chart}```\n");
    if std::env::var_os("DG_UPDATE_DOCS").is_some() {
        let updated = format!("{}{want}{}", &readme[..body_start], &readme[body_end..]);
        std::fs::write(path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[body_start..body_end],
        want,
        "the README's diagram is not the tree: run `DG_UPDATE_DOCS=1 scripts/test --test it -- docs::`"
    );
}

/// No README longer than a front page: the reference lives in docs/.
#[test]
fn the_readme_is_a_front_page() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.lines().count() <= 250, "README.md has {} lines", readme.lines().count());
}

/// The example workflows give deploy-guard's job room for its longest run: a backup and a
/// restore (each bounded by the stream timeout), the migrations and the health check. A job
/// timeout shorter than that cancels a rollback half way.
#[test]
fn the_example_jobs_outlast_the_runs_they_start() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/workflows");
    let mut checked = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (name, job) in doc["jobs"].as_mapping().unwrap() {
            let Some(step) = job["steps"].as_sequence().and_then(|s| {
                s.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("station/deploy-guard@")))
            }) else {
                continue;
            };
            // The PR check backs up, restores and migrates nothing.
            if step["with"]["command"].as_str() == Some("plan") {
                continue;
            }
            let minutes = job["timeout-minutes"].as_u64().unwrap_or(360);
            let env = |k: &str, default: &str| {
                let v = step["env"][k].as_str().unwrap_or(default).to_string();
                humantime::parse_duration(&v).unwrap().as_secs()
            };
            let stream = env("DEPLOY_GUARD_DATABASE_STREAM_TIMEOUT", "6h");
            let need = 2 * stream
                + env("DEPLOY_GUARD_MIGRATIONS_TIMEOUT", "10m")
                + 2 * env("DEPLOY_GUARD_APP_HEALTH_TIMEOUT", "90s");
            assert!(
                minutes * 60 >= need,
                "{} job {name:?}: timeout-minutes {minutes} < the {} s a run may take",
                path.display(),
                need
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "no example job runs deploy-guard");
}
