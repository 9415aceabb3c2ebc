//! `app.runtime: kubernetes`: the app is Deployments in a namespace, driven with `kubectl` on
//! this machine. The kubeconfig is kubectl's (`app.kubernetes.kubeconfig`, else `KUBECONFIG`),
//! handed over in its environment: it is never printed nor put in an argument.
//!
//! A deploy sets `IMAGE:TAG` on every Deployment's container; the health step then waits for
//! each rollout as `kubectl rollout status` does (updated, available, no old pods left, no
//! `ProgressDeadlineExceeded`). Before a restore the writers are stopped: with
//! `app.kubernetes.pause_env` that variable is set on every Deployment and the rollout waited
//! for; else each is scaled to 0, its replica count first recorded on it (an annotation) so the
//! redeploy brings back exactly that many, whichever process runs it. The migration tool runs
//! here, or (`migrations.where: job`) in a Job of the new image with the first Deployment's env.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::compose::image_tag;
use super::{Action, Runtime};
use crate::config::{self, MigrateWhere};
use crate::exec::{self, quote, Cmd, Executor};

/// Where a Deployment's replica count is kept while it is scaled to 0 for a restore.
pub const REPLICAS_ANNOTATION: &str = "deploy-guard.dev/replicas";
/// The label of a migration Job and its pod: the name the tool runs as.
const RUN_LABEL: &str = "deploy-guard.dev/run";

pub struct Kubernetes {
    exec: Arc<dyn Executor>,
    k: config::Kubernetes,
    /// `kubectl --namespace NS [--context C]`, quoted.
    base: String,
    workdir: Option<String>,
    location: MigrateWhere,
    timeout: Duration,
    /// How long a wait for pods (scaled to 0, a pause's rollout) may take: the health timeout.
    wait: Duration,
    validated: OnceCell<()>,
}

/// One Deployment's rollout, from [`Kubernetes::rollout_script`].
#[derive(Debug, PartialEq, Eq)]
pub struct Rollout {
    pub name: String,
    pub image: String,
    generation: i64,
    observed: i64,
    pub desired: i64,
    total: i64,
    updated: i64,
    pub available: i64,
    pub ready: i64,
    progressing: String,
}

impl Rollout {
    /// `NAME|GEN|OBSERVED|SPEC|REPLICAS|UPDATED|AVAILABLE|READY|PROGRESSING-REASON|IMAGE` lines.
    fn parse(text: &str) -> Vec<Rollout> {
        let n = |s: &str| s.trim().parse::<i64>().unwrap_or(0);
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f.len() == 10).then(|| Rollout {
                    name: f[0].to_string(),
                    generation: n(f[1]),
                    observed: n(f[2]),
                    desired: n(f[3]),
                    total: n(f[4]),
                    updated: n(f[5]),
                    available: n(f[6]),
                    ready: n(f[7]),
                    progressing: f[8].to_string(),
                    image: plain(f[9]).trim().to_string(),
                })
            })
            .collect()
    }

    /// `kubectl rollout status`'s verdict: Ok(true) done, Ok(false) still going, Err stuck.
    fn state(&self) -> Result<bool, String> {
        if self.stuck() {
            return Err(format!("{} exceeded its progress deadline ({})", self.name, self.describe()));
        }
        Ok(self.done())
    }

    fn stuck(&self) -> bool {
        self.observed >= self.generation && self.progressing == "ProgressDeadlineExceeded"
    }

    fn done(&self) -> bool {
        self.observed >= self.generation
            && self.updated >= self.desired
            && self.total <= self.updated
            && self.available >= self.updated
    }

    pub fn describe(&self) -> String {
        let state = if self.stuck() {
            "stuck: ProgressDeadlineExceeded"
        } else if self.done() {
            "rolled out"
        } else {
            "rolling out"
        };
        format!(
            "{} {}: {}/{} ready, {} updated, {} available, {state}",
            self.name,
            image_tag(&self.image).map(|t| format!("tag {t}")).unwrap_or_else(|| format!("image {}", self.image)),
            self.ready,
            self.desired,
            self.updated,
            self.available
        )
    }
}

