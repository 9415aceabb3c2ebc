//! Docker Engine and Compose v2 for tests/compose_docker.rs: the test images (`docker_images.rs`),
//! and one compose project per test — its own project name, port, env file and backup store,
//! driven over a loopback sshd with a pinned host key — removed with its containers, network and
//! volumes when the test ends.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use super::docker_images::images;
use super::sshd::Sshd;

pub(super) const INSTALL: &str =
    "run scripts/setup (it installs Debian's docker.io and docker-compose, starts dockerd as root \
                       and builds the base image with debootstrap)";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(super) fn inputs() -> PathBuf {
    root().join("tests/compose/docker")
}

pub(super) fn fixture() -> PathBuf {
    root().join("tests/fixtures/typeorm")
}

/// Runs `cmd`; its stdout, or an error with what it printed.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

pub fn ok(cmd: &mut Command) -> String {
    run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

pub fn docker(args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args);
    c
}

/// Docker Engine answers and Compose v2 is installed, else the test fails saying what to do.
pub fn docker_ready() {
    if let Err(e) = run(&mut docker(&["info", "--format", "{{.ServerVersion}}"])) {
        panic!("no Docker daemon answers: {INSTALL}\n{e}");
    }
    if let Err(e) = run(&mut docker(&["compose", "version"])) {
        panic!("`docker compose` (Compose v2) is missing: {INSTALL}\n{e}");
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The env file the deployment starts with: the tag variable among the user's other settings.
pub const ENV_FILE: &str = "# station production settings\nDATABASE_NAME=shop\nDATABASE_USER=shop\n\
DATABASE_PASSWORD=compose-test-only\nAPP_VERSION=v1\nLOG_LEVEL=info\n";

/// How one deployment's compose file differs from the template's.
#[derive(Default)]
pub struct Variant<'a> {
    /// Its containers join this network (another deployment's) as their own: the `postgres` they
    /// reach is that deployment's, and none of its own is started.
    pub network: Option<&'a str>,
    /// Its backend is unhealthy (`BROKEN=1`) when it runs this release: a fault of this host only.
    pub sick_on: Option<&'a str>,
}

/// One compose project (`backend`, `worker`, `postgres`) on this machine's dockerd: its own
/// project name, published port (on 127.0.0.1), compose file and env file. Removed with its
/// containers (one-off ones too), network and volumes on drop.
pub struct Deployment {
    pub name: String,
    pub port: u16,
    pub compose_file: PathBuf,
    pub env_file: PathBuf,
}

/// The TypeORM fixture's migrations, as the app image runs them.
pub const MIGRATE_UP: &str = "./node_modules/.bin/typeorm migration:run -d data-source.js";
pub const MIGRATIONS_YAML: &str =
    "migrations:\n  tool: typeorm\n  run: ./node_modules/.bin/typeorm migration:run -d data-source.js\n  \
     revert: ./node_modules/.bin/typeorm migration:revert -d data-source.js\n  timeout: 3m\n";
/// 300 users with non-ASCII names: the data every restore must bring back.
pub const SEED_USERS: &str =
    "INSERT INTO users (name) SELECT (ARRAY['Zoë','José','Łukasz','李雷','Ana'])[1 + i % 5] || ' ' || i \
     FROM generate_series(1, 300) i;";

const BACKEND: &str = "  backend:\n    image: \"@BACKEND_REPO@:${APP_VERSION}\"\n";

impl Deployment {
    /// Writes the compose file and env file into `dir`; nothing is started.
    pub fn new(dir: &Path, name: String, variant: &Variant) -> Deployment {
        let images = images();
        let port = free_port();
        let compose_file = dir.join("docker-compose.prod.yml");
        let env_file = dir.join(".env.production");
        let mut template = std::fs::read_to_string(inputs().join("docker-compose.yml")).unwrap();
        assert!(template.contains(BACKEND), "the compose template's backend changed: update tests/it/common/docker.rs");
        if let Some(release) = variant.sick_on {
            let command = format!(
                "    command:\n      - sh\n      - -c\n      - '[ \"$$RELEASE\" != \"{release}\" ] || export BROKEN=1; exec node server.js'\n"
            );
            template = template.replace(BACKEND, &format!("{BACKEND}{command}"));
        }
        if let Some(network) = variant.network {
            template.push_str(&format!("networks:\n  default:\n    name: {network}\n    external: true\n"));
        }
        std::fs::write(
            &compose_file,
            template
                .replace("@PROJECT@", &name)
                .replace("@POSTGRES_IMAGE@", &images.postgres)
                .replace("@BACKEND_REPO@", &images.backend_repo)
                .replace("@PORT@", &port.to_string()),
        )
        .unwrap();
        std::fs::write(&env_file, ENV_FILE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o640)).unwrap();
        Deployment { name, port, compose_file, env_file }
    }

    /// Its network, which other deployments' containers may join ([`Variant::network`]).
    pub fn network(&self) -> String {
        format!("{}_default", self.name)
    }

    /// PostgreSQL, TypeORM's first migration run in the v1 image, 300 more users.
    pub fn seed(&self) {
        self.compose_ok(&["up", "-d", "--wait", "postgres"]);
        self.compose_ok(&["run", "--rm", "--no-deps", "-T", "--entrypoint", "sh", "backend", "-c", MIGRATE_UP]);
        self.psql(SEED_USERS);
    }

    /// `docker compose -f FILE --env-file ENV ARGS…` on the host, as a person there runs it.
    pub fn compose(&self, args: &[&str]) -> Command {
        let mut c = docker(&["compose", "-f"]);
        c.arg(&self.compose_file).arg("--env-file").arg(&self.env_file).args(args);
        c
    }

    pub fn compose_ok(&self, args: &[&str]) -> String {
        ok(&mut self.compose(args))
    }

    /// SQL as the database's owner, in the postgres container.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("shop", sql)
    }

    /// SQL as the database's owner in database `db` (a kept or scratch one), in the postgres
    /// container.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        self.compose_ok(&[&["exec", "-T", "postgres"][..], &psql_args(db, sql)].concat()).trim_end().to_string()
    }

    /// The image tag of `service`'s running container, as `docker inspect` says (empty when none runs).
    pub fn tag_of(&self, service: &str) -> String {
        let id = self.compose_ok(&["ps", "-q", service]);
        let Some(id) = id.lines().next() else { return String::new() };
        let image = ok(&mut docker(&["inspect", "--format", "{{.Config.Image}}", id.trim()]));
        image.trim().rsplit_once(':').map(|(_, t)| t.to_string()).unwrap_or_default()
    }

    /// The image tag of the backend container (empty when there is none).
    pub fn running_tag(&self) -> String {
        self.tag_of("backend")
    }

    /// `GET /health`: status code and body (None when nothing answers).
    pub fn health(&self) -> Option<(u16, String)> {
        health(self.port)
    }

    /// Polls the health endpoint (60 s at most) until `release` answers 200.
    pub fn wait_healthy(&self, release: &str) {
        wait_healthy(self.port, release, || self.compose_ok(&["logs", "--no-color", "--tail", "30"]));
    }

    /// The database as it is: tables, indexes, users' columns, TypeORM's migrations, and the
    /// pre-deploy users data (count and checksum of id and name).
    pub fn db_state(&self) -> DbState {
        DbState::read(|sql| self.psql(sql))
    }

    /// The env file's text now.
    pub fn env_text(&self) -> String {
        std::fs::read_to_string(&self.env_file).unwrap()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Containers (one-off ones too), the network and the volumes of this project only.
        let _ = run(&mut self.compose(&["down", "-v", "--remove-orphans", "--timeout", "1"]));
        let label = format!("label=com.docker.compose.project={}", self.name);
        if let Ok(ids) = run(&mut docker(&["ps", "-a", "-q", "--filter", &label])) {
            for id in ids.split_whitespace() {
                let _ = run(&mut docker(&["rm", "-f", "-v", id]));
            }
        }
    }
}

