//! Releases users can pin: the tag the docs, the examples and `init` tell users to write resolves
//! to a release the action installs, and the release workflow publishes what install.sh checks.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use crate::common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The version the action installs when its `version` input is empty, resolved by install.sh
/// itself (from Cargo.toml), as `vX.Y.Z`.
fn resolved_version() -> String {
    let out = Command::new("bash")
        .arg(root().join("scripts/install.sh"))
        .arg("--resolve")
        .env_remove("DG_VERSION")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("DG_TARGET")
        .output()
        .unwrap();
    assert!(out.status.success(), "install.sh --resolve: {}", common::stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().find_map(|l| l.strip_prefix("version=")).expect("version=").to_string()
}

/// Every `station/deploy-guard@REF` in `text`: (line, REF).
fn action_refs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("station/deploy-guard@") {
            rest = &rest[at + "station/deploy-guard@".len()..];
            let r: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c)).collect();
            out.push((i + 1, r));
        }
    }
    out
}

fn files_under(dir: &Path, ext: &[&str], out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, ext, out);
        } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| ext.contains(&x)) {
            out.push(p);
        }
    }
}

#[test]
fn the_docs_the_examples_and_init_use_the_major_tag_of_the_version_install_sh_resolves() {
    let version = resolved_version();
    assert!(
        version.len() > 1 && version[1..].split('.').all(|p| p.parse::<u32>().is_ok()),
        "install.sh resolved {version:?}, not vX.Y.Z"
    );
    let major = version.split('.').next().unwrap().to_string();
    assert_ne!(major, "v0", "a v0 release moves the v0 tag, which no doc tells users to write");

    let mut files = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    files_under(&root().join("docs"), &["md"], &mut files);
    files_under(&root().join("examples"), &["yml", "yaml", "md"], &mut files);
    // And what `init` writes into a user's repository.
    let repo = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin()).arg("init").current_dir(repo.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "init: {}", common::stderr(&out));
    files_under(&repo.path().join(".github/workflows"), &["yml"], &mut files);

    let mut found = 0;
    let mut wrong = Vec::new();
    for f in &files {
        for (line, r) in action_refs(&std::fs::read_to_string(f).unwrap()) {
            found += 1;
            // The moving major tag, or an exact release of this major.
            if r != major && !r.starts_with(&format!("{major}.")) {
                wrong.push(format!("{}:{line}: @{r}", f.display()));
            }
        }
    }
    assert!(found >= 5, "found only {found} uses of the action in {files:?}");
    assert!(wrong.is_empty(), "the crate is {version}, so users must write @{major}: {wrong:#?}");
}

/// What `init` writes deploys nothing until the user turns the push trigger on.
#[test]
fn init_workflows_deploy_only_when_run_by_hand_until_the_push_trigger_is_uncommented() {
    let repo = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin()).arg("init").current_dir(repo.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "init: {}", common::stderr(&out));
    let dir = repo.path().join(".github/workflows");
    let mut checked = 0;
    for name in ["deploy-guard-deploy.yml", "deploy-guard-rollback.yml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        // serde_yaml reads the key `on` as the string "on" (YAML 1.2).
        let on = doc["on"].as_mapping().unwrap_or_else(|| panic!("{name}: `on:` is not a mapping"));
        let triggers: Vec<&str> = on.keys().filter_map(Value::as_str).collect();
        assert_eq!(triggers, ["workflow_dispatch"], "{name}: runs only by hand");
        checked += 1;
        if name.ends_with("deploy.yml") {
            assert!(text.contains("#   push:\n#     branches: [main]"), "{name}: the push trigger, commented:\n{text}");
            assert!(text.contains("uncomment"), "{name}: says how to turn deploys on push on:\n{text}");
        }
    }
    assert_eq!(checked, 2);
}

fn release_workflow() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap()).unwrap()
}

#[test]
fn the_release_workflow_commits_the_checksums_attests_and_publishes_rc_tags_as_prereleases() {
    let wf = release_workflow();
    let text = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    // Two tags never race to move the major tag.
    assert_eq!(wf["concurrency"]["cancel-in-progress"].as_bool(), Some(false), "a concurrency group, never cancelled");
    assert!(wf["concurrency"]["group"].as_str().is_some());
    // Only the attesting job may mint an OIDC token and write attestations.
    let jobs = wf["jobs"].as_mapping().unwrap();
    let mut attesting = Vec::new();
    for (name, job) in jobs {
        let name = name.as_str().unwrap();
        let p = &job["permissions"];
        if p["id-token"].as_str() == Some("write") || p["attestations"].as_str() == Some("write") {
            attesting.push(name);
        }
        let uses_attest = job["steps"].as_sequence().is_some_and(|s| {
            s.iter().any(|st| st["uses"].as_str().is_some_and(|u| u.starts_with("actions/attest-build-provenance@")))
        });
        if uses_attest {
            assert_eq!((p["id-token"].as_str(), p["attestations"].as_str()), (Some("write"), Some("write")), "{name}");
        }
    }
    assert_eq!(attesting.len(), 1, "exactly one job attests: {attesting:?}");
    // The checksums install.sh reads are committed on the tag, where install.sh looks for them.
    assert!(text.contains("release/sha256sums/$TAG.txt"), "the release commits release/sha256sums/TAG.txt");
    let install = std::fs::read_to_string(root().join("scripts/install.sh")).unwrap();
    assert!(install.contains("$src_dir/release/sha256sums/$version.txt"), "install.sh reads the same file");
    assert!(text.contains("--prerelease"), "an -rc tag is published as a prerelease");
    // The release builds are the ones a pull request already ran.
    let build: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join(".github/workflows/build.yml")).unwrap()).unwrap();
    let on = build["on"].as_mapping().expect("build.yml: on:");
    for trigger in ["pull_request", "workflow_call"] {
        assert!(on.contains_key(trigger), "build.yml runs on {trigger}");
    }
    assert_eq!(wf["jobs"]["build"]["uses"].as_str(), Some("./.github/workflows/build.yml"));
}
