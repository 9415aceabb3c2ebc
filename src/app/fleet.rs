//! The hosts the app runs on (`target.hosts`): one runtime and one health check per host, the
//! primary first. With one host the fleet is that host, and nothing is said about hosts.

use std::sync::Arc;

use super::{Health, Runtime};
use crate::exec::Cmd;

/// One host of the fleet.
pub struct Host {
    /// How the host is named in the journal, the summary and errors (its address, `:port` when
    /// the port is not 22).
    pub name: String,
    /// How a person reaches it: `ssh` arguments (`-p 2222 deploy@web2`).
    pub ssh: String,
    pub runtime: Arc<dyn Runtime>,
    pub health: Arc<Health>,
}

pub struct Fleet {
    hosts: Vec<Host>,
}

impl Fleet {
    /// `hosts`: the primary first; never empty.
    pub fn new(hosts: Vec<Host>) -> Fleet {
        assert!(!hosts.is_empty(), "a fleet has at least its primary host");
        Fleet { hosts }
    }

    /// Where migrations, pg_dump and psql run (and the app too).
    pub fn primary(&self) -> &Host {
        &self.hosts[0]
    }

    /// Every host, the primary first: the rollout's order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// More than one host: steps say which host each command is for.
    pub fn several(&self) -> bool {
        self.hosts.len() > 1
    }

    pub fn names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    /// A command as people read it: with several hosts, one not marked with its host runs on the
    /// primary, and says so.
    pub fn shown(&self, c: &Cmd) -> String {
        if self.several() && c.on.is_none() && !c.here {
            let mut c = c.clone();
            c.on = Some(self.primary().ssh.clone());
            return c.shell_text();
        }
        c.shell_text()
    }

    /// The commands `f` gives for each host, in rollout order; with several hosts each is marked
    /// with its host, so the plan and the runbook show where it runs.
    pub fn each(&self, f: impl Fn(&Host) -> Vec<Cmd>) -> Vec<Cmd> {
        self.hosts
            .iter()
            .flat_map(|h| {
                let on = self.several().then(|| h.ssh.clone());
                f(h).into_iter().map(move |mut c| {
                    c.on = on.clone().filter(|_| !c.here);
                    c
                })
            })
            .collect()
    }
}
