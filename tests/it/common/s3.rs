//! A real S3-compatible server for tests: `s3s-fs` (crates.io) on 127.0.0.1, its own root dir,
//! one per test. Installed by scripts/setup:
//! `cargo install s3s-fs --version 0.14.1 --locked --features binary`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const ACCESS_KEY: &str = "AKIADEPLOYGUARDTEST";
pub const SECRET_KEY: &str = "deploy-guard-test-secret";
pub const BUCKET: &str = "backups";

pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub root: tempfile::TempDir,
}

/// The s3s-fs binary: `$S3S_FS`, else on PATH, else in ~/.cargo/bin.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return p.into();
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME").or_else(|| {
        std::env::var_os("HOME").map(|h| {
            let mut p = PathBuf::from(h);
            p.push(".cargo");
            p.into_os_string()
        })
    }) {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    dirs.into_iter().map(|d| d.join("s3s-fs")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the S3 test server s3s-fs is not installed: run scripts/setup, or \
             `cargo install s3s-fs --version 0.14.1 --locked --features binary` (or set S3S_FS=/path/to/s3s-fs)"
        )
    })
}

impl S3Server {
    /// Starts a server with bucket [`BUCKET`] on a free port.
    pub fn start() -> S3Server {
        let root = tempfile::Builder::new().prefix("dg-s3-").tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let mut s = S3Server { child: None, port: 0, root };
        s.spawn(0);
        s
    }

    fn spawn(&mut self, port: u16) {
        let mut child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the log for the listening address, then keeps draining it (a full pipe would
        // stall the server).
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("server is running at http://127.0.0.1:").nth(1) {
                    let port: u16 = rest.trim().trim_end_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(0);
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let got = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("s3s-fs did not report its address within 30 s")
        });
        assert!(got != 0, "s3s-fs reported no port");
        self.port = got;
        self.child = Some(child);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and root.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.spawn(port);
    }

    /// The file an object is stored in.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// s3s-fs's own record of an object: its ETag and the checksums it was sent, checked and keeps.
    pub fn internal_info_path(&self, key: &str) -> PathBuf {
        use base64::Engine;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        self.root.path().join(format!(".bucket-{}.object-{}.internal.json", enc(BUCKET), enc(key)))
    }

    /// Every object key in the bucket (files below the bucket dir, s3s-fs's own files excepted).
    pub fn keys(&self) -> Vec<String> {
        let base = self.root.path().join(BUCKET);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    /// Multipart uploads in progress, with their parts: s3s-fs keeps each upload as
    /// `.upload-{id}.json`, its parts as `.upload_id-{id}.part-{n}` and its metadata as
    /// `.bucket-….object-….upload-{id}.metadata.json` in its root. (s3s-fs does
    /// not implement ListMultipartUploads; these files are what it would list.)
    pub fn pending_uploads(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".upload") || n.contains(".upload-"))
            .collect();
        out.sort();
        out
    }

    /// Environment with the server's credentials.
    pub fn env(&self) -> Vec<(&'static str, &'static str)> {
        vec![("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)]
    }

    /// The `backup:` section pointing at this server.
    pub fn backup_yaml(&self, prefix: &str) -> String {
        format!(
            "backup:\n  store: \"s3://{BUCKET}/{prefix}\"\n  endpoint: \"{}\"\n  region: us-east-1\n",
            self.endpoint()
        )
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".") {
            continue;
        }
        if p.is_dir() {
            walk(base, &p, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
