//! `target`: the host (or hosts, `target.hosts`) the app runs on, and how each is reached.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{default_command_timeout, default_connect_timeout, default_ssh_port};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// SSH host; omitted → commands run on this machine.
    pub host: Option<String>,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: Option<String>,
    pub known_hosts: Option<String>,
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub insecure_accept_any_host_key: bool,
    pub jump: Option<String>,
    /// The jump host's own pin (known_hosts lines); else its lines in `known_hosts`.
    pub jump_known_hosts: Option<String>,
    /// The jump host's own pin (`SHA256:…`); `fingerprint` pins the target only.
    pub jump_fingerprint: Option<String>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
    /// More hosts the app runs on (docs/HOSTS.md); `host` stays the one migrations run on.
    #[serde(default)]
    pub hosts: Vec<HostEntry>,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            host: None,
            port: default_ssh_port(),
            user: None,
            known_hosts: None,
            fingerprint: None,
            insecure_accept_any_host_key: false,
            jump: None,
            jump_known_hosts: None,
            jump_fingerprint: None,
            connect_timeout: default_connect_timeout(),
            command_timeout: default_command_timeout(),
            hosts: Vec::new(),
        }
    }
}

/// One more host of `target.hosts`: where to connect and how its key is pinned.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub known_hosts: Option<String>,
    pub fingerprint: Option<String>,
    pub jump: Option<String>,
    pub jump_known_hosts: Option<String>,
    pub jump_fingerprint: Option<String>,
}

impl Target {
    /// The primary's settings with `h`'s own: how to reach that host. A host that sets its own
    /// pin is pinned by it alone; else by its line in the primary's `known_hosts`.
    pub fn for_host(&self, h: &HostEntry) -> Target {
        let mut t = self.clone();
        t.hosts = Vec::new();
        t.host = Some(h.host.clone());
        t.port = h.port.unwrap_or(self.port);
        if let Some(u) = &h.user {
            t.user = Some(u.clone());
        }
        // A fingerprint pins one host: only known_hosts lines (one per host) are inherited.
        if h.known_hosts.is_some() || h.fingerprint.is_some() {
            t.known_hosts = h.known_hosts.clone();
        }
        t.fingerprint = h.fingerprint.clone();
        if let Some(j) = &h.jump {
            t.jump = Some(j.clone());
            t.jump_known_hosts = h.jump_known_hosts.clone();
            t.jump_fingerprint = h.jump_fingerprint.clone();
        }
        t
    }

    /// Every host the app runs on, the primary first, as `Target`s of their own.
    pub fn app_hosts(&self) -> Vec<Target> {
        std::iter::once(Target { hosts: Vec::new(), ..self.clone() })
            .chain(self.hosts.iter().map(|h| self.for_host(h)))
            .collect()
    }

    /// How a host is named in the journal, the summary and errors: its address, with the port
    /// when it is not 22.
    pub fn host_name(&self) -> String {
        let host = self.host.as_deref().unwrap_or("this machine");
        match self.port {
            22 => host.to_string(),
            p => format!("{host}:{p}"),
        }
    }
}

/// How a new tag reaches several hosts (`app.rollout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rollout {
    /// Host by host, each health-checked before the next is touched.
    #[default]
    OneAtATime,
    /// Every host started, then every host health-checked.
    AllAtOnce,
}
