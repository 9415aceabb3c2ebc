//! Docker Swarm for tests/it/swarm.rs: this machine's dockerd as a single-node swarm (joined by
//! the first test that needs it, left by the last one when it had to join), and one stack per test
//! (`postgres`, `backend`, `worker`, from tests/compose/swarm/stack.yml) on the compose tests'
//! images (common/docker.rs), driven over a loopback sshd with a pinned host key; removed when
//! the test ends.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::docker::{self, docker, ok, run, DbState};
use super::sshd::Sshd;

/// The tests using the swarm now, and whether they had to make this node a swarm's manager.
static USERS: Mutex<(usize, bool)> = Mutex::new((0, false));

/// Holds the swarm for one test; the last one to drop it leaves the swarm, if a test joined it.
pub struct SwarmGuard;

impl SwarmGuard {
    pub fn join() -> SwarmGuard {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        if users.0 == 0 {
            let state = ok(&mut docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]));
            if state.trim() != "active" {
                ok(&mut docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]));
                users.1 = true;
            }
        }
        users.0 += 1;
        SwarmGuard
    }
}

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.0 -= 1;
        if users.0 == 0 && users.1 {
            let _ = run(&mut docker(&["swarm", "leave", "--force"]));
            users.1 = false;
        }
    }
}

/// One stack on the swarm, at v1 with its database migrated and 300 users, reached over SSH.
pub struct Stack {
    pub tmp: tempfile::TempDir,
    pub name: String,
    pub port: u16,
    pub sshd: Sshd,
    pub config: PathBuf,
    pub repo: String,
    // Dropped last: the stack is removed before the swarm is left.
    _swarm: SwarmGuard,
}

impl Stack {
    pub fn start(test: &str) -> Stack {
        let images = docker::images();
        let swarm = SwarmGuard::join();
        let sshd = Sshd::start().unwrap_or_else(|e| panic!("cannot start the test sshd: {e:#}"));
        let tmp = tempfile::Builder::new().prefix("dg-swarm-").tempdir().unwrap();
        let name = format!("dgs-{}-{}", test.replace('_', "-"), std::process::id());
        let port = docker::free_port();
        let file = tmp.path().join("stack.yml");
        let template = std::fs::read_to_string(docker::root().join("tests/compose/swarm/stack.yml")).unwrap();
        std::fs::write(
            &file,
            template
                .replace("@POSTGRES_IMAGE@", &images.postgres)
                .replace("@BACKEND_REPO@", &images.backend_repo)
                .replace("@PORT@", &port.to_string()),
        )
        .unwrap();
        let config = tmp.path().join("deploy-guard.yml");
        std::fs::write(
            &config,
            format!(
                r#"project: {name}
{target}app:
  runtime: swarm
  service: {name}_backend
  services: [{name}_backend, {name}_worker]
  health: {{ url: "http://127.0.0.1:{port}/health", timeout: 60s, interval: 500ms }}
database:
  service: {name}_postgres
  name: shop
  user: shop
{migrations}backup:
  store: file://{store}
"#,
                target = sshd.target_yaml(),
                store = tmp.path().join("backups").display(),
                migrations = super::docker::MIGRATIONS_YAML,
            ),
        )
        .unwrap();
        let s = Stack { tmp, name, port, sshd, config, repo: images.backend_repo.clone(), _swarm: swarm };
        let f = file.to_string_lossy().to_string();
        ok(&mut docker(&["stack", "deploy", "--resolve-image", "never", "-c", &f, &s.name]));
        s.wait_postgres();
        // The v1 schema, from the v1 image on the stack's network, then the users.
        ok(&mut docker(&[
            "run",
            "--rm",
            "--network",
            &format!("{}_app", s.name),
            "-e",
            "PGHOST=postgres",
            "-e",
            "PGUSER=shop",
            "-e",
            "PGPASSWORD=swarm-test-only",
            "-e",
            "PGDATABASE=shop",
            "--entrypoint",
            "sh",
            &format!("{}:v1", s.repo),
            "-c",
            super::docker::MIGRATE_UP,
        ]));
        s.psql(super::docker::SEED_USERS);
        s.wait_healthy("v1");
        s.wait_services(&[("backend", "v1", 1), ("worker", "v1", 2)]);
        s
    }