/// `kubectl --namespace NS [--context C]`, quoted.
fn kubectl_base(k: &config::Kubernetes) -> String {
    let mut base = format!("kubectl --namespace {}", quote(&k.namespace));
    if let Some(c) = &k.context {
        base.push_str(&format!(" --context {}", quote(c)));
    }
    base
}

/// The command prefix that runs PostgreSQL's client tools inside the database's pod
/// (`database.service`): `kubectl exec -i`, stdin passed through for a restore. The kubeconfig
/// path goes in kubectl's environment, as for every other kubectl command.
pub fn db_exec_prefix(k: &config::Kubernetes, target: &str) -> String {
    let kubeconfig = k.kubeconfig.as_ref().map(|p| format!("env KUBECONFIG={} ", quote(p))).unwrap_or_default();
    format!("{kubeconfig}{} exec -i {} --", kubectl_base(k), quote(target))
}

impl Kubernetes {
    pub fn from_config(exec: Arc<dyn Executor>, config: &config::Config) -> Result<Kubernetes> {
        let Some(k) = config.app.kubernetes.clone() else {
            bail!("app.kubernetes: required with app.runtime: kubernetes");
        };
        Ok(Kubernetes {
            exec,
            base: kubectl_base(&k),
            k,
            workdir: config.app.workdir.clone(),
            location: config.migrations.location,
            timeout: config.target.command_timeout,
            wait: config.app.health.timeout,
            validated: OnceCell::new(),
        })
    }

    /// A kubectl script, with the kubeconfig in its environment.
    fn command(&self, label: &str, script: String) -> Cmd {
        let cmd = Cmd::new(label, script).timeout(self.timeout);
        match &self.k.kubeconfig {
            Some(path) => cmd.env("KUBECONFIG", path.clone()),
            None => cmd,
        }
    }

    fn deployments(&self) -> String {
        self.k.deployments.iter().map(|d| format!("deployment/{}", quote(d))).collect::<Vec<_>>().join(" ")
    }

    fn names(&self) -> String {
        self.k.deployments.iter().map(|d| quote(d)).collect::<Vec<_>>().join(" ")
    }

    fn image_path(&self) -> String {
        format!("{{.spec.template.spec.containers[?(@.name==\"{}\")].image}}", self.k.container)
    }

    fn rollout_script(&self) -> String {
        let fields = [
            "{.metadata.name}",
            "{.metadata.generation}",
            "{.status.observedGeneration}",
            "{.spec.replicas}",
            "{.status.replicas}",
            "{.status.updatedReplicas}",
            "{.status.availableReplicas}",
            "{.status.readyReplicas}",
            "{.status.conditions[?(@.type==\"Progressing\")].reason}",
            &self.image_path(),
        ];
        let path = format!("{{range .items[*]}}{}{{\"\\n\"}}{{end}}", fields.join("|"));
        format!("{} get deployment -o jsonpath={}", self.base, quote(&path))
    }

    fn rollout_cmd(&self) -> Cmd {
        self.command("kubectl rollout", self.rollout_script())
    }

    /// Scales every Deployment to 0, first recording its replica count on it (unless one is
    /// recorded already: a second stop must not record 0), then waits until none has a pod.
    fn scale_down_script(&self) -> String {
        let k = &self.base;
        let ann = REPLICAS_ANNOTATION.replace('.', "\\.");
        format!(
            "for d in {names}; do r=$({k} get deployment/\"$d\" -o jsonpath='{{.spec.replicas}}/{{.metadata.annotations.{ann}}}') || exit 1; \
             want=${{r%%/*}}; kept=${{r#*/}}; if [ -z \"$kept\" ]; then \
             {k} annotate deployment/\"$d\" {REPLICAS_ANNOTATION}=\"$want\" >/dev/null || exit 1; kept=$want; fi; \
             {k} scale deployment/\"$d\" --replicas=0 >/dev/null || exit 1; printf '%s=%s ' \"$d\" \"$kept\"; done; echo; \
             {wait}",
            names = self.names(),
            wait = self.no_pods_script(),
        )
    }

