//! The compose app on three hosts (`target.hosts`, `app.runtime: compose`): each host an sshd in a
//! network namespace of its own (netns.rs), all sharing this machine's one dockerd (its unix
//! socket is reached from every namespace). So each host's deployment is a compose project of its
//! own: its own project name, published port, compose file and env file, kept in the host's own
//! directory, which its sshd's sessions see at the one path the config names. The primary's
//! project holds the database; the others' containers join the primary's network, so their
//! `postgres` is the primary's (one database, as on real hosts behind one database server). Each
//! host's published port is reached on the host's own address, port 8080, where the health URL
//! `http://{host}:8080/health` asks for it. Everything is removed on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Output};

use super::docker::{self, Deployment, Variant};
use super::netns::Hosts;

/// The port each host's app answers on, on its own address.
pub const APP_PORT: u16 = 8080;

pub struct ComposeHosts {
    /// Each host's deployment, the primary first; removed last-first (the others leave the
    /// primary's network before it is removed).
    pub deployments: Vec<Deployment>,
    pub hosts: Hosts,
    pub config: PathBuf,
    pub tmp: tempfile::TempDir,
}

impl ComposeHosts {
    /// Three hosts at v1, every backend and worker running and healthy, the database seeded on
    /// the primary; `app.services: [backend, worker]`. Host `i` of `sick` is unhealthy when it
    /// runs release `tag` (and only then).
    pub fn start(test: &str, sick: Option<(usize, &str)>) -> ComposeHosts {
        docker::images();
        let tmp = tempfile::Builder::new().prefix("dg-compose-hosts-").tempdir().unwrap();
        // The one path every host's own files are seen at.
        let own = tmp.path().join("deploy");
        std::fs::create_dir(&own).unwrap();
        let mut hosts = Hosts::start(3, &own, None).unwrap_or_else(|e| panic!("{e:#}"));
        let mut deployments: Vec<Deployment> = Vec::new();
        for (i, host) in hosts.hosts.iter_mut().enumerate() {
            // dg-TEST-…-PID, as scripts/docker-setup finds a dead run's leftovers.
            let name = format!("dg-{}-h{i}-{}", test.replace('_', "-"), std::process::id());
            let network = deployments.first().map(Deployment::network);
            let variant =
                Variant { network: network.as_deref(), sick_on: sick.filter(|(h, _)| *h == i).map(|(_, tag)| tag) };
            let d = Deployment::new(&host.state, name, &variant);
            let addr = host.addr.clone();
            host.forward(&addr, APP_PORT, d.port).unwrap_or_else(|e| panic!("{e:#}"));
            deployments.push(d);
        }
        let config = tmp.path().join("deploy-guard.yml");
        let first = &deployments[0];
        let text = docker::config_yaml(
            &format!("dg-{}", test.replace('_', "-")),
            &hosts.target_yaml(),
            &own.join(first.compose_file.file_name().unwrap()),
            &own.join(first.env_file.file_name().unwrap()),
            &format!("http://{{host}}:{APP_PORT}/health"),
            &tmp.path().join("backups"),
        )
        .replace("  service: backend\n", "  service: backend\n  services: [backend, worker]\n");
        std::fs::write(&config, text).unwrap();
        // From here on, dropping removes whatever was started.
        let f = ComposeHosts { deployments, hosts, config, tmp };
        let primary = &f.deployments[0];
        primary.seed();
        primary.compose_ok(&["up", "-d"]);
        for d in &f.deployments[1..] {
            d.compose_ok(&["up", "-d", "--no-deps", "backend", "worker"]);
        }
        for d in &f.deployments {
            d.wait_healthy("v1");
        }
        f
    }

    /// Rewrites the config with `f`.
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, f(text)).unwrap();
    }

    /// The primary's deployment: the database's.
    pub fn primary(&self) -> &Deployment {
        &self.deployments[0]
    }

    /// Runs the real deploy-guard binary with this config and the hosts' client key.
    pub fn deploy_guard(&self, args: &[&str]) -> Output {
        docker::deploy_guard(&self.hosts.client_key, &self.config, args)
    }

    /// The hosts' names, as the journal and the report give them.
    pub fn names(&self) -> Vec<String> {
        self.hosts.hosts.iter().map(|h| h.addr.clone()).collect()
    }

    /// The image tag of `service`'s running container on each host, as `docker inspect` says.
    pub fn tags(&self, service: &str) -> Vec<String> {
        self.deployments.iter().map(|d| d.tag_of(service)).collect()
    }

    /// The tag each host's env file names (what a plain `docker compose up -d` there starts).
    pub fn env_tags(&self) -> Vec<String> {
        self.deployments
            .iter()
            .map(|d| {
                let text = d.env_text();
                let line = text.lines().find(|l| l.starts_with("APP_VERSION="));
                line.map(|l| l["APP_VERSION=".len()..].to_string()).unwrap_or_default()
            })
            .collect()
    }

    /// Starts recording what dockerd does to each host's containers from now on.
    pub fn watch(&self) -> Watch {
        let since = {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
            format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
        };
        let format = "{{.Action}} {{index .Actor.Attributes \"com.docker.compose.oneoff\"}} \
                      {{index .Actor.Attributes \"com.docker.compose.service\"}} {{index .Actor.Attributes \"image\"}}";
        let logs = self
            .deployments
            .iter()
            .map(|d| {
                let file = self.tmp.path().join(format!("events-{}", d.name));
                let label = format!("label=com.docker.compose.project={}", d.name);
                let child = docker::docker(&["events", "--since", &since, "--filter", "type=container"])
                    .args(["--filter", "event=create", "--filter", "event=start", "--filter", "event=stop"])
                    .args(["--filter", &label, "--format", format])
                    .stdout(std::fs::File::create(&file).unwrap())
                    .spawn()
                    .expect("docker events");
                (child, file)
            })
            .collect();
        Watch { logs }
    }

    /// The journal of the one deploy in the store.
    pub fn journal(&self) -> serde_json::Value {
        super::journal_in(&self.tmp.path().join("backups"))
    }

    /// What the journal says each host runs, in the fleet's order.
    pub fn journal_tags(&self) -> Vec<String> {
        super::journal_running(&self.journal(), &self.names())
    }
}

/// `docker events` of each host's containers, as they happen: dockerd keeps too few past events
/// (256, of every container on the machine) to be asked afterwards.
pub struct Watch {
    logs: Vec<(Child, PathBuf)>,
}

impl Watch {
    /// `ACTION SERVICE TAG` (`create backend v2`) of each `create`, `start` and `stop` of each
    /// host's app containers (not the tool's one-off ones), in order.
    pub fn seen(mut self) -> Vec<Vec<String>> {
        // Events reach the stream within milliseconds: give the last ones time to be written.
        std::thread::sleep(std::time::Duration::from_secs(1));
        self.stop();
        let tag = |image: &str| image.rsplit_once(':').map(|(_, t)| t.to_string()).unwrap_or_default();
        let read = |file: &PathBuf| -> Vec<String> {
            std::fs::read_to_string(file)
                .unwrap()
                .lines()
                .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                    [action, "False", service, image] => Some(format!("{action} {service} {}", tag(image))),
                    _ => None,
                })
                .collect()
        };
        self.logs.iter().map(|(_, file)| read(file)).collect()
    }

    fn stop(&mut self) {
        for (child, _) in &mut self.logs {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Drop for ComposeHosts {
    fn drop(&mut self) {
        while let Some(d) = self.deployments.pop() {
            drop(d);
        }
    }
}