    /// The container of the postgres task on this node.
    fn postgres_container(&self) -> Option<String> {
        let label = format!("label=com.docker.swarm.service.name={}_postgres", self.name);
        let ids = run(&mut docker(&["ps", "-q", "--filter", &label])).ok()?;
        ids.split_whitespace().next().map(str::to_string)
    }

    fn wait_postgres(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(id) = self.postgres_container() {
                if run(&mut docker(&[
                    "exec",
                    &id,
                    "pg_isready",
                    "-q",
                    "-h",
                    "/run/postgresql",
                    "-U",
                    "shop",
                    "-d",
                    "shop",
                ]))
                .is_ok()
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("the stack's postgres did not become ready within 90 s:\n{}", self.ps());
    }

    /// SQL as the database's owner, in the postgres task's container.
    pub fn psql(&self, sql: &str) -> String {
        let id = self.postgres_container().expect("the postgres task runs");
        ok(&mut docker(&[&["exec", id.as_str()][..], &docker::psql_args("shop", sql)].concat())).trim_end().to_string()
    }

    pub fn db_state(&self) -> DbState {
        DbState::read(|sql| self.psql(sql))
    }

    /// The stack's tasks, for failure messages.
    pub fn ps(&self) -> String {
        run(&mut docker(&["stack", "ps", "--no-trunc", &self.name])).unwrap_or_else(|e| e)
    }

    pub fn wait_healthy(&self, release: &str) {
        docker::wait_healthy(self.port, release, || self.ps());
    }

    /// `service` (`backend`, `worker`) as its spec says: image and replicas; and how many of its
    /// tasks run that image.
    pub fn service(&self, service: &str) -> (String, u64, usize) {
        let full = format!("{}_{service}", self.name);
        let spec = ok(&mut docker(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}} {{.Spec.Mode.Replicated.Replicas}}",
            &full,
        ]));
        let (image, replicas) = spec.trim().split_once(' ').expect("image and replicas");
        let tasks = ok(&mut docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Image}} {{.CurrentState}}",
            &full,
        ]));
        let running = tasks.lines().filter(|l| l.starts_with(&format!("{image} Running"))).count();
        (image.to_string(), replicas.parse().unwrap(), running)
    }

    /// Polls (60 s at most) until each (service, tag, replicas) runs so: its spec, and every
    /// replica running on that image.
    pub fn wait_services(&self, want: &[(&str, &str, u64)]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let expected =
            |(s, tag, n): &(&str, &str, u64)| (s.to_string(), format!("{}:{tag}", self.repo), *n, *n as usize);
        let now = || {
            want.iter().map(|(s, _, _)| {
                let (image, replicas, running) = self.service(s);
                (s.to_string(), image, replicas, running)
            })
        };
        while Instant::now() < deadline {
            if now().eq(want.iter().map(expected)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let seen: Vec<_> = now().collect();
        panic!("the services are not as wanted {want:?}: {seen:?}\n{}", self.ps());
    }

    pub fn deploy_guard(&self, args: &[&str]) -> Output {
        docker::deploy_guard(&self.sshd.client_key, &self.config, args)
    }

    /// The manifest of the deploy of `sha` (its journal), from the backup store.
    pub fn manifest(&self, sha: &str) -> serde_json::Value {
        let mut stack = vec![self.tmp.path().join("backups")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if p.is_dir() {
                    stack.push(p);
                } else if name.ends_with(".manifest.json") && name.contains(&sha[..7]) {
                    return serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                }
            }
        }
        panic!("no manifest of {sha} in the store");
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = run(&mut docker(&["stack", "rm", &self.name]));
        // One-off services of deploy-guard this stack's deployment left behind (labelled with a
        // digest of its services, as src/app/swarm.rs names them).
        use sha2::Digest;
        let services = format!("{n}_backend {n}_worker", n = self.name);
        let target = hex::encode(&sha2::Sha256::digest(services.as_bytes())[..6]);
        let label = format!("label=deploy-guard.target={target}");
        if let Ok(ids) = run(&mut docker(&["service", "ls", "-q", "--filter", &label])) {
            for id in ids.split_whitespace() {
                let _ = run(&mut docker(&["service", "rm", id]));
            }
        }
        // The stack's network goes once its containers are gone.
        let net = format!("{}_app", self.name);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && run(&mut docker(&["network", "inspect", &net])).is_ok() {
            let _ = run(&mut docker(&["network", "rm", &net]));
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}