    /// Waits until no pod of any Deployment is left (terminating ones included).
    fn no_pods_script(&self) -> String {
        let k = &self.base;
        format!(
            "i=0; while :; do left=0; for d in {names}; do \
             sel=$({k} get deployment/\"$d\" -o go-template='{{{{range $k, $v := .spec.selector.matchLabels}}}}{{{{$k}}}}={{{{$v}}}},{{{{end}}}}') || exit 1; \
             p=$({k} get pods -l \"${{sel%,}}\" -o name) || exit 1; n=$(printf '%s' \"$p\" | grep -c .); left=$((left + n)); done; \
             [ \"$left\" -eq 0 ] && break; i=$((i + 1)); \
             [ $i -le {secs} ] || {{ echo \"deploy-guard: $left pod(s) still there after {secs} s\" >&2; exit 1; }}; sleep 1; done",
            names = self.names(),
            secs = self.wait.as_secs().max(1),
        )
    }

    /// Sets `IMAGE:TAG` on every Deployment, and scales back any that a restore scaled to 0 to
    /// its recorded replica count.
    fn deploy_script(&self, tag: &str) -> String {
        let k = &self.base;
        let ann = REPLICAS_ANNOTATION.replace('.', "\\.");
        format!(
            "{k} set image {deps} {c}={image} && for d in {names}; do \
             r=$({k} get deployment/\"$d\" -o jsonpath='{{.metadata.annotations.{ann}}}') || exit 1; [ -z \"$r\" ] || \
             {{ {k} scale deployment/\"$d\" --replicas=\"$r\" && {k} annotate deployment/\"$d\" {REPLICAS_ANNOTATION}-; }} || exit 1; done",
            deps = self.deployments(),
            c = self.k.container,
            image = quote(&format!("{}:{tag}", self.k.image)),
            names = self.names(),
        )
    }

    /// `kubectl set env` on every Deployment, then each rollout waited for.
    fn set_env_script(&self, assignment: &str) -> String {
        let waits: Vec<String> = self
            .k
            .deployments
            .iter()
            .map(|d| {
                format!(
                    "{} rollout status deployment/{} --timeout={}s",
                    self.base,
                    quote(d),
                    self.wait.as_secs().max(1)
                )
            })
            .collect();
        format!("{} set env {} {} && {}", self.base, self.deployments(), quote(assignment), waits.join(" && "))
    }

