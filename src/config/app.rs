//! `app`: how the app runs (`runtime` and its settings) and how its health is checked.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Kubernetes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Compose,
    Shell,
    /// Services of a Docker Swarm stack (`docker service`), on a manager node.
    Swarm,
    /// Deployments in a namespace, driven with `kubectl` from here.
    Kubernetes,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub runtime: RuntimeKind,
    /// `runtime: shell`: the commands that drive the app.
    #[serde(default)]
    pub commands: ShellCommands,
    /// Required but for kubernetes (its rollouts' readiness is checked anyway).
    #[serde(default)]
    pub health: Health,
    /// Directory the app's commands (and migration commands) run in.
    pub workdir: Option<String>,
    pub compose_file: Option<String>,
    pub service: Option<String>,
    /// `runtime: compose` or `swarm`: every service that writes to the database (default:
    /// `[service]`): all are stopped before a restore and all started on a tag together.
    #[serde(default)]
    pub services: Vec<String>,
    pub env_file: Option<String>,
    pub tag_variable: Option<String>,
    pub kubernetes: Option<Kubernetes>,
    /// With `target.hosts`: one host at a time (default) or all at once.
    #[serde(default)]
    pub rollout: super::Rollout,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShellCommands {
    /// Starts the app at `{tag}`.
    pub deploy: Option<String>,
    pub stop: Option<String>,
    /// Prints the tag running now.
    pub current_tag: Option<String>,
    pub status: Option<String>,
    /// Prints the app's recent log lines (`{lines}` is replaced by a count).
    pub logs: Option<String>,
    /// Puts the app in read-only mode (any runtime): used instead of stopping it before a restore.
    pub pause_writes: Option<String>,
    /// Ends read-only mode: run after the previous tag is started again.
    pub resume_writes: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// HTTP(S) URL that answers 2xx when the app is healthy.
    pub url: Option<String>,
    /// Command that exits 0 when the app is healthy.
    pub command: Option<String>,
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health { url: None, command: None, timeout: default_health_timeout(), interval: default_health_interval() }
    }
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_health_interval() -> Duration {
    Duration::from_secs(2)
}
