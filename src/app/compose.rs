//! `app.runtime: compose`: the service runs under `docker compose` on the target; the image tag
//! is chosen by an environment variable the compose file interpolates (`image: app:${TAG}`).
//!
//! A deploy starts the tag with the variable set on the command line, then writes it into the
//! env file compose reads (atomically, the rest of the file untouched), so the next plain
//! `docker compose up -d` on the host (a reboot, a colleague, a cron job) keeps running it. The
//! migration tool runs in a one-off container of the new image with its entrypoint overridden,
//! so it works even when that entrypoint crashes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{Action, Runtime, TagSource};
use crate::exec::{self, envfile, quote, Cmd, Executor};

pub struct Compose {
    exec: Arc<dyn Executor>,
    /// `docker compose -f FILE [--env-file ENV]`
    base: String,
    compose_file: String,
    /// Where the deployed tag is written: `app.env_file`, else compose's default `.env` beside
    /// the compose file.
    tag_file: String,
    /// The service whose image runs the migrations and whose tag is "the running tag".
    service: String,
    /// Every service started on a tag and stopped before a restore (`app.services`), `service`
    /// first.
    services: Vec<String>,
    tag_variable: String,
    /// `app.commands.pause_writes` / `resume_writes`, run as given (in `app.workdir`).
    pause_writes: Option<String>,
    resume_writes: Option<String>,
    workdir: Option<String>,
    timeout: Duration,
    /// [`Compose::validate`] runs once per process, the first time the target is touched.
    validated: OnceCell<()>,
}

/// `docker compose -f FILE [--env-file ENV]`, quoted.
pub fn base_command(compose_file: &str, env_file: Option<&str>) -> String {
    let mut base = format!("docker compose -f {}", quote(compose_file));
    if let Some(e) = env_file {
        base.push_str(&format!(" --env-file {}", quote(e)));
    }
    base
}

/// The value the tag variable is set to while [`Compose::validate`] checks that the compose file
/// reads it.
const PROBE_TAG: &str = "deploy-guard-probe";

/// The label a tool's one-off container carries, its value the name the tool runs as.
const TOOL_LABEL: &str = "deploy-guard.run";
/// The label naming the deployment (compose file and env file) that started it: two
/// deployments on one host may run the same SHA's tool at once, and must not end each other's.
const TARGET_LABEL: &str = "deploy-guard.target";

impl Compose {
    pub fn from_config(exec: Arc<dyn Executor>, app: &crate::config::App, timeout: Duration) -> Result<Compose> {
        let need = |v: &Option<String>, k: &str| {
            v.clone().ok_or_else(|| anyhow::anyhow!("{k}: required with app.runtime: compose"))
        };
        let compose_file = need(&app.compose_file, "app.compose_file")?;
        let tag_variable = need(&app.tag_variable, "app.tag_variable")?;
        let mut chars = tag_variable.chars();
        if !(chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            bail!("app.tag_variable {tag_variable:?}: not an environment variable name (letters, digits, '_')");
        }
        let tag_file = app.env_file.clone().unwrap_or_else(|| match compose_file.rsplit_once('/') {
            Some((dir, _)) => format!("{}/.env", if dir.is_empty() { "" } else { dir }),
            None => ".env".into(),
        });
        let service = need(&app.service, "app.service")?;
        let mut services = vec![service.clone()];
        services.extend(app.services.iter().filter(|s| **s != service).cloned());
        Ok(Compose {
            exec,
            base: base_command(&compose_file, app.env_file.as_deref()),
            compose_file,
            tag_file,
            service,
            services,
            tag_variable,
            pause_writes: app.commands.pause_writes.clone(),
            resume_writes: app.commands.resume_writes.clone(),
            workdir: app.workdir.clone(),
            timeout,
            validated: OnceCell::new(),
        })
    }