    /// The Job that runs `script` in the new image with the first Deployment's env: created,
    /// waited for, its logs printed (to stderr when it failed, so they are quoted).
    fn job_script(&self, name: &str, tag: &str, script: &str) -> String {
        let k = &self.base;
        let first = quote(&self.k.deployments[0]);
        let container =
            |env: &str| format!("{{.spec.template.spec.containers[?(@.name==\"{}\")].{env}}}", self.k.container);
        let labels = serde_json::json!({ RUN_LABEL: name });
        let head = serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": name, "labels": labels },
        });
        let pod = serde_json::json!({
            "name": "migrate",
            "image": format!("{}:{tag}", self.k.image),
            "command": ["sh", "-c", script],
        });
        let strip = |v: serde_json::Value| {
            let s = v.to_string();
            s[..s.len() - 1].to_string()
        };
        // {head,"spec":{..."containers":[{pod,"env":ENV,"envFrom":ENVFROM}]}}}}
        let before_env = format!(
            "{},\"spec\":{{\"backoffLimit\":0,\"template\":{{\"metadata\":{{\"labels\":{labels}}},\"spec\":{{\"restartPolicy\":\"Never\",\"containers\":[{},\"env\":",
            strip(head),
            strip(pod),
        );
        format!(
            "{k} delete job {n} --ignore-not-found --wait >/dev/null || exit 1; \
             env=$({k} get deployment/{first} -o jsonpath={env}) || exit 1; \
             from=$({k} get deployment/{first} -o jsonpath={from}) || exit 1; \
             printf '%s%s%s%s%s' {before} \"${{env:-[]}}\" ',\"envFrom\":' \"${{from:-[]}}\" '}}]}}}}}}}}' | {k} create -f - >/dev/null || exit 1; \
             while :; do s=$({k} get job/{n} -o jsonpath='{{.status.succeeded}}/{{.status.failed}}') || exit 1; \
             case \"$s\" in [1-9]*/*) ok=1; break ;; */[1-9]*) ok=0; break ;; esac; sleep 1; done; \
             if [ \"$ok\" = 1 ]; then {k} logs job/{n} --tail=200 2>&1 || true; \
             else {k} logs job/{n} --tail=200 >&2 || true; echo \"deploy-guard: the migration Job {name} failed\" >&2; exit 1; fi",
            n = quote(name),
            env = quote(&container("env")),
            from = quote(&container("envFrom")),
            before = quote(&before_env),
        )
    }

    /// Every command this runtime runs, for the snapshot test.
    pub fn scripts(&self, tag: &str) -> Vec<(&'static str, String)> {
        let actions = [
            Action::CurrentTag,
            Action::Deploy(tag),
            Action::Stop,
            Action::Status,
            Action::Logs(30),
            Action::PauseWrites,
        ];
        let mut out: Vec<(&'static str, String)> =
            actions.iter().filter_map(|a| Some((a.key(), self.cmd(*a)?.script))).collect();
        out.push(("rollout", self.rollout_script()));
        out.push(("validate", self.validate_script()));
        out.push(("job", self.job_script("deploy-guard-migrate-abc1234", tag, "migrate up")));
        out.push(("tool stop", self.job_stop("deploy-guard-migrate-abc1234").script));
        out.push(("database pod", db_exec_prefix(&self.k, "pod/postgres-0")));
        out
    }

    fn validate_script(&self) -> String {
        let path = "{range .items[*]}{.metadata.name}={.spec.template.spec.containers[*].name}{\"\\n\"}{end}";
        format!("{} get deployment -o jsonpath={}", self.base, quote(path))
    }

    /// Each Deployment exists and has the container; kubectl reaches the cluster and may read.
    async fn validate_now(&self) -> Result<()> {
        let out =
            exec::capture(self.exec.as_ref(), &self.command("kubectl get deployments", self.validate_script())).await?;
        if out.exit.code != Some(0) {
            bail!(
                "app.kubernetes: kubectl cannot read the Deployments {} in namespace {}: {}",
                self.k.deployments.join(", "),
                self.k.namespace,
                plain(out.exit.stderr_tail.trim())
            );
        }
        for d in &self.k.deployments {
            let line = out.stdout.lines().find(|l| l.split_once('=').is_some_and(|(n, _)| n == d));
            let Some((_, containers)) = line.and_then(|l| l.split_once('=')) else {
                bail!("app.kubernetes.deployments: {d} is not a Deployment in namespace {}", self.k.namespace);
            };
            if !containers.split_whitespace().any(|c| c == self.k.container) {
                bail!(
                    "app.kubernetes.container: Deployment {d} has no container {:?} (it has: {})",
                    self.k.container,
                    containers.trim()
                );
            }
        }
        Ok(())
    }

    /// Each named Deployment's rollout, in `app.kubernetes.deployments`' order. The namespace's
    /// Deployments are listed (kubectl prints one named object without `items`) and filtered.
    pub async fn rollouts(&self) -> Result<Vec<Rollout>> {
        let out = exec::run_ok(self.exec.as_ref(), &self.rollout_cmd()).await?;
        let mut all = Rollout::parse(&out);
        let mut mine = Vec::new();
        for d in &self.k.deployments {
            match all.iter().position(|r| &r.name == d) {
                Some(i) => mine.push(all.swap_remove(i)),
                None => bail!("app.kubernetes.deployments: {d} is not a Deployment in namespace {}", self.k.namespace),
            }
        }
        Ok(mine)
    }

    fn job_stop(&self, name: &str) -> Cmd {
        let k = &self.base;
        self.command(
            "delete the migration Job",
            format!(
                "j=$({k} get job {n} -o name --ignore-not-found) || exit 1; \
                 {k} delete job {n} --ignore-not-found --cascade=foreground --wait --timeout=120s >/dev/null || exit 1; \
                 p=$({k} get pods -l {sel} -o name) || exit 1; \
                 [ -z \"$p\" ] || {{ echo \"deploy-guard: pods of the Job are still there: $p\" >&2; exit 1; }}; \
                 printf '%s' \"$j\" | grep -c . || true",
                n = quote(name),
                sel = quote(&format!("{RUN_LABEL}={name}")),
            ),
        )
    }
}

