//! Shared test harness: one throwaway PostgreSQL cluster for the test binary (the machine's own
//! binaries, run as `postgres` when root), one database per test.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use deploy_guard::simulate::sandbox::Cluster;

pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        Cluster::start(None).unwrap_or_else(|e| panic!("cannot start a test PostgreSQL cluster: {e:#}"))
    })
}

/// A new empty database with a unique name.
pub fn fresh_db(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    cluster().create_database(&name).expect("create database");
    name
}

/// The deploy-guard binary built for these tests. `DG_TEST_BIN` names a copy instead: worktrees
/// sharing one CARGO_TARGET_DIR overwrite each other's `target/debug/deploy-guard`.
pub fn bin() -> PathBuf {
    std::env::var_os("DG_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_deploy-guard")))
}

/// A temp dir that the `postgres` user can read (for COPY and the like).
pub fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("dg-test-").tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A staged sample app (see `deploy_guard::simulate::Stage`) with its deploy-guard.yml.
pub struct App {
    pub tmp: tempfile::TempDir,
    pub stage: deploy_guard::simulate::Stage,
    pub config: PathBuf,
}

impl App {
    pub fn new(prefix: &str, releases: &[&str]) -> App {
        Self::build(prefix, releases, deploy_guard::simulate::Staged::Clean)
    }

    pub fn build(prefix: &str, releases: &[&str], staged: deploy_guard::simulate::Staged) -> App {
        let tmp = tempdir();
        let db = fresh_db(prefix);
        let stage = deploy_guard::simulate::Stage::new(cluster(), tmp.path(), &db, releases, staged)
            .unwrap_or_else(|e| panic!("staging the sample app: {e:#}"));
        let config = tmp.path().join("deploy-guard.yml");
        std::fs::write(&config, stage.config_yaml(&db)).unwrap();
        App { tmp, stage, config }
    }

    /// Rewrites the config (e.g. to break a setting).
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, f(text)).unwrap();
    }

    /// Runs deploy-guard with this app's config; GitHub variables cleared.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut c = std::process::Command::new(bin());
        c.args(args).arg("--config").arg(&self.config);
        for v in ["GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ACTIONS", "GITHUB_SHA"] {
            c.env_remove(v);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run deploy-guard")
    }

    pub fn db(&self) -> &str {
        &self.stage.db
    }

    pub fn psql(&self, sql: &str) -> String {
        cluster().psql(&self.stage.db, sql).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The tag the sample app runs.
    pub fn tag(&self) -> String {
        std::fs::read_to_string(self.stage.app_dir().join("state/tag")).unwrap().trim().to_string()
    }

    pub fn postgres(&self) -> deploy_guard::db::Postgres {
        postgres(&self.stage.db)
    }
}

/// A `Postgres` on the test cluster, run locally.
pub fn postgres(db: &str) -> deploy_guard::db::Postgres {
    postgres_on(std::sync::Arc::new(deploy_guard::exec::Local), db)
}

/// A `Postgres` on the test cluster, its tools run by `exec` (locally, or over SSH to this host).
pub fn postgres_on(exec: std::sync::Arc<dyn deploy_guard::exec::Executor>, db: &str) -> deploy_guard::db::Postgres {
    postgres_in(cluster(), exec, db)
}

/// A `Postgres` on cluster `c`, its tools run by `exec`.
pub fn postgres_in(
    c: &Cluster,
    exec: std::sync::Arc<dyn deploy_guard::exec::Executor>,
    db: &str,
) -> deploy_guard::db::Postgres {
    deploy_guard::db::Postgres::new(
        exec,
        Some(c.bin_dir.display().to_string()),
        deploy_guard::db::ConnInfo {
            host: Some("127.0.0.1".into()),
            port: Some(c.port),
            user: Some("postgres".into()),
            dbname: None,
            sslmode: None,
        },
        db.to_string(),
        "postgres".into(),
    )
}

/// Schema fingerprint and content checksums: "the database as it is".
pub type State = (deploy_guard::db::Fingerprint, std::collections::BTreeMap<String, (i64, String)>);

/// Schema fingerprint and content checksums of `db`: "the database as it is".
pub async fn state(db: &str) -> State {
    state_in(cluster(), db).await
}

/// [`state`] of `db` on cluster `c`.
pub async fn state_in(c: &Cluster, db: &str) -> State {
    let pg = postgres_in(c, std::sync::Arc::new(deploy_guard::exec::Local), db);
    (pg.fingerprint(db).await.unwrap(), pg.content_checksums(db).await.unwrap())
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

pub mod compose_hosts;
pub mod docker;
pub mod docker_images;
pub mod http_faults;
pub mod k8s;
pub mod neon;
pub mod netns;
pub mod s3;
pub mod sshd;
pub mod swarm;
pub mod tcp_count;
#[macro_use]
pub mod tool;
pub use sshd::Sshd;

/// Test conveniences on the sandbox sshd.
pub trait SshdExt {
    fn target(&self) -> deploy_guard::config::Target;
    fn credentials(&self) -> deploy_guard::exec::ssh::Credentials;
}

impl SshdExt for Sshd {
    fn target(&self) -> deploy_guard::config::Target {
        deploy_guard::config::Target {
            host: Some("127.0.0.1".into()),
            port: self.port,
            user: Some(self.user.clone()),
            known_hosts: Some(self.known_hosts()),
            ..Default::default()
        }
    }

    fn credentials(&self) -> deploy_guard::exec::ssh::Credentials {
        deploy_guard::exec::ssh::Credentials { key: self.client_key.clone(), passphrase: None }
    }
}

/// A backup's data file (`.sql.zst` or `.sql.gz`, whichever codec took it).
pub fn is_backup_data(name: &str) -> bool {
    deploy_guard::model::Codec::of_key(name).is_some()
}

fn codec_run<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    // On a thread of its own: callable from inside a tokio test.
    std::thread::scope(|s| {
        s.spawn(|| tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)).join().unwrap()
    })
}

