//! `app.runtime: swarm`: the services of a Docker Swarm stack (`docker stack deploy` of the same
//! compose file), driven with `docker service` on a manager node (over SSH, or this machine).
//!
//! A deploy updates each service's image in turn (`app.service` first) with Swarm's own rollback
//! off (`--update-failure-action pause`: deploy-guard decides), and waits for each update to
//! converge: the update completed, every replica running (healthy, where the image has a
//! healthcheck) on the new image. The writers are stopped by scaling them to 0, their replica
//! counts recorded first in the manifest; the redeploy puts back each service's recorded image
//! and replicas. The migration tool runs as a one-off job of the new image on the swarm, with the
//! app service's environment and networks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use tokio::sync::OnceCell;

mod state;

pub use state::image_tag;
use state::{parse, Service, Task};

use super::{Action, Runtime, ServiceState, TagSource};
use crate::exec::{self, quote, Cmd, Executor};

pub struct Swarm {
    exec: Arc<dyn Executor>,
    /// The service whose image runs the migrations and whose tag is "the running tag".
    service: String,
    /// Every service updated on a tag and scaled to 0 before a restore, `service` first.
    services: Vec<String>,
    pause_writes: Option<String>,
    resume_writes: Option<String>,
    workdir: Option<String>,
    /// How long one `docker` command may take.
    timeout: Duration,
    /// How long an update may take to converge, and how often it is looked at (`app.health`).
    converge: Duration,
    interval: Duration,
    validated: OnceCell<()>,
}

/// The label a tool's one-off service carries, its value the name the tool runs as.
const TOOL_LABEL: &str = "deploy-guard.run";
/// The label naming the deployment (its services) that started it.
const TARGET_LABEL: &str = "deploy-guard.target";

/// The command prefix that runs PostgreSQL's client tools inside the task of the swarm service
/// `service` running on this node (`database.service`: the database's task must run on the
/// manager deploy-guard reaches).
pub fn db_exec_prefix(service: &str) -> String {
    format!(
        "docker exec -i \"$(docker ps -q --filter {} | head -n 1)\"",
        quote(&format!("label=com.docker.swarm.service.name={service}"))
    )
}

impl Swarm {
    pub fn from_config(exec: Arc<dyn Executor>, app: &crate::config::App, timeout: Duration) -> Result<Swarm> {
        let service = app.service.clone().context("app.service: required with app.runtime: swarm")?;
        let mut services = vec![service.clone()];
        services.extend(app.services.iter().filter(|s| **s != service).cloned());
        Ok(Swarm {
            exec,
            service,
            services,
            pause_writes: app.commands.pause_writes.clone(),
            resume_writes: app.commands.resume_writes.clone(),
            workdir: app.workdir.clone(),
            timeout,
            converge: app.health.timeout,
            interval: app.health.interval,
            validated: OnceCell::new(),
        })
    }

    fn command(&self, label: &str, script: String) -> Cmd {
        Cmd::new(label, script).timeout(self.timeout)
    }