/// What the cluster printed, control characters (terminal escapes) removed, newlines kept.
fn plain(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() || *c == '\n').collect()
}

#[async_trait]
impl Runtime for Kubernetes {
    fn executor(&self) -> &dyn Executor {
        self.exec.as_ref()
    }

    fn cmd(&self, action: Action<'_>) -> Option<Cmd> {
        let k = &self.base;
        let first = quote(&self.k.deployments[0]);
        let (label, script) = match action {
            Action::CurrentTag => (
                "kubectl current image",
                format!("{k} get deployment/{first} -o jsonpath={}", quote(&self.image_path())),
            ),
            // The cluster's nodes pull the image.
            Action::Pull(_) => return None,
            Action::Deploy(tag) => ("kubectl set image", self.deploy_script(tag)),
            Action::Stop => ("kubectl scale to 0", self.scale_down_script()),
            Action::Status => ("kubectl get deployments", format!("{k} get deployment {} -o wide", self.names())),
            Action::Logs(n) => (
                "kubectl logs",
                format!(
                    "for d in {}; do {k} logs deployment/\"$d\" --all-containers --prefix --tail={n}; done",
                    self.names()
                ),
            ),
            Action::PauseWrites => {
                ("kubectl set env (pause writes)", self.set_env_script(self.k.pause_env.as_deref()?))
            }
            Action::ResumeWrites => {
                ("kubectl set env (resume writes)", self.set_env_script(&format!("{}-", self.k.pause_var()?)))
            }
        };
        Some(self.command(label, script))
    }

    fn parse_tag(&self, out: &str) -> Option<String> {
        image_tag(out)
    }

    async fn current_tag(&self) -> Result<Option<String>> {
        self.validate().await?;
        Ok(self.parse_tag(&self.run(Action::CurrentTag).await?))
    }

    /// The first Deployment's image; trusted as running only when its rollout is complete (a
    /// release left stuck or crash-looping is not the one to go back to: the journal and GitHub
    /// are asked first, as for a crash-looping compose container).
    async fn previous_tag(&self) -> Result<Option<(String, super::TagSource)>> {
        let Some(tag) = self.current_tag().await? else { return Ok(None) };
        let first = self.rollouts().await?.into_iter().next();
        let steady = first.is_some_and(|r| r.done() && r.available > 0);
        Ok(Some((tag, if steady { super::TagSource::Running } else { super::TagSource::Unsteady })))
    }

    fn settle_cmd(&self) -> Option<Cmd> {
        Some(self.rollout_cmd())
    }