/// `plain` compressed with the codec the backup file `path` is named for.
pub fn pack(path: &std::path::Path, plain: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let codec = deploy_guard::model::Codec::of_key(&path.to_string_lossy()).expect("a backup file");
    codec_run(async move {
        let mut out = Vec::new();
        deploy_guard::backup::codec::encoder(codec, plain, codec.default_level()).read_to_end(&mut out).await.unwrap();
        out
    })
}

/// Every file below `dir`, sorted; none when it does not exist.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The journal of the one run whose manifest is in the store directory `store`.
pub fn journal_in(store: &std::path::Path) -> serde_json::Value {
    let manifest = files_under(store)
        .into_iter()
        .find(|f| f.to_string_lossy().ends_with(".manifest.json"))
        .expect("a manifest in the store");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    m["journal"].clone()
}

/// What `journal` says each host of `names` runs now, in that order (`?` while unknown).
pub fn journal_running(journal: &serde_json::Value, names: &[String]) -> Vec<String> {
    let hosts = journal["hosts"].as_array().unwrap_or_else(|| panic!("no hosts in the journal: {journal:#}"));
    names
        .iter()
        .map(|n| {
            let h = hosts.iter().find(|h| h["host"] == n.as_str()).unwrap_or_else(|| panic!("no row for {n}"));
            h["running"].as_str().unwrap_or("?").to_string()
        })
        .collect()
}

/// Every backup object under the store directory `store`.
pub fn backup_files(store: &std::path::Path) -> Vec<std::path::PathBuf> {
    files_under(store).into_iter().filter(|p| is_backup_data(&p.to_string_lossy())).collect()
}

/// The manifest beside the backup file `data`.
pub fn manifest_of(data: &std::path::Path) -> std::path::PathBuf {
    std::path::PathBuf::from(deploy_guard::model::BackupName::from_key(&data.to_string_lossy()).manifest_key())
}

/// Replaces the backup file `path` with `sql`, and rewrites its manifest to match (whoever can
/// write to the store can do both when manifests are unsigned): every byte then checks out, only
/// the content is hostile.
pub fn forge_backup(path: &std::path::Path, sql: &[u8]) {
    use sha2::Digest;
    let packed = pack(path, sql);
    std::fs::write(path, &packed).unwrap();
    let manifest = manifest_of(path);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["sha256"] = hex::encode(sha2::Sha256::digest(&packed)).into();
    m["size"] = (packed.len() as u64).into();
    m["dump_bytes"] = (sql.len() as u64).into();
    m["chunks"] = serde_json::to_value(deploy_guard::backup::Chunks::of(&packed)).unwrap();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// The one file under `dir` whose path holds `part`.
pub fn find_file(dir: &std::path::Path, part: &str) -> std::path::PathBuf {
    let found = files_under(dir).into_iter().find(|p| p.to_string_lossy().contains(part));
    found.unwrap_or_else(|| panic!("no {part} under {}", dir.display()))
}

/// Appends `extra` to the replay file in the file store `store` and writes its hash into the
/// (unsigned) manifest, as whoever can write the store could; the returned closure puts both back.
pub fn forge_replay(store: &std::path::Path, extra: &str) -> impl FnOnce() {
    use sha2::Digest;
    let file = find_file(store, ".lost-writes.");
    let manifest = find_file(store, ".manifest.json");
    let (original, kept) = (std::fs::read(&file).unwrap(), std::fs::read(&manifest).unwrap());
    let forged = [&original[..], extra.as_bytes()].concat();
    std::fs::write(&file, &forged).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    m["lost_writes"]["sha256"] = hex::encode(sha2::Sha256::digest(&forged)).into();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    move || {
        std::fs::write(&manifest, kept).unwrap();
        std::fs::write(&file, original).unwrap();
    }
}

/// The dump in the backup file `path`, decompressed (a directory-format backup's tar).
pub fn unpack_bytes(path: &std::path::Path) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let codec = deploy_guard::model::Codec::of_key(&path.to_string_lossy()).expect("a backup file");
    let packed = std::fs::read(path).unwrap();
    codec_run(async move {
        let mut out = Vec::new();
        deploy_guard::backup::codec::decoder(codec, &packed[..]).read_to_end(&mut out).await.unwrap();
        out
    })
}

/// `restore --sha SHA` of `app` is refused (exit 3): the live database is still `live`, no
/// scratch database is left. Returns what it printed.
pub async fn restore_refused(app: &App, env: &[(&str, &str)], live: &State) -> String {
    let out = app.run_env(&["restore", "--sha", &SHA[..7]], env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("is untouched"), "{err}");
    assert_eq!(&state(app.db()).await, live);
    let scratch = format!("{}__restore_{}", app.db(), &SHA[..7]);
    assert!(!cluster().database_exists(&scratch).unwrap(), "scratch left behind");
    err
}

/// The plain SQL of the backup file `path`.
pub fn unpack(path: &std::path::Path) -> String {
    String::from_utf8(unpack_bytes(path)).expect("plain SQL is text")
}