    /// The labels of the tool's container `name` of this deployment: the name, and a digest of
    /// the compose command (file and env file) that identifies the deployment.
    fn tool_labels(&self, name: &str) -> [String; 2] {
        use sha2::Digest;
        let target = hex::encode(&sha2::Sha256::digest(self.base.as_bytes())[..6]);
        [format!("{TOOL_LABEL}={name}"), format!("{TARGET_LABEL}={target}")]
    }

    fn with_tag(&self, tag: &str) -> String {
        format!("{}={} {}", self.tag_variable, quote(tag), self.base)
    }

    fn command(&self, label: &str, script: String) -> Cmd {
        Cmd::new(label, script).timeout(self.timeout)
    }

    /// Prints `STATUS RESTARTING RESTART_COUNT IMAGE` of the service's container, nothing when
    /// there is none.
    fn current_tag_script(&self) -> String {
        format!(
            "id=$({} ps -a -q {} 2>/dev/null | head -n 1); [ -n \"$id\" ] || exit 0; \
             docker inspect --format '{{{{.State.Status}}}} {{{{.State.Restarting}}}} {{{{.RestartCount}}}} {{{{.Config.Image}}}}' \"$id\"",
            self.base,
            quote(&self.service)
        )
    }

    /// Writes `VAR=tag` into the tag file: every line setting VAR is replaced (or one appended),
    /// in a temp file beside it that keeps its mode and owner, then renamed over it.
    fn persist_tag_script(&self, tag: &str) -> String {
        format!(
            "f={file} && {{ [ -e \"$f\" ] || : > \"$f\"; }} && t=$(mktemp \"$f.XXXXXX\") && \
             {{ cp -p \"$f\" \"$t\" && awk -v k={var} -v v={tag} 'BEGIN {{ re = \"^[ \\t]*(export[ \\t]+)?\" k \"[ \\t]*=\" }} \
             $0 ~ re {{ print substr($0, 1, index($0, \"=\")) v; done = 1; next }} {{ print }} \
             END {{ if (!done) print k \"=\" v }}' \"$f\" > \"$t\" && mv -f \"$t\" \"$f\" || {{ rm -f \"$t\"; false; }}; }}",
            file = quote(&self.tag_file),
            var = quote(&self.tag_variable),
            tag = quote(tag),
        )
    }