/// A deploy-guard config for the compose deployment whose files are at `compose` and `env`
/// (paths on the target), reached by `target` (a `target:` section), its health at `health_url`.
pub fn config_yaml(project: &str, target: &str, compose: &Path, env: &Path, health_url: &str, store: &Path) -> String {
    format!(
        r#"project: {project}
{target}app:
  runtime: compose
  compose_file: {compose}
  service: backend
  env_file: {env}
  tag_variable: APP_VERSION
  health: {{ url: "{health_url}", timeout: 20s, interval: 500ms }}
database:
  service: postgres
  name: ${{DATABASE_NAME}}
  user: ${{DATABASE_USER}}
{migrations}backup:
  store: file://{store}
"#,
        compose = compose.display(),
        env = env.display(),
        store = store.display(),
        migrations = MIGRATIONS_YAML,
    )
}

/// One compose deployment on this machine, reached over SSH (a loopback sshd).
pub struct Project {
    /// First: dropped (`compose down`) while its files in `tmp` are still there.
    pub deployment: Deployment,
    pub tmp: tempfile::TempDir,
    pub sshd: Sshd,
    pub config: PathBuf,
}

impl std::ops::Deref for Project {
    type Target = Deployment;
    fn deref(&self) -> &Deployment {
        &self.deployment
    }
}

