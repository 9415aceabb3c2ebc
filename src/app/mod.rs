//! The app's runtime: start a tag, stop, which tag runs, status, logs; and the health check.
//! A runtime says which command each action is; running them is the same for every runtime.

pub mod compose;
pub mod fleet;
pub mod health;
pub mod kubernetes;
pub mod shell;
pub mod swarm;

use anyhow::{bail, Result};
use async_trait::async_trait;

use crate::exec::{self, Cmd, Executor};

pub use fleet::{Fleet, Host};
pub use health::Health;
pub use shell::Shell;

/// What a runtime is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Print the tag running now.
    CurrentTag,
    /// Fetch this tag's image where it is not there yet (before anything changes).
    Pull(&'a str),
    /// Start this tag (replacing what runs).
    Deploy(&'a str),
    Stop,
    /// One line on the app's state.
    Status,
    /// The last N log lines.
    Logs(usize),
    /// Read-only mode on (`app.commands.pause_writes`), instead of stopping before a restore.
    PauseWrites,
    /// Read-only mode off, after the previous tag is started again.
    ResumeWrites,
}

impl Action<'_> {
    /// The config key that names the command for a shell runtime.
    pub fn key(&self) -> &'static str {
        match self {
            Action::CurrentTag => "current_tag",
            Action::Pull(_) => "pull",
            Action::Deploy(_) => "deploy",
            Action::Stop => "stop",
            Action::Status => "status",
            Action::Logs(_) => "logs",
            Action::PauseWrites => "pause_writes",
            Action::ResumeWrites => "resume_writes",
        }
    }
}

/// Where the tag a rollback redeploys was read, for the summary: the running container when it
/// runs steadily; when it is gone or crash-looping, the compose env file, then the last deploy
/// the backup store's journal saw succeed, then GitHub's deployments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagSource {
    /// `--previous-tag` / `--to-tag`.
    Given,
    Running,
    EnvFile,
    Journal,
    GitHub,
    /// The image of a container that is not running steadily: used only when nothing else knows.
    Unsteady,
    /// The deploy's own manifest (a manual rollback).
    Manifest,
}

impl TagSource {
    pub fn describe(&self) -> &'static str {
        match self {
            TagSource::Given => "given on the command line",
            TagSource::Running => "the running app",
            TagSource::EnvFile => "the compose env file's tag variable (no steadily running container)",
            TagSource::Journal => "the last successful deploy in the backup store's journal",
            TagSource::GitHub => "GitHub's last successful deployment",
            TagSource::Unsteady => "the image of a container that is not running steadily (nothing else knew)",
            TagSource::Manifest => "the deploy's manifest",
        }
    }
}

/// One service as it ran before the deploy, recorded in the manifest so that a rollback from
/// another process puts back exactly that (swarm: its image and its replica count).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceState {
    pub service: String,
    /// The image reference of its spec, as it was (`app:v1`, with its digest when it had one).
    pub image: String,
    /// Replicas wanted; none for a global service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
}

impl ServiceState {
    /// The name and image reach commands: both must be plain (a manifest is read from a store).
    pub fn check(&self) -> Result<()> {
        let plain = |s: &str, extra: &[u8]| {
            !s.is_empty()
                && s.len() <= 512
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b))
        };
        if !plain(&self.service, b"") || self.service.starts_with(['-', '.']) {
            bail!("service {:?} is not a service name", self.service);
        }
        if !plain(&self.image, b"/:@") || self.image.starts_with('-') {
            bail!("the image {:?} of {} is not an image reference", self.image, self.service);
        }
        Ok(())
    }
}

