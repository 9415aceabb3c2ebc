//! The classifier's corpus through squawk itself: what squawk reports on each case is what
//! tests/fixtures/lint/expected.tsv (and so docs/LINT.md) says it reports. The lib's corpus
//! test holds our classifier to the same rows; this one keeps the comparison honest when squawk
//! or a case changes. squawk comes from scripts/setup (pinned, in the tools venv on PATH).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// The version the corpus was measured with (scripts/setup pins it).
const VERSION: &str = "squawk 2.70.0";

/// Fire on almost every file (no `SET lock_timeout`, no IF EXISTS): cross-cutting, not
/// per-statement findings (docs/LINT.md).
const LEFT_OUT: &str = "require-lock-timeout,require-statement-timeout,prefer-robust-stmts";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")
}

/// squawk's rules on `file`, sorted, `-` for none.
fn squawk(args: &[&str], file: &str) -> String {
    let out = Command::new("squawk")
        .args(["--reporter", "json", "--exclude", LEFT_OUT])
        .args(args)
        .arg(file)
        .current_dir(dir())
        .output()
        .unwrap_or_else(|e| panic!("squawk cannot run ({e}): run scripts/setup, which installs the pinned squawk-cli"));
    let text = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<serde_json::Value> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: squawk printed {text:.300} ({e})"))
    };
    let rules: BTreeSet<&str> = findings.iter().map(|f| f["rule_name"].as_str().unwrap()).collect();
    if rules.is_empty() {
        "-".into()
    } else {
        rules.into_iter().collect::<Vec<_>>().join(",")
    }
}

#[test]
fn squawk_reports_what_the_corpus_says() {
    let version =
        Command::new("squawk").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(version.as_deref().ok(), Some(VERSION), "run scripts/setup, which installs the pinned squawk-cli");
    let manifest = std::fs::read_to_string(dir().join("expected.tsv")).unwrap();
    let rows: Vec<Vec<&str>> =
        manifest.lines().filter(|l| !l.starts_with('#')).skip(1).map(|l| l.split('\t').collect()).collect();
    // The opt-in rules the corpus shows, each run as squawk's --include.
    let opt_in: BTreeSet<&str> = rows.iter().flat_map(|r| r[3].split(',')).filter(|r| *r != "-").collect();
    let include = opt_in.into_iter().collect::<Vec<_>>().join(",");
    let mut wrong = Vec::new();
    for r in &rows {
        let (file, want_default, want_opt_in) = (r[0], r[2], r[3]);
        let default = squawk(&[], file);
        let with_opt_in = squawk(&["--include", &include], file);
        let on: BTreeSet<&str> = default.split(',').collect();
        let added: Vec<&str> = with_opt_in.split(',').filter(|r| *r != "-" && !on.contains(r)).collect();
        let added = if added.is_empty() { "-".to_string() } else { added.join(",") };
        if (default.as_str(), added.as_str()) != (want_default, want_opt_in) {
            wrong.push(format!(
                "{file}: squawk reports {default} (opt-in: {added}), expected.tsv says {want_default} ({want_opt_in})"
            ));
        }
    }
    assert!(rows.len() >= 170, "{} cases", rows.len());
    assert!(wrong.is_empty(), "{} of {} cases differ:\n{}", wrong.len(), rows.len(), wrong.join("\n"));
}