    /// `kubectl rollout status` for every Deployment, within the health timeout.
    async fn settled(&self, timeout: Duration, interval: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rollouts = self.rollouts().await?;
            let mut waiting = Vec::new();
            for r in &rollouts {
                match r.state() {
                    Ok(true) => {}
                    Ok(false) => waiting.push(r.describe()),
                    Err(stuck) => bail!("{stuck}"),
                }
            }
            if waiting.is_empty() {
                return Ok(rollouts.iter().map(Rollout::describe).collect::<Vec<_>>().join("; "));
            }
            if tokio::time::Instant::now() + interval > deadline {
                bail!("not rolled out within {}: {}", humantime::format_duration(timeout), waiting.join("; "));
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn deploy(&self, tag: &str) -> Result<()> {
        self.validate().await?;
        self.run(Action::Deploy(tag)).await.map(|_| ())
    }

    /// Scaled to 0: the replica counts recorded (`api=2 worker=1`) go into the journal.
    async fn stop(&self) -> Result<String> {
        self.validate().await?;
        let out = self.run(Action::Stop).await?;
        Ok(format!("scaled to 0 (recorded replicas: {})", plain(out.trim())))
    }

    async fn validate(&self) -> Result<()> {
        self.validated.get_or_try_init(|| self.validate_now()).await.map(|_| ())
    }

    async fn check(&self) -> Result<String> {
        self.validate().await?;
        Ok(self.rollouts().await?.iter().map(Rollout::describe).collect::<Vec<_>>().join("; "))
    }

    /// With `migrations.where: job`, the migrations and their revert run in a Job; what only
    /// reads the release's files (which migrations lack a down, their SQL) runs here, in the
    /// checkout the image was built from.
    fn tool_cmd(&self, label: &str, name: &str, tag: &str, script: &str) -> Cmd {
        // The labels of the migration run and its revert (run::steps::tool::Tool::label).
        if self.location == MigrateWhere::Job && matches!(label, "migrate" | "revert") {
            let mut cmd = self.command(label, self.job_script(name, tag, script));
            cmd.timeout = None;
            return cmd;
        }
        Cmd::new(
            label,
            match &self.workdir {
                Some(dir) => format!("cd {} && {script}", quote(dir)),
                None => script.to_string(),
            },
        )
    }

    /// A Job outlives its kubectl: deleted, with its pod, and waited for.
    fn tool_stop(&self, name: &str) -> Option<Cmd> {
        (self.location == MigrateWhere::Job).then(|| self.job_stop(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_status_semantics() {
        let line = |s: &str| Rollout::parse(s).pop().unwrap();
        assert_eq!(line("api|2|2|2|2|2|2|2|NewReplicaSetAvailable|app:v2").state(), Ok(true));
        assert_eq!(line("api|3|2|2|2|2|2|2|NewReplicaSetAvailable|app:v2").state(), Ok(false), "not observed yet");
        assert_eq!(line("api|2|2|2|3|1|2|2|ReplicaSetUpdated|app:v2").state(), Ok(false), "old pods left");
        assert_eq!(line("api|2|2|2|3|2|1|2|ReplicaSetUpdated|app:v2").state(), Ok(false), "not available");
        assert!(line("api|2|2|2|3|1|2|2|ProgressDeadlineExceeded|app:v2").state().is_err());
        assert_eq!(line("api|2|2|0||||||app:v1").state(), Ok(true), "scaled to 0");
        assert_eq!(
            line("api|2|2|2|2|2|2|2|x|app:v2").describe(),
            "api tag v2: 2/2 ready, 2 updated, 2 available, rolled out"
        );
    }

    #[test]
    fn commands_as_data() {
        let config = crate::config::Config::from_yaml(
            "project: spade\napp:\n  runtime: kubernetes\n  kubernetes:\n    namespace: spade\n    deployments: [spade-api, spade-worker]\n    \
             container: app\n    image: ghcr.io/acme/spade\n    pause_env: READ_ONLY_MODE=true\n    context: prod\n\
             database:\n  url: postgres://app@db:5432/spade\nmigrations:\n  tool: golang-migrate\nbackup:\n  store: file:///var/backups\n",
            &[],
        )
        .unwrap();
        let k = Kubernetes::from_config(Arc::new(crate::exec::Local), &config).unwrap();
        let text: String = k.scripts("v2.4.0").iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        insta::assert_snapshot!(text);
    }
}