/// Drives the app on the target.
#[async_trait]
pub trait Runtime: Send + Sync {
    fn executor(&self) -> &dyn Executor;
    /// The command for `action`, exactly as it runs (None: not configured).
    fn cmd(&self, action: Action<'_>) -> Option<Cmd>;
    /// The tag in what the current-tag command printed.
    fn parse_tag(&self, out: &str) -> Option<String>;
    /// The commands a deploy of `tag` runs, in order (swarm: one per service).
    fn deploy_cmds(&self, tag: &str) -> Vec<Cmd> {
        self.cmd(Action::Deploy(tag)).into_iter().collect()
    }

    /// The commands a rollback's redeploy of `tag` runs, given what was recorded before the
    /// deploy (swarm: each service's recorded image and replicas).
    fn redeploy_cmds(&self, tag: &str, _recorded: &[ServiceState]) -> Vec<Cmd> {
        self.deploy_cmds(tag)
    }

    /// A command that runs `script` (a migration tool) with the code of `tag`; what it starts is
    /// known by `name` (compose: its one-off container's label), for [`Runtime::tool_stop`].
    fn tool_cmd(&self, label: &str, name: &str, tag: &str, script: &str) -> Cmd;

    /// A command that ends what [`Runtime::tool_cmd`] started as `name` when it outlived its
    /// command (a timeout, a lost channel), returns once it is gone and prints how many it ended;
    /// `None`: nothing there runs on without its command.
    fn tool_stop(&self, _name: &str) -> Option<Cmd> {
        None
    }

    /// The tag running now, if the runtime can tell.
    async fn current_tag(&self) -> Result<Option<String>> {
        Ok(self.previous_tag().await?.map(|(tag, _)| tag))
    }

    /// The tag running now and where it was read.
    async fn previous_tag(&self) -> Result<Option<(String, TagSource)>> {
        match self.cmd(Action::CurrentTag) {
            Some(c) => Ok(self.parse_tag(&exec::run_ok(self.executor(), &c).await?).map(|t| (t, TagSource::Running))),
            None => Ok(None),
        }
    }

    /// The command [`Runtime::settled`] polls, for the plan (None: it runs none).
    fn settle_cmd(&self) -> Option<Cmd> {
        None
    }

    /// Waits until every service runs steadily (compose: each container running, not
    /// restarting, healthy where it has a healthcheck); what was found, for the journal.
    async fn settled(&self, _timeout: std::time::Duration, _interval: std::time::Duration) -> Result<String> {
        Ok(String::new())
    }

    async fn deploy(&self, tag: &str) -> Result<()> {
        self.run(Action::Deploy(tag)).await.map(|_| ())
    }

    /// Each service's image and replicas now, to record before anything changes (swarm); empty
    /// where the runtime has nothing to put back but the tag.
    async fn services(&self) -> Result<Vec<ServiceState>> {
        Ok(Vec::new())
    }

    /// Runs [`Runtime::redeploy_cmds`]: the previous tag again, as recorded.
    async fn redeploy(&self, tag: &str, _recorded: &[ServiceState]) -> Result<()> {
        self.deploy(tag).await
    }

    /// Stops every writer; what was done, for the journal ("" for nothing more to say).
    async fn stop(&self) -> Result<String> {
        match self.cmd(Action::Stop) {
            Some(c) => exec::run_ok(self.executor(), &c).await.map(|_| String::new()),
            None => bail!("app.commands.stop is not set: the app was left running"),
        }
    }

    async fn status(&self) -> Result<String> {
        match self.cmd(Action::Status) {
            Some(c) => Ok(exec::run_ok(self.executor(), &c).await?.trim().to_string()),
            None => Ok("(app.commands.status not set)".into()),
        }
    }

    async fn logs(&self, lines: usize) -> Result<String> {
        match self.cmd(Action::Logs(lines)) {
            Some(c) => exec::run_ok(self.executor(), &c).await,
            None => Ok(String::new()),
        }
    }

    /// Checks the runtime's settings against the target (for `check` and the deploy preflight:
    /// an error here means nothing may be touched).
    async fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// What `check` reports about the app (compose: every service's state, image tag and health).
    async fn check(&self) -> Result<String> {
        self.status().await
    }

    /// Runs the command for `action`; an unconfigured one is an error naming its key.
    async fn run(&self, action: Action<'_>) -> Result<String> {
        match self.cmd(action) {
            Some(c) => exec::run_ok(self.executor(), &c).await,
            None => bail!("app.commands.{} is not set", action.key()),
        }
    }
}
