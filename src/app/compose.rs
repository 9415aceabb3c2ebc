//! `app.runtime: compose`: the service runs under `docker compose` on the target; the image tag
//! is chosen by an environment variable the compose file interpolates (`image: app:${TAG}`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::{Action, Runtime};
use crate::exec::{quote, Cmd, Executor};

pub struct Compose {
    exec: Arc<dyn Executor>,
    /// `docker compose -f FILE [--env-file ENV]`
    base: String,
    service: String,
    tag_variable: String,
    timeout: Duration,
}

/// `docker compose -f FILE [--env-file ENV]`, quoted.
pub fn base_command(compose_file: &str, env_file: Option<&str>) -> String {
    let mut base = format!("docker compose -f {}", quote(compose_file));
    if let Some(e) = env_file {
        base.push_str(&format!(" --env-file {}", quote(e)));
    }
    base
}

impl Compose {
    pub fn from_config(exec: Arc<dyn Executor>, app: &crate::config::App, timeout: Duration) -> Result<Compose> {
        let need = |v: &Option<String>, k: &str| {
            v.clone().ok_or_else(|| anyhow::anyhow!("{k}: required with app.runtime: compose"))
        };
        Ok(Compose {
            exec,
            base: base_command(&need(&app.compose_file, "app.compose_file")?, app.env_file.as_deref()),
            service: need(&app.service, "app.service")?,
            tag_variable: need(&app.tag_variable, "app.tag_variable")?,
            timeout,
        })
    }

    fn with_tag(&self, tag: &str) -> String {
        format!("{}={} {}", self.tag_variable, quote(tag), self.base)
    }

    fn current_tag_script(&self) -> String {
        format!(
            "id=$({} ps -q {} 2>/dev/null | head -n 1); [ -n \"$id\" ] || exit 0; docker inspect --format '{{{{.Config.Image}}}}' \"$id\"",
            self.base,
            quote(&self.service)
        )
    }

    /// Every command this runtime runs, for snapshot tests.
    pub fn scripts(&self, tag: &str) -> Vec<(&'static str, String)> {
        let actions = [Action::CurrentTag, Action::Deploy(tag), Action::Stop, Action::Status, Action::Logs(30)];
        let mut out: Vec<(&'static str, String)> =
            actions.iter().filter_map(|a| Some((a.key(), self.cmd(*a)?.script))).collect();
        out.push(("migrate", self.tool_cmd("migrate", tag, "npm run migration:run").script));
        out
    }
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

impl Runtime for Compose {
    fn executor(&self) -> &dyn Executor {
        self.exec.as_ref()
    }

    fn cmd(&self, action: Action<'_>) -> Option<Cmd> {
        let service = quote(&self.service);
        let (label, script) = match action {
            Action::CurrentTag => ("compose current tag", self.current_tag_script()),
            Action::Deploy(tag) => ("compose up", format!("{} up -d --no-deps {service}", self.with_tag(tag))),
            Action::Stop => ("compose stop", format!("{} stop {service}", self.base)),
            Action::Status => ("compose ps", format!("{} ps -a {service}", self.base)),
            Action::Logs(n) => ("compose logs", format!("{} logs --no-color --tail {n} {service}", self.base)),
        };
        Some(Cmd::new(label, script).timeout(self.timeout))
    }

    fn parse_tag(&self, out: &str) -> Option<String> {
        image_tag(out)
    }

    /// Runs the tool in a one-off container of the NEW image, so a revert works even when the
    /// service will not start (the runbook's "start it just long enough to revert").
    fn tool_cmd(&self, label: &str, tag: &str, script: &str) -> Cmd {
        Cmd::new(
            label,
            format!("{} run --rm --no-deps -T {} sh -c {}", self.with_tag(tag), quote(&self.service), quote(script)),
        )
    }
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
