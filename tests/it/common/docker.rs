//! Docker Engine and Compose v2 for tests/compose_docker.rs: the test images, built locally FROM
//! the base image scripts/docker-setup makes (no registry is reachable) and named by a content
//! hash of their inputs so later runs reuse them; and one compose project per test — its own
//! project name, port, env file and backup store, driven over a loopback sshd with a pinned host
//! key — removed with its containers, network and volumes when the test ends.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::sshd::Sshd;
use sha2::{Digest, Sha256};

const INSTALL: &str = "run scripts/setup (it installs Debian's docker.io and docker-compose, starts dockerd as root \
                       and builds the base image with debootstrap)";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn inputs() -> PathBuf {
    root().join("tests/compose/docker")
}

fn fixture() -> PathBuf {
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

/// Adds every file under `paths` (sorted, with its path relative to the repository) to `h`.
fn hash_tree(h: &mut Sha256, paths: &[PathBuf]) {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else {
            files.push(p);
        }
    }
    files.sort();
    for f in files {
        h.update(f.strip_prefix(root()).unwrap_or(&f).to_string_lossy().as_bytes());
        h.update([0]);
        h.update(std::fs::read(&f).unwrap());
        h.update([0]);
    }
}

/// The base image's tag: scripts/docker-setup names it by the hash of its package list.
fn base_image() -> String {
    let text = std::fs::read(inputs().join("base.packages")).unwrap();
    format!("deploy-guard-base:{}", &hex::encode(Sha256::digest(&text))[..12])
}

/// A backend release: the fixture's CreateUsers, then its AddNickname as is or with `down()`
/// broken, or another migration; its entrypoint; whether its health endpoint fails.
struct Release {
    name: &'static str,
    second: Second,
    entrypoint: &'static str,
    broken: bool,
}