    fn all_services(&self) -> String {
        self.services.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" ")
    }

    fn user_command(&self, text: &str) -> String {
        match &self.workdir {
            Some(dir) => format!("cd {} && {text}", quote(dir)),
            None => text.to_string(),
        }
    }

    /// The repository of `service`'s image as its spec names it now, tag and digest set aside.
    fn repo_expr(service: &str) -> String {
        format!(
            "\"$(docker service inspect --format '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' {} | sed -E 's/@.*//; s/:[^:/]*$//')\"",
            quote(service)
        )
    }

    /// `docker service update` of one service's image (and replicas), Swarm's rollback off.
    fn update_cmd(&self, service: &str, image: &str, replicas: Option<u64>) -> Cmd {
        let replicas = replicas.map(|r| format!(" --replicas {r}")).unwrap_or_default();
        self.command(
            "swarm service update",
            format!(
                "docker service update --detach --quiet --with-registry-auth --update-failure-action pause{replicas} \
                 --image {image} {}",
                quote(service)
            ),
        )
    }

    fn deploy_one(&self, service: &str, tag: &str) -> Cmd {
        self.update_cmd(service, &format!("{}:{}", Self::repo_expr(service), quote(tag)), None)
    }

    fn inspect_cmd(&self) -> Cmd {
        self.command("swarm services", format!("docker service inspect {}", self.all_services()))
    }

    /// Every task of the services (history too), inspected: `[]` when there is none.
    fn tasks_cmd(&self) -> Cmd {
        self.command(
            "swarm tasks",
            format!(
                "ids=$(docker service ps -q --no-trunc {}) || exit 1; if [ -n \"$ids\" ]; then docker inspect $ids; else echo '[]'; fi",
                self.all_services()
            ),
        )
    }

    /// The labels of the one-off service `name` of this deployment, and the service's name (two
    /// deployments on one swarm may run the same SHA's tool: the name carries the deployment).
    fn tool_ids(&self, name: &str) -> ([String; 2], String) {
        use sha2::Digest;
        let target = hex::encode(&sha2::Sha256::digest(self.services.join(" ").as_bytes())[..6]);
        ([format!("{TOOL_LABEL}={name}"), format!("{TARGET_LABEL}={target}")], format!("{name}-{target}"))
    }

    async fn read_services(&self) -> Result<Vec<Service>> {
        let out = exec::capture(self.exec.as_ref(), &self.inspect_cmd()).await?;
        if !out.exit.success() {
            let err = &out.exit.stderr_tail;
            if err.contains("not a swarm manager") || err.contains("swarm mode") {
                bail!(
                    "app.runtime: swarm: {} is not a manager of a swarm ({}): target a manager node",
                    self.exec.describe(),
                    err.trim()
                );
            }
            if err.contains("no such service") {
                let listed = exec::run_ok(
                    self.exec.as_ref(),
                    &self.command("swarm service list", "docker service ls --format '{{.Name}}'".into()),
                )
                .await
                .unwrap_or_default();
                let names: Vec<&str> = listed.split_whitespace().collect();
                bail!(
                    "app.services: {} on {} (it runs: {})",
                    err.trim(),
                    self.exec.describe(),
                    if names.is_empty() { "no service".to_string() } else { names.join(", ") }
                );
            }
            out.exit.check("docker service inspect")?;
        }
        let services: Vec<Service> = parse("docker service inspect", &out.stdout)?;
        for s in &services {
            s.state().check().context("docker service inspect")?;
        }
        Ok(services)
    }

    async fn read_tasks(&self) -> Result<Vec<Task>> {
        parse("docker inspect of the tasks", &exec::run_ok(self.exec.as_ref(), &self.tasks_cmd()).await?)
    }

    /// Polls until each of `names` has converged on its spec (twice in a row), or fails at once
    /// when an update is stuck; bounded by `app.health.timeout`.
    async fn converged(&self, names: &[String]) -> Result<String> {
        let deadline = tokio::time::Instant::now() + self.converge;
        let mut steady_before = false;
        loop {
            let services = self.read_services().await?;
            let mine: Vec<&Service> = services.iter().filter(|s| names.contains(&s.spec.name)).collect();
            // A task listed then removed before it is inspected: read again next time.
            let tasks = self.read_tasks().await;
            if let Some(stuck) = mine.iter().find_map(|s| s.stuck(tasks.as_deref().unwrap_or_default())) {
                bail!("{stuck}; Swarm's own rollback is off: deploy-guard rolls back");
            }
            let waiting: Vec<String> = match &tasks {
                Ok(tasks) => mine.iter().filter_map(|s| s.unconverged(tasks)).collect(),
                Err(e) => vec![format!("tasks not readable: {e:#}")],
            };
            if waiting.is_empty() && steady_before {
                let said: Vec<String> = mine.iter().map(|s| format!("{} on {}", s.spec.name, s.image())).collect();
                return Ok(format!("{} converged", said.join(", ")));
            }
            steady_before = waiting.is_empty();
            if tokio::time::Instant::now() + self.interval > deadline {
                bail!(
                    "not converged within {}: {}",
                    humantime::format_duration(self.converge),
                    crate::console::untrusted(&waiting.join("; "))
                );
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Polls until no task of the services runs any more (they were scaled to 0).
    async fn stopped(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.converge;
        loop {
            let services = self.read_services().await?;
            let tasks = self.read_tasks().await?;
            let live = |t: &&Task| {
                !matches!(
                    t.status.state.as_str(),
                    "complete" | "shutdown" | "failed" | "rejected" | "remove" | "orphaned"
                )
            };
            let left: Vec<&str> = services
                .iter()
                .filter(|s| tasks.iter().filter(live).any(|t| t.service_id == s.id))
                .map(|s| s.spec.name.as_str())
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() + self.interval > deadline {
                bail!(
                    "scaled to 0, but tasks of {} still run after {}",
                    left.join(", "),
                    humantime::format_duration(self.converge)
                );
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Each service's image, tag, replicas running/wanted and update state, for `check`.
    pub async fn services_report(&self) -> Result<String> {
        self.validate_once().await?;
        let services = self.read_services().await?;
        let tasks = self.read_tasks().await?;
        let parts: Vec<String> = services
            .iter()
            .map(|s| {
                let (_, ok) = s.running(&tasks);
                let want = s.replicas().map(|r| r.to_string()).unwrap_or_else(|| "global".into());
                let state = match s.update_state() {
                    "" => "never updated".to_string(),
                    st => format!("update {}", st.replace('_', " ")),
                };
                format!("{} {}, {ok}/{want} running, {state}", s.spec.name, s.image())
            })
            .collect();
        Ok(crate::console::untrusted(&parts.join("; ")))
    }

    async fn validate_once(&self) -> Result<()> {
        self.validated.get_or_try_init(|| self.validate_now()).await.map(|_| ())
    }

    /// Every service of `app.services` exists on the swarm, is replicated (a global one cannot
    /// be scaled to 0, unless writes are paused instead) and runs a tagged image.
    async fn validate_now(&self) -> Result<()> {
        let services = self.read_services().await?;
        for name in &self.services {
            let s = services.iter().find(|s| &s.spec.name == name).with_context(|| {
                format!("app.services: {name} is not a service of the swarm on {}", self.exec.describe())
            })?;
            if s.replicas().is_none() && self.pause_writes.is_none() {
                bail!(
                    "app.services: {name} is a global service: it cannot be scaled to 0 before a restore; set \
                     app.commands.pause_writes (and resume_writes), or leave it out"
                );
            }
            if image_tag(s.image()).is_none() {
                bail!(
                    "{name} runs the image {:?}, which has no tag: deploy-guard deploys and rolls back tags",
                    crate::console::untrusted(s.image())
                );
            }
        }
        Ok(())
    }

    /// The redeploy's image for `service`: the recorded one when it has `tag`, else its
    /// repository at `tag`; and its recorded replicas.
    fn redeploy_one(&self, service: &str, tag: &str, recorded: &[ServiceState]) -> Cmd {
        let rec = recorded.iter().find(|r| r.service == service);
        let image = match rec {
            Some(r) if image_tag(&r.image).as_deref() == Some(tag) => quote(&r.image),
            _ => format!("{}:{}", Self::repo_expr(service), quote(tag)),
        };
        self.update_cmd(service, &image, rec.and_then(|r| r.replicas))
    }

    /// Every command this runtime runs, for snapshot tests.
    pub fn scripts(&self, tag: &str) -> Vec<(&'static str, String)> {
        let actions = [Action::CurrentTag, Action::Stop, Action::Status, Action::Logs(30)];
        let mut out: Vec<(&str, String)> =
            actions.iter().filter_map(|a| Some((a.key(), self.cmd(*a)?.script))).collect();
        out.extend(self.deploy_cmds(tag).into_iter().map(|c| ("deploy", c.script)));
        let recorded =
            [ServiceState { service: self.service.clone(), image: "app:v1@sha256:0a".into(), replicas: Some(3) }];
        out.extend(self.redeploy_cmds("v1", &recorded).into_iter().map(|c| ("redeploy", c.script)));
        out.push(("tasks", self.tasks_cmd().script));
        out.push((
            "migrate",
            self.tool_cmd("migrate", "deploy-guard-migrate-abc1234", tag, "npm run migration:run").script,
        ));
        out.push(("tool stop", self.tool_stop("deploy-guard-migrate-abc1234").expect("swarm").script));
        out
    }
}

#[async_trait]
impl Runtime for Swarm {
    fn executor(&self) -> &dyn Executor {
        self.exec.as_ref()
    }

    fn cmd(&self, action: Action<'_>) -> Option<Cmd> {
        let (label, script) = match action {
            Action::CurrentTag => return Some(self.inspect_cmd()),
            // Each node pulls what its tasks need.
            Action::Pull(_) => return None,
            Action::Deploy(tag) => (
                "swarm service update",
                self.deploy_cmds(tag).into_iter().map(|c| c.script).collect::<Vec<_>>().join(" && "),
            ),
            Action::Stop => (
                "swarm scale to 0",
                format!(
                    "docker service scale --detach {}",
                    self.services.iter().map(|s| format!("{}=0", quote(s))).collect::<Vec<_>>().join(" ")
                ),
            ),
            Action::Status => (
                "swarm service ps",
                format!(
                    "docker service ps --no-trunc --filter desired-state=running --format '{{{{.Name}}}} {{{{.Image}}}} {{{{.CurrentState}}}} {{{{.Error}}}}' {}",
                    self.all_services()
                ),
            ),
            Action::Logs(n) => (
                "swarm service logs",
                self.services
                    .iter()
                    .map(|s| format!("docker service logs --no-task-ids --tail {n} {}", quote(s)))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Action::PauseWrites => ("pause writes", self.user_command(self.pause_writes.as_deref()?)),
            Action::ResumeWrites => ("resume writes", self.user_command(self.resume_writes.as_deref()?)),
        };
        Some(self.command(label, script))
    }

    /// The tag of `app.service`'s image in what `docker service inspect` printed.
    fn parse_tag(&self, out: &str) -> Option<String> {
        let services: Vec<Service> = parse("docker service inspect", out).ok()?;
        services.iter().find(|s| s.spec.name == self.service).and_then(|s| image_tag(s.image()))
    }

    fn deploy_cmds(&self, tag: &str) -> Vec<Cmd> {
        self.services.iter().map(|s| self.deploy_one(s, tag)).collect()
    }

    fn redeploy_cmds(&self, tag: &str, recorded: &[ServiceState]) -> Vec<Cmd> {
        self.services.iter().map(|s| self.redeploy_one(s, tag, recorded)).collect()
    }

    /// `app.service`'s tag from its spec: running, when its update completed and every replica
    /// runs; else unsteady (an update paused or under way), trusted only when nothing else knows.
    async fn previous_tag(&self) -> Result<Option<(String, TagSource)>> {
        self.validate_once().await?;
        let services = self.read_services().await?;
        let tasks = self.read_tasks().await?;
        let Some(s) = services.iter().find(|s| s.spec.name == self.service) else { return Ok(None) };
        let Some(tag) = image_tag(s.image()) else { return Ok(None) };
        for other in services.iter().filter(|o| image_tag(o.image()).as_deref() != Some(tag.as_str())) {
            tracing::warn!(
                "{} runs {} while {} runs the tag {tag}: a rollback puts back each service's own recorded image",
                other.spec.name,
                crate::console::untrusted(other.image()),
                self.service
            );
        }
        Ok(Some((tag, if s.unconverged(&tasks).is_none() { TagSource::Running } else { TagSource::Unsteady })))
    }

    async fn settled(&self, _timeout: Duration, _interval: Duration) -> Result<String> {
        self.converged(&self.services).await
    }

    /// One service at a time, `app.service` first, each waited for before the next.
    async fn deploy(&self, tag: &str) -> Result<()> {
        self.validate_once().await?;
        for s in &self.services {
            exec::run_ok(self.exec.as_ref(), &self.deploy_one(s, tag)).await?;
            self.converged(std::slice::from_ref(s)).await?;
        }
        Ok(())
    }

    async fn services(&self) -> Result<Vec<ServiceState>> {
        let services = self.read_services().await?;
        Ok(self
            .services
            .iter()
            .filter_map(|name| services.iter().find(|s| &s.spec.name == name).map(Service::state))
            .collect())
    }

    /// Every service back on its recorded image and replicas at once, then waited for.
    async fn redeploy(&self, tag: &str, recorded: &[ServiceState]) -> Result<()> {
        for cmd in self.redeploy_cmds(tag, recorded) {
            exec::run_ok(self.exec.as_ref(), &cmd).await?;
        }
        let now = self.services().await?;
        let at_zero: Vec<&str> = now
            .iter()
            .filter(|s| {
                s.replicas == Some(0) && !recorded.iter().any(|r| r.service == s.service && r.replicas.is_some())
            })
            .map(|s| s.service.as_str())
            .collect();
        if !at_zero.is_empty() {
            bail!(
                "{} run(s) 0 replicas and no count was recorded: scale by hand (docker service scale {}=N)",
                at_zero.join(", "),
                at_zero[0]
            );
        }
        self.converged(&self.services).await.map(|_| ())
    }

    async fn stop(&self) -> Result<String> {
        self.run(Action::Stop).await?;
        self.stopped().await?;
        Ok(String::new())
    }

    async fn validate(&self) -> Result<()> {
        self.validate_once().await
    }

    async fn check(&self) -> Result<String> {
        self.services_report().await
    }

    /// A one-off job of the NEW image on the swarm, with `app.service`'s environment (piped to
    /// `--env-file`, never on the command line) and networks, its entrypoint overridden, never
    /// restarted; waited for, its output printed, its exit status returned, then removed.
    fn tool_cmd(&self, label: &str, name: &str, tag: &str, script: &str) -> Cmd {
        let (labels, service) = self.tool_ids(name);
        let s = quote(&self.service);
        let labels: Vec<String> = labels.iter().map(|l| format!("--label {}", quote(l))).collect();
        Cmd::new(
            label,
            format!(
                "n={n}; img={repo}:{tag} && \
                 nets=$(docker service inspect --format '{{{{range .Spec.TaskTemplate.Networks}}}}--network={{{{.Target}}}} {{{{end}}}}' {s}) && \
                 env=$(docker service inspect --format '{{{{range .Spec.TaskTemplate.ContainerSpec.Env}}}}{{{{println .}}}}{{{{end}}}}' {s}) || exit 1; \
                 case \"$nets\" in *[!a-zA-Z0-9=\\ -]*) echo \"deploy-guard: unexpected networks: $nets\" >&2; exit 1;; esac; \
                 printf '%s\\n' \"$env\" | docker service create --detach --quiet --name \"$n\" {labels} --mode replicated-job \
                 --restart-condition none --with-registry-auth $nets --env-file /dev/stdin --entrypoint sh \"$img\" -c {script} >/dev/null || exit 1; \
                 while :; do t=$(docker service ps -q --no-trunc \"$n\" | head -n 1); \
                 st=; [ -z \"$t\" ] || st=$(docker inspect --format '{{{{.Status.State}}}}' \"$t\" 2>/dev/null); \
                 case \"$st\" in complete|failed|rejected|shutdown|orphaned|remove) break;; esac; sleep 1; done; \
                 docker service logs --raw \"$n\"; \
                 code=$(docker inspect --format '{{{{if .Status.ContainerStatus}}}}{{{{.Status.ContainerStatus.ExitCode}}}}{{{{end}}}}' \"$t\"); \
                 err=$(docker inspect --format '{{{{.Status.Err}}}}' \"$t\"); docker service rm \"$n\" >/dev/null; \
                 [ \"$st\" = complete ] && exit 0; echo \"deploy-guard: the one-off task $st: $err\" >&2; \
                 case \"$code\" in ''|0|*[!0-9]*) exit 125;; esac; exit \"$code\"",
                n = quote(&service),
                repo = Self::repo_expr(&self.service),
                tag = quote(tag),
                labels = labels.join(" "),
                script = quote(script),
            ),
        )
    }

    /// Removes the one-off service when its command was cut short (a timeout, a lost channel),
    /// and waits until its containers on this node are gone; prints how many services it removed.
    fn tool_stop(&self, name: &str) -> Option<Cmd> {
        let (labels, service) = self.tool_ids(name);
        let filters: Vec<String> =
            labels.iter().map(|l| format!("--filter {}", quote(&format!("label={l}")))).collect();
        let list = format!("docker service ls -q {}", filters.join(" "));
        let containers =
            format!("docker ps -q --filter {}", quote(&format!("label=com.docker.swarm.service.name={service}")));
        Some(self.command(
            "remove the tool's one-off service",
            super::compose::remove_and_wait(&list, "docker service rm $ids >/dev/null", &containers),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_as_data() {
        let app: crate::config::App = serde_yaml::from_str(
            "runtime: swarm\nservice: station_backend\nservices: [station_backend, station_worker]\n\
             health: {url: 'http://x'}",
        )
        .unwrap();
        let s = Swarm::from_config(Arc::new(crate::exec::Local), &app, Duration::from_secs(60)).unwrap();
        let text: String = s.scripts("v2.4.0").iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        insta::assert_snapshot!(text);
    }
}