    /// Every service of `app.services`, quoted, for one compose command.
    fn all_services(&self) -> String {
        self.services.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" ")
    }

    fn up_script(&self, tag: &str) -> String {
        format!("{} up -d --no-deps {}", self.with_tag(tag), self.all_services())
    }

    fn user_command(&self, text: &str) -> String {
        match &self.workdir {
            Some(dir) => format!("cd {} && {text}", quote(dir)),
            None => text.to_string(),
        }
    }

    /// `SERVICE STATUS RESTARTING RESTART_COUNT HEALTH` of each service's container (`SERVICE
    /// none` when it has none).
    fn settle_script(&self) -> String {
        format!(
            "for s in {}; do id=$({} ps -a -q \"$s\" 2>/dev/null | head -n 1); if [ -z \"$id\" ]; then echo \"$s none\"; \
             else printf '%s ' \"$s\"; docker inspect --format '{{{{.State.Status}}}} {{{{.State.Restarting}}}} {{{{.RestartCount}}}} \
             {{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{else}}}}no-healthcheck{{{{end}}}}' \"$id\"; fi; done",
            self.all_services(),
            self.base
        )
    }

    /// Every command this runtime runs, for snapshot tests.
    pub fn scripts(&self, tag: &str) -> Vec<(&'static str, String)> {
        let actions = [
            Action::CurrentTag,
            Action::Pull(tag),
            Action::Deploy(tag),
            Action::Stop,
            Action::Status,
            Action::Logs(30),
        ];
        let mut out = vec![("validate", self.config_script())];
        out.extend(actions.iter().filter_map(|a| Some((a.key(), self.cmd(*a)?.script))));
        out.push(("services", self.services_script()));
        out.push(("settle", self.settle_script()));
        out.push((
            "migrate",
            self.tool_cmd("migrate", "deploy-guard-migrate-abc1234", tag, "npm run migration:run").script,
        ));
        out.push(("tool stop", self.tool_stop("deploy-guard-migrate-abc1234").expect("compose").script));
        out
    }

    fn config_script(&self) -> String {
        format!(
            "[ -f {file} ] || {{ echo 'deploy-guard: no such file' >&2; exit 3; }}; {} config --format json",
            self.with_tag(PROBE_TAG),
            file = quote(&self.compose_file)
        )
    }

    fn services_script(&self) -> String {
        format!("{} ps -a --format json", self.base)
    }

    /// Checks the configuration against the compose file on the target: it exists, defines
    /// `app.service`, and that service's image follows `app.tag_variable` (else a deploy would
    /// start the old image again). Run once per process by `current_tag` and `deploy`; `check`
    /// and the deploy preflight may call it first for an early, clear error.
    pub async fn validate(&self) -> Result<()> {
        self.validated.get_or_try_init(|| self.validate_now()).await.map(|_| ())
    }

    async fn validate_now(&self) -> Result<()> {
        let file = &self.compose_file;
        let out = exec::capture(self.exec.as_ref(), &self.command("compose config", self.config_script())).await?;
        if out.exit.code == Some(3) && out.exit.stderr_tail.contains("deploy-guard: no such file") {
            bail!("app.compose_file: {file} does not exist on {}", self.exec.describe());
        }
        out.exit.check(&format!("docker compose config of {file}"))?;
        let model: serde_json::Value = serde_json::from_str(&out.stdout)
            .with_context(|| format!("docker compose config of {file} printed no JSON model"))?;
        let services = model.get("services").and_then(|s| s.as_object()).cloned().unwrap_or_default();
        if !services.contains_key(&self.service) {
            bail!(
                "app.service: {:?} is not a service of {file} (it defines: {})",
                self.service,
                services.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        for name in &self.services[1..] {
            if !services.contains_key(name) {
                bail!(
                    "app.services: {name:?} is not a service of {file} (it defines: {})",
                    services.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        for name in &self.services {
            let image = services[name].get("image").and_then(|i| i.as_str()).unwrap_or("");
            if image_tag(image).as_deref() != Some(PROBE_TAG) {
                bail!(
                    "app.tag_variable: the image of service {name:?} in {file} does not follow {var} (with {var}={PROBE_TAG} it is {}): \
                     a deploy would start the same image again; write the image as `image: NAME:${{{var}}}` or set \
                     app.tag_variable to the variable it reads",
                    if image.is_empty() { "(no image)".to_string() } else { image.to_string() },
                    var = self.tag_variable,
                );
            }
        }
        Ok(())
    }

    /// The tag variable's value in the tag file, if set.
    async fn tag_in_env_file(&self) -> Result<Option<String>> {
        let script = format!("[ ! -e {f} ] || cat {f}", f = quote(&self.tag_file));
        let text = exec::run_ok(self.exec.as_ref(), &self.command("read the compose env file", script)).await?;
        Ok(envfile::parse(&text).into_iter().rev().find(|(k, _)| *k == self.tag_variable).map(|(_, v)| v))
    }

    /// Each service's state, image tag and health (`backend running, healthy, tag v2; …`), for
    /// `check`.
    pub async fn services_report(&self) -> Result<String> {
        self.validate().await?;
        let out = exec::run_ok(self.exec.as_ref(), &self.command("compose ps", self.services_script())).await?;
        let containers = parse_ps_json(&out)?;
        let config = exec::run_ok(
            self.exec.as_ref(),
            &self.command("compose services", format!("{} config --services", self.base)),
        )
        .await?;
        let mut parts = Vec::new();
        for service in config.lines().map(str::trim).filter(|s| !s.is_empty()) {
            let mine: Vec<&PsLine> = containers.iter().filter(|c| c.service == service).collect();
            if mine.is_empty() {
                parts.push(format!("{service} no container"));
            }
            for c in mine {
                parts.push(c.describe());
            }
        }
        Ok(parts.join("; "))
    }
}

/// One container of `docker compose ps --format json`.
#[derive(Debug, PartialEq, Eq)]
pub struct PsLine {
    pub service: String,
    pub state: String,
    pub health: String,
    pub image: String,
    pub exit_code: i64,
}

impl PsLine {
    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.service, self.state);
        if self.state == "exited" {
            s.push_str(&format!(" (exit {})", self.exit_code));
        }
        if !self.health.is_empty() {
            s.push_str(&format!(", {}", self.health));
        }
        match image_tag(&self.image) {
            Some(t) => s.push_str(&format!(", tag {t}")),
            None => s.push_str(&format!(", image {}", self.image)),
        }
        s
    }
}

/// `docker compose ps --format json`: one object per line (Compose ≥ 2.21) or one array.
pub fn parse_ps_json(text: &str) -> Result<Vec<PsLine>> {
    let text = text.trim();
    let values: Vec<serde_json::Value> = if text.starts_with('[') {
        serde_json::from_str(text).context("docker compose ps printed bad JSON")?
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("docker compose ps printed bad JSON"))
            .collect::<Result<_>>()?
    };
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    Ok(values
        .iter()
        .map(|v| PsLine {
            service: s(v, "Service"),
            state: s(v, "State"),
            health: s(v, "Health"),
            image: s(v, "Image"),
            exit_code: v.get("ExitCode").and_then(|x| x.as_i64()).unwrap_or(0),
        })
        .collect())
}

/// The tag of an image reference (`registry:5000/org/app:v2` → `v2`); none for a digest or a
/// reference without a tag.
pub fn image_tag(image: &str) -> Option<String> {
    let image = image.trim();
    if image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next()?;
    last.split_once(':').map(|(_, t)| t.to_string()).filter(|t| !t.is_empty())
}

/// A line of `settle_script` for a service that does not run steadily, described; none when it does.
fn unsteady_service(line: &str) -> Option<String> {
    let mut p = line.split_whitespace();
    let service = p.next()?;
    let (status, restarting, restarts, health) = (p.next(), p.next(), p.next(), p.next());
    let steady = status == Some("running")
        && restarting == Some("false")
        && restarts == Some("0")
        && matches!(health, Some("healthy" | "no-healthcheck"));
    (!steady).then(|| match status {
        None | Some("none") => format!("{service} has no container"),
        Some(s) => format!(
            "{service} {s}{}{}",
            restarts.filter(|r| *r != "0").map(|r| format!(", {r} restarts")).unwrap_or_default(),
            health.filter(|h| *h != "no-healthcheck").map(|h| format!(", {h}")).unwrap_or_default()
        ),
    })
}

/// What `current_tag_script` printed: the image's tag when the container runs steadily; `None`
/// when there is no container, or it is restarting, exited or has restarted (a crash loop).
fn steady_container_tag(line: &str) -> (Option<String>, Option<String>) {
    let mut parts = line.split_whitespace();
    let (status, restarting, restarts, image) = (parts.next(), parts.next(), parts.next(), parts.next());
    let tag = image.and_then(image_tag);
    let steady = status == Some("running") && restarting == Some("false") && restarts == Some("0");
    if steady {
        (tag, None)
    } else {
        (None, tag)
    }
}

#[async_trait]
impl Runtime for Compose {
    fn executor(&self) -> &dyn Executor {
        self.exec.as_ref()
    }

    /// Deploy starts the tag, then writes it into the env file compose reads.
    fn cmd(&self, action: Action<'_>) -> Option<Cmd> {
        let (label, script) = match action {
            Action::CurrentTag => ("compose current tag", self.current_tag_script()),
            // What `up` would pull (an image not on the host yet); a service compose builds is
            // left to `up`.
            Action::Pull(tag) => (
                "compose pull",
                format!(
                    "{} pull --quiet --policy missing --ignore-buildable {}",
                    self.with_tag(tag),
                    self.all_services()
                ),
            ),
            Action::Deploy(tag) => {
                ("compose up", format!("{} && {}", self.up_script(tag), self.persist_tag_script(tag)))
            }
            Action::Stop => ("compose stop", format!("{} stop {}", self.base, self.all_services())),
            Action::Status => ("compose ps", format!("{} ps -a {}", self.base, self.all_services())),
            Action::Logs(n) => {
                ("compose logs", format!("{} logs --no-color --tail {n} {}", self.base, self.all_services()))
            }
            Action::PauseWrites => ("pause writes", self.user_command(self.pause_writes.as_deref()?)),
            Action::ResumeWrites => ("resume writes", self.user_command(self.resume_writes.as_deref()?)),
        };
        Some(self.command(label, script))
    }

    /// The image's tag when the container runs steadily (see [`Runtime::current_tag`] here).
    fn parse_tag(&self, out: &str) -> Option<String> {
        steady_container_tag(out).0
    }

    /// The running container's tag; when the container is gone or crash-looping, the tag
    /// variable of the env file (what compose starts next), else the container's tag.
    async fn previous_tag(&self) -> Result<Option<(String, TagSource)>> {
        self.validate().await?;
        let out = self.run(Action::CurrentTag).await?;
        let (steady, unsteady) = steady_container_tag(&out);
        if let Some(tag) = steady {
            return Ok(Some((tag, TagSource::Running)));
        }
        let from_env = self.tag_in_env_file().await?;
        if from_env.is_some() {
            tracing::info!(
                "{} has no steadily running container ({}): the previous tag is {}={} from {}",
                self.service,
                out.trim().split(' ').next().filter(|s| !s.is_empty()).unwrap_or("none"),
                self.tag_variable,
                from_env.as_deref().unwrap_or(""),
                self.tag_file
            );
            return Ok(from_env.map(|t| (t, TagSource::EnvFile)));
        }
        Ok(unsteady.map(|t| (t, TagSource::Unsteady)))
    }

    async fn settled(&self, timeout: Duration, interval: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let cmd = self.command("compose services settled", self.settle_script());
        // Two steady readings in a row: a container that just restarted can look "running".
        let mut steady_before = false;
        loop {
            let out = exec::run_ok(self.exec.as_ref(), &cmd).await?;
            let unsteady: Vec<String> = out.lines().filter_map(unsteady_service).collect();
            if unsteady.is_empty() && steady_before {
                return Ok(format!("{} running steadily", self.services.join(", ")));
            }
            steady_before = unsteady.is_empty();
            if tokio::time::Instant::now() + interval > deadline {
                bail!("not every service runs steadily: {}", unsteady.join("; "));
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn deploy(&self, tag: &str) -> Result<()> {
        self.validate().await?;
        self.run(Action::Deploy(tag)).await.map(|_| ())
    }

    async fn validate(&self) -> Result<()> {
        Compose::validate(self).await
    }

    async fn check(&self) -> Result<String> {
        self.services_report().await
    }

    /// Runs the tool in a one-off container of the NEW image with its entrypoint overridden, so a
    /// revert works even when the service will not start or its entrypoint crashes (the
    /// runbook's "start it just long enough to revert"). The container is labelled with `name`
    /// and this deployment.
    fn tool_cmd(&self, label: &str, name: &str, tag: &str, script: &str) -> Cmd {
        let labels = self.tool_labels(name).map(|l| format!("--label {}", quote(&l)));
        Cmd::new(
            label,
            format!(
                "{} run --rm --no-deps -T {} --entrypoint sh {} -c {}",
                self.with_tag(tag),
                labels.join(" "),
                quote(&self.service),
                quote(script)
            ),
        )
    }

    /// `docker compose run` leaves its container running when the client is killed or loses its
    /// channel: remove it (its processes killed) and wait until it is gone; prints how many.
    fn tool_stop(&self, name: &str) -> Option<Cmd> {
        let filters = self.tool_labels(name).map(|l| format!("--filter {}", quote(&format!("label={l}"))));
        let list = format!("docker ps -aq {}", filters.join(" "));
        Some(self.command(
            "remove the tool's container",
            remove_and_wait(&list, "docker rm -f -v $ids >/dev/null 2>&1", &list),
        ))
    }
}

/// Runs `remove` on the ids `list` prints (`$ids`), then waits up to 30 s until `left` prints
/// none of the tool's containers; prints how many ids there were.
pub(super) fn remove_and_wait(list: &str, remove: &str, left: &str) -> String {
    format!(
        "ids=$({list}) || exit 1; [ -z \"$ids\" ] || {remove}; i=0; \
         while :; do left=$({left}) || exit 1; [ -n \"$left\" ] || break; i=$((i + 1)); \
         [ $i -le 30 ] || {{ echo \"deploy-guard: the tool's container is still there after 30 s: $left\" >&2; exit 1; }}; \
         sleep 1; done; echo $ids | wc -w"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("ghcr.io/station/backend:v2.3.1\n").as_deref(), Some("v2.3.1"));
        assert_eq!(image_tag("registry:5000/app:1.0").as_deref(), Some("1.0"));
        assert_eq!(image_tag("registry:5000/app"), None);
        assert_eq!(image_tag("app@sha256:abc"), None);
        assert_eq!(image_tag(""), None);
    }

    #[test]
    fn a_crash_looping_container_is_not_trusted_for_the_tag() {
        assert_eq!(steady_container_tag("running false 0 app:v1\n"), (Some("v1".into()), None));
        assert_eq!(steady_container_tag("restarting true 4 app:v2\n"), (None, Some("v2".into())));
        assert_eq!(steady_container_tag("running false 3 app:v2\n"), (None, Some("v2".into())));
        assert_eq!(steady_container_tag("exited false 0 app:v2\n"), (None, Some("v2".into())));
        assert_eq!(steady_container_tag(""), (None, None));
    }

    #[test]
    fn ps_json_lines_and_arrays() {
        let line = r#"{"Service":"backend","State":"running","Health":"healthy","Image":"app:v2","ExitCode":0}"#;
        let want = vec![PsLine {
            service: "backend".into(),
            state: "running".into(),
            health: "healthy".into(),
            image: "app:v2".into(),
            exit_code: 0,
        }];
        assert_eq!(parse_ps_json(&format!("{line}\n")).unwrap(), want);
        assert_eq!(parse_ps_json(&format!("[{line}]")).unwrap(), want);
        assert_eq!(want[0].describe(), "backend running, healthy, tag v2");
        assert!(parse_ps_json("").unwrap().is_empty());
    }

    #[test]
    fn tag_variable_must_be_a_variable_name() {
        let app: crate::config::App = serde_yaml::from_str(
            "runtime: compose\ncompose_file: /c.yml\nservice: b\ntag_variable: 'A B'\nhealth: {url: 'http://x'}",
        )
        .unwrap();
        let e = Compose::from_config(Arc::new(crate::exec::Local), &app, Duration::from_secs(1)).err().unwrap();
        assert!(e.to_string().contains("not an environment variable name"), "{e}");
    }

    #[test]
    fn commands_as_data() {
        let app: crate::config::App = serde_yaml::from_str(
            "runtime: compose\ncompose_file: /opt/station/docker-compose.prod.yml\nservice: backend\n\
             env_file: /opt/station/.env.production\ntag_variable: STATION_VERSION\nhealth: {url: 'http://x'}",
        )
        .unwrap();
        let c = Compose::from_config(Arc::new(crate::exec::Local), &app, Duration::from_secs(60)).unwrap();
        let text: String = c.scripts("v2.4.0").iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        insta::assert_snapshot!(text);
    }
}
