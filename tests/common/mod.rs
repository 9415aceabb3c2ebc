//! Shared test harness: one throwaway PostgreSQL cluster per test binary (the machine's own
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

/// The deploy-guard binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_deploy-guard"))
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
        Self::build(prefix, releases, false)
    }

    pub fn build(prefix: &str, releases: &[&str], crash_pg_dump: bool) -> App {
        let tmp = tempdir();
        let db = fresh_db(prefix);
        let stage = deploy_guard::simulate::Stage::new(cluster(), tmp.path(), &db, releases, crash_pg_dump)
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
    let c = cluster();
    deploy_guard::db::Postgres::new(
        std::sync::Arc::new(deploy_guard::exec::Local),
        Some(c.bin_dir.display().to_string()),
        deploy_guard::db::ConnInfo {
            host: Some("127.0.0.1".into()),
            port: Some(c.port),
            user: Some("postgres".into()),
            dbname: None,
        },
        db.to_string(),
        "postgres".into(),
    )
}

/// Schema fingerprint and content checksums of `db`: "the database as it is".
pub async fn state(db: &str) -> (deploy_guard::db::Fingerprint, std::collections::BTreeMap<String, (i64, String)>) {
    let pg = postgres(db);
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

/// A real OpenSSH server on 127.0.0.1 and a free port, with its own host key and one client
/// key; killed (with its session processes) on drop.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    /// Private key text of the authorized client key.
    pub client_key: String,
    child: std::process::Child,
}

fn keygen(path: &std::path::Path, kind: &str) {
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (apt-get install openssh-client)")
        .success();
    assert!(ok, "ssh-keygen failed");
}

impl Sshd {
    pub fn start() -> Sshd {
        assert!(
            std::path::Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing: apt-get install openssh-server (scripts/setup does)"
        );
        let dir = tempdir();
        let p = |n: &str| dir.path().join(n);
        keygen(&p("host_ed25519"), "ed25519");
        keygen(&p("client"), "ed25519");
        std::fs::copy(p("client.pub"), p("authorized_keys")).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nMaxSessions 64\nMaxStartups 64\nLogLevel ERROR\n",
            p("host_ed25519").display(),
            p("sshd.pid").display(),
            p("authorized_keys").display()
        );
        std::fs::write(p("sshd_config"), config).unwrap();
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(p("sshd_config"))
            .stderr(std::fs::File::create(p("sshd.log")).unwrap())
            .process_group(0)
            .spawn()
            .expect("start sshd");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "sshd did not listen: {}",
                std::fs::read_to_string(p("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let user = String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let client_key = std::fs::read_to_string(p("client")).unwrap();
        Sshd { dir, port, user, client_key, child }
    }

    /// The known_hosts line for this server.
    pub fn known_hosts(&self) -> String {
        let pubkey = std::fs::read_to_string(self.dir.path().join("host_ed25519.pub")).unwrap();
        let mut parts = pubkey.split_whitespace();
        format!("[127.0.0.1]:{} {} {}", self.port, parts.next().unwrap(), parts.next().unwrap())
    }

    pub fn target(&self) -> deploy_guard::config::Target {
        deploy_guard::config::Target {
            host: Some("127.0.0.1".into()),
            port: self.port,
            user: Some(self.user.clone()),
            known_hosts: Some(self.known_hosts()),
            ..Default::default()
        }
    }

    pub fn credentials(&self) -> deploy_guard::exec::ssh::Credentials {
        deploy_guard::exec::ssh::Credentials { key: self.client_key.clone(), passphrase: None }
    }

    /// The `target:` section of a deploy-guard.yml for this server.
    pub fn target_yaml(&self) -> String {
        format!(
            "target:\n  host: 127.0.0.1\n  port: {}\n  user: {}\n  known_hosts: \"{}\"\n",
            self.port,
            self.user,
            self.known_hosts()
        )
    }

    /// Kills the server and every session it serves, as a crash or a dropped link would.
    /// (Session processes call setsid, so the process group is not enough: walk /proc.)
    pub fn kill(&mut self) {
        let mut pids = vec![self.child.id() as i32];
        let mut i = 0;
        while i < pids.len() {
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
                let ppid = stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<i32>().ok());
                if ppid == Some(pids[i]) && !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
            i += 1;
        }
        for pid in pids {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}