enum Second {
    None,
    AddNickname,
    /// AddNickname whose `down()` drops a misspelt column: it errors.
    AddNicknameBadDown,
    /// AddNickname whose `down()` only drops the index: it "succeeds" and leaves the column.
    AddNicknameLyingDown,
    /// A file of tests/compose/docker/migrations/.
    File(&'static str),
}

const NORMAL: &str = "entrypoint.sh";

const RELEASES: &[Release] = &[
    Release { name: "v1", second: Second::None, entrypoint: NORMAL, broken: false },
    Release { name: "v2", second: Second::AddNickname, entrypoint: NORMAL, broken: false },
    Release {
        name: "v2-notnull",
        second: Second::File("1700000000001-AddLoyaltyTier.js"),
        entrypoint: NORMAL,
        broken: false,
    },
    Release { name: "v2-crash", second: Second::AddNickname, entrypoint: "entrypoint-crash.sh", broken: false },
    Release { name: "v2-bad-down", second: Second::AddNicknameBadDown, entrypoint: NORMAL, broken: true },
    Release { name: "v2-lying-down", second: Second::AddNicknameLyingDown, entrypoint: NORMAL, broken: true },
    Release {
        name: "v2-drop-name",
        second: Second::File("1700000000001-DropName.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    Release {
        name: "v2-slow",
        second: Second::File("1700000000001-SlowLateChange.js"),
        entrypoint: NORMAL,
        broken: false,
    },
    Release {
        name: "v2-slow-down",
        second: Second::File("1700000000001-SlowDown.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    Release {
        name: "v2-rename-name",
        second: Second::File("1700000000001-RenameName.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    Release {
        name: "v2-rewrite-name",
        second: Second::File("1700000000001-UpperNames.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    // Its server writes backend/writes/v2-app-writes.sql when it starts, after the backup.
    Release {
        name: "v2-app-writes",
        second: Second::File("1700000000001-DropOrderNote.js"),
        entrypoint: NORMAL,
        broken: true,
    },
    // Its server writes a nickname into the column its migration adds (backend/writes/).
    Release { name: "v2-additive", second: Second::AddNickname, entrypoint: NORMAL, broken: true },
    Release {
        name: "v2-unique-first-name",
        second: Second::File("1700000000001-OneUserPerFirstName.js"),
        entrypoint: NORMAL,
        broken: false,
    },
    Release {
        name: "v2-half-applied",
        second: Second::File("1700000000001-AddFirstNameConcurrently.js"),
        entrypoint: NORMAL,
        broken: false,
    },
];

const ADD_NICKNAME: &str = "migrations/1700000000001-AddNickname.js";
const DROP_COLUMN: &str = "    await queryRunner.query(`ALTER TABLE \"users\" DROP COLUMN \"nickname\"`);\n";

/// The release's second migration: file name and text.
fn second_migration(s: &Second) -> Option<(String, String)> {
    let add_nickname = || std::fs::read_to_string(fixture().join(ADD_NICKNAME)).unwrap();
    let edited = |to: &str| {
        let text = add_nickname();
        assert!(text.contains(DROP_COLUMN), "the fixture's AddNickname changed: update tests/common/docker.rs");
        text.replace(DROP_COLUMN, to)
    };
    let name = || ADD_NICKNAME.rsplit('/').next().unwrap().to_string();
    match s {
        Second::None => None,
        Second::AddNickname => Some((name(), add_nickname())),
        Second::AddNicknameBadDown => Some((name(), edited(&DROP_COLUMN.replace("\"nickname\"", "\"nick_name\"")))),
        Second::AddNicknameLyingDown => Some((name(), edited(""))),
        Second::File(f) => Some((f.to_string(), std::fs::read_to_string(inputs().join("migrations").join(f)).unwrap())),
    }
}

/// The images one run of the tests uses.
pub struct Images {
    /// `dg-backend-HASH`: tagged with each release's name (`:v1`, `:v2-crash`, …).
    pub backend_repo: String,
    pub postgres: String,
}

fn copy(from: &Path, to: &Path) {
    ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Builds (once per content hash) and returns the test images; prunes those of older hashes.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        docker_ready();
        let base = base_image();
        if run(&mut docker(&["image", "inspect", &base])).is_err() {
            panic!("the base image {base} is missing: {INSTALL}");
        }
        let fixture = fixture();
        assert!(
            fixture.join("node_modules/.bin/typeorm").exists(),
            "TypeORM is not installed for the fixture: run `npm ci --prefix tests/fixtures/typeorm` (scripts/test does)"
        );
        let mut h = Sha256::new();
        h.update(base.as_bytes());
        hash_tree(
            &mut h,
            &[
                inputs().join("backend"),
                inputs().join("postgres"),
                inputs().join("migrations"),
                fixture.join("package-lock.json"),
                fixture.join("data-source.js"),
                fixture.join("migrations"),
            ],
        );
        let hash = hex::encode(h.finalize())[..12].to_string();
        let images =
            Images { backend_repo: format!("dg-backend-{hash}"), postgres: format!("dg-postgres-{hash}:latest") };
        let have = |image: &str| run(&mut docker(&["image", "inspect", image])).is_ok();
        let all_there =
            have(&images.postgres) && RELEASES.iter().all(|r| have(&format!("{}:{}", images.backend_repo, r.name)));
        if !all_there {
            let started = Instant::now();
            eprintln!("building the compose test images {} and {} (about 15 s)", images.backend_repo, images.postgres);
            build(&images, &base);
            eprintln!("built the compose test images in {:.1} s", started.elapsed().as_secs_f64());
        }
        prune(&hash);
        images
    })
}

fn docker_build(context: &Path, dockerfile: &str, tag: &str, args: &[(&str, &str)]) {
    let mut c = docker(&["build", "-q", "-f"]);
    c.arg(context.join(dockerfile)).args(["-t", tag]);
    for (k, v) in args {
        c.arg("--build-arg").arg(format!("{k}={v}"));
    }
    c.arg(context);
    ok(&mut c);
}

fn build(images: &Images, base: &str) {
    let tmp = tempfile::Builder::new().prefix("dg-images-").tempdir().unwrap();
    let backend = inputs().join("backend");
    docker_build(&inputs().join("postgres"), "Dockerfile", &images.postgres, &[("BASE", base)]);

    // The app: the fixture's package with its node_modules, the server (with what releases write
    // when they start), the worker.
    let app = tmp.path().join("app");
    std::fs::create_dir(&app).unwrap();
    for f in ["package.json", "package-lock.json", "data-source.js", "node_modules"] {
        copy(&fixture().join(f), &app.join(f));
    }
    for f in ["Dockerfile", "server.js", "worker.js", "entrypoint.sh", "writes"] {
        copy(&backend.join(f), &app.join(f));
    }
    let app_image = format!("{}:app", images.backend_repo);
    docker_build(&app, "Dockerfile", &app_image, &[("BASE", base)]);

    for r in RELEASES {
        let ctx = tmp.path().join(r.name);
        let migrations = ctx.join("migrations");
        std::fs::create_dir_all(&migrations).unwrap();
        copy(&fixture().join("migrations/1700000000000-CreateUsers.js"), &migrations);
        if let Some((name, text)) = second_migration(&r.second) {
            std::fs::write(migrations.join(name), text).unwrap();
        }
        copy(&backend.join(r.entrypoint), &ctx.join("entrypoint.sh"));
        copy(&backend.join("Dockerfile.release"), &ctx.join("Dockerfile.release"));
        let tag = format!("{}:{}", images.backend_repo, r.name);
        docker_build(
            &ctx,
            "Dockerfile.release",
            &tag,
            &[("APP", &app_image), ("RELEASE", r.name), ("BROKEN", if r.broken { "1" } else { "0" })],
        );
    }
}

/// Removes the test images of other content hashes (an image a container still uses stays).
fn prune(hash: &str) {
    let listed = ok(&mut docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]));
    for image in listed.lines() {
        let repo = image.split(':').next().unwrap_or("");
        let old = ["dg-backend-", "dg-postgres-"]
            .iter()
            .any(|p| repo.strip_prefix(p).is_some_and(|h| h.len() == 12 && h != hash));
        if old {
            let _ = run(&mut docker(&["image", "rm", image]));
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The env file the deployment starts with: the tag variable among the user's other settings.
pub const ENV_FILE: &str = "# station production settings\nDATABASE_NAME=shop\nDATABASE_USER=shop\n\
DATABASE_PASSWORD=compose-test-only\nAPP_VERSION=v1\nLOG_LEVEL=info\n";

/// One compose deployment (`backend`, `worker`, `postgres`) on this machine, reached over SSH.
pub struct Project {
    pub tmp: tempfile::TempDir,
    pub name: String,
    pub port: u16,
    pub sshd: Sshd,
    pub compose_file: PathBuf,
    pub env_file: PathBuf,
    pub config: PathBuf,
}

impl Project {
    /// Starts the deployment at v1: PostgreSQL, TypeORM's first migration run in the v1 image,
    /// 300 more users, backend and worker running and healthy.
    pub fn start(test: &str) -> Project {
        let images = images();
        let sshd = Sshd::start().unwrap_or_else(|e| panic!("cannot start the test sshd: {e:#}"));
        let tmp = tempfile::Builder::new().prefix("dg-compose-").tempdir().unwrap();
        let name = format!("dg-{}-{}", test.replace('_', "-"), std::process::id());
        let port = free_port();
        let compose_file = tmp.path().join("docker-compose.prod.yml");
        let env_file = tmp.path().join(".env.production");
        let template = std::fs::read_to_string(inputs().join("docker-compose.yml")).unwrap();
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
        let config = tmp.path().join("deploy-guard.yml");
        std::fs::write(
            &config,
            format!(
                r#"project: {name}
{target}app:
  runtime: compose
  compose_file: {compose}
  service: backend
  env_file: {env}
  tag_variable: APP_VERSION
  health: {{ url: "http://127.0.0.1:{port}/health", timeout: 20s, interval: 500ms }}
database:
  service: postgres
  name: ${{DATABASE_NAME}}
  user: ${{DATABASE_USER}}
migrations:
  tool: typeorm
  run: ./node_modules/.bin/typeorm migration:run -d data-source.js
  revert: ./node_modules/.bin/typeorm migration:revert -d data-source.js
  timeout: 3m
backup:
  store: file://{store}
"#,
                target = sshd.target_yaml(),
                compose = compose_file.display(),
                env = env_file.display(),
                store = tmp.path().join("backups").display(),
            ),
        )
        .unwrap();
        // From here on, dropping the project removes whatever was started.
        let p = Project { tmp, name, port, sshd, compose_file, env_file, config };
        p.compose_ok(&["up", "-d", "--wait", "postgres"]);
        p.compose_ok(&[
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--entrypoint",
            "sh",
            "backend",
            "-c",
            "./node_modules/.bin/typeorm migration:run -d data-source.js",
        ]);
        p.psql(
            "INSERT INTO users (name) SELECT (ARRAY['Zoë','José','Łukasz','李雷','Ana'])[1 + i % 5] || ' ' || i \
             FROM generate_series(1, 300) i;",
        );
        p.compose_ok(&["up", "-d"]);
        p.wait_healthy("v1");
        p
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

    /// The image tag of the backend container (empty when there is none).
    pub fn running_tag(&self) -> String {
        let id = self.compose_ok(&["ps", "-q", "backend"]);
        let Some(id) = id.lines().next() else { return String::new() };
        let image = ok(&mut docker(&["inspect", "--format", "{{.Config.Image}}", id.trim()]));
        image.trim().rsplit_once(':').map(|(_, t)| t.to_string()).unwrap_or_default()
    }

    /// `GET /health`: status code and body (None when nothing answers).
    pub fn health(&self) -> Option<(u16, String)> {
        health(self.port)
    }

    /// Polls the health endpoint (60 s at most) until `release` answers 200.
    pub fn wait_healthy(&self, release: &str) {
        wait_healthy(self.port, release, || self.compose_ok(&["logs", "--no-color", "--tail", "30"]));
    }

    /// Runs the real deploy-guard binary with this project's config and SSH key.
    pub fn deploy_guard(&self, args: &[&str]) -> Output {
        self.deploy_guard_with(&self.config, args)
    }

    pub fn deploy_guard_with(&self, config: &Path, args: &[&str]) -> Output {
        deploy_guard(&self.sshd, config, args)
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

/// Runs the real deploy-guard binary with `config`, reaching the target through `sshd`.
pub fn deploy_guard(sshd: &Sshd, config: &Path, args: &[&str]) -> Output {
    // `DG_TEST_BIN` names another build (as in tests/common/mod.rs).
    let bin = std::env::var_os("DG_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_deploy-guard").into());
    let mut c = Command::new(bin);
    c.args(args).arg("--config").arg(config).env("DEPLOY_GUARD_SSH_KEY", &sshd.client_key);
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

impl Drop for Project {
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

/// `psql` as the database's owner running `sql` on `db`, tuples only: the arguments after the
/// container (compose's `exec -T postgres`, a swarm task's `exec ID`).
pub fn psql_args<'a>(db: &'a str, sql: &'a str) -> [&'a str; 13] {
    ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "shop", "-d", db, "-c", sql]
}