impl Project {
    /// Starts the deployment at v1: PostgreSQL, TypeORM's first migration run in the v1 image,
    /// 300 more users, backend and worker running and healthy.
    pub fn start(test: &str) -> Project {
        let sshd = Sshd::start().unwrap_or_else(|e| panic!("cannot start the test sshd: {e:#}"));
        let tmp = tempfile::Builder::new().prefix("dg-compose-").tempdir().unwrap();
        let name = format!("dg-{}-{}", test.replace('_', "-"), std::process::id());
        let deployment = Deployment::new(tmp.path(), name, &Variant::default());
        let config = tmp.path().join("deploy-guard.yml");
        let health = format!("http://127.0.0.1:{}/health", deployment.port);
        let text = config_yaml(
            &deployment.name,
            &sshd.target_yaml(),
            &deployment.compose_file,
            &deployment.env_file,
            &health,
            &tmp.path().join("backups"),
        );
        std::fs::write(&config, text).unwrap();
        // From here on, dropping the project removes whatever was started.
        let p = Project { deployment, tmp, sshd, config };
        p.seed();
        p.compose_ok(&["up", "-d"]);
        p.wait_healthy("v1");
        p
    }

    /// Runs the real deploy-guard binary with this project's config and SSH key.
    pub fn deploy_guard(&self, args: &[&str]) -> Output {
        self.deploy_guard_with(&self.config, args)
    }

    pub fn deploy_guard_with(&self, config: &Path, args: &[&str]) -> Output {
        deploy_guard(&self.sshd.client_key, config, args)
    }

    /// Files in the backup store.
    pub fn stored_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.tmp.path().join("backups")];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path().display().to_string());
                }
            }
        }
        out
    }
}

/// `GET /health` on 127.0.0.1:`port`: status code and body (None when nothing answers).
pub fn health(port: u16) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// Polls the health endpoint on `port` (60 s at most) until `release` answers 200; else fails
/// with `logs()`.
pub fn wait_healthy(port: u16, release: &str, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let want = format!("\"release\":\"{release}\"");
    let mut last = None;
    while Instant::now() < deadline {
        last = health(port);
        if matches!(&last, Some((200, body)) if body.contains(&want)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{release} did not answer /health within 60 s (last answer: {last:?})\n{}", logs());
}

/// Runs the real deploy-guard binary with `config`, logging in to the target with `client_key`.
pub fn deploy_guard(client_key: &str, config: &Path, args: &[&str]) -> Output {
    // `DG_TEST_BIN` names another build (as in tests/common/mod.rs).
    let bin = std::env::var_os("DG_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_deploy-guard").into());
    let mut c = Command::new(bin);
    c.args(args).arg("--config").arg(config).env("DEPLOY_GUARD_SSH_KEY", client_key);
    for v in ["GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ACTIONS", "GITHUB_SHA", "RUNNER_ENVIRONMENT"] {
        c.env_remove(v);
    }
    c.stdin(Stdio::null()).output().expect("run deploy-guard")
}

impl DbState {
    /// The database as `psql` (SQL → its one-line answer) reads it.
    pub fn read(psql: impl Fn(&str) -> String) -> DbState {
        DbState {
            tables: psql(
                "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
            ),
            indexes: psql(
                "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'",
            ),
            user_columns: psql(
                "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = 'users'",
            ),
            migrations: psql("SELECT string_agg(name, ',' ORDER BY id) FROM migrations"),
            users: psql("SELECT count(*) || ' ' || md5(string_agg(id || ':' || name, ',' ORDER BY id)) FROM users"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbState {
    pub tables: String,
    pub indexes: String,
    pub user_columns: String,
    pub migrations: String,
    pub users: String,
}

/// `psql` as the database's owner running `sql` on `db`, tuples only: the arguments after the
/// container (compose's `exec -T postgres`, a swarm task's `exec ID`).
pub fn psql_args<'a>(db: &'a str, sql: &'a str) -> [&'a str; 13] {
    ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "shop", "-d", db, "-c", sql]
}
