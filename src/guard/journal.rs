//! The journal: every step written down before it runs and when it ends, so a rerun, a cancelled
//! job or a manual rollback knows where things stand. Times are given by the caller.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Step;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryState {
    /// Started and not (yet) ended: if a run finds this, it was interrupted here.
    Running,
    Ok,
    /// Ended with a problem the tree carries on past.
    Warning,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub step: Step,
    pub state: EntryState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What happened, in a sentence (errors in full).
    #[serde(default)]
    pub detail: String,
}

impl Entry {
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at.map(|f| (f - self.started_at).num_milliseconds())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub entries: Vec<Entry>,
    /// With several hosts (`target.hosts`): what each runs, so a rollback from a new process
    /// knows which hosts still need the previous tag. Empty with one host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostTag>,
}

/// One host of several: the tag it ran before the deploy, and the one it runs now as far as the
/// run knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTag {
    pub host: String,
    pub previous: Option<String>,
    /// `None`: not known to run anything steadily (a command on it was cut off, or the app there
    /// was stopped or paused for a restore).
    pub running: Option<String>,
    /// Set when a rollback found the host taken out of `target.hosts` before it was returned:
    /// `running` is what the journal last knew, never verified since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<Abandoned>,
}

/// A host a rollback left as it was, because the config no longer lists it (gone for good).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abandoned {
    pub at: DateTime<Utc>,
}

impl HostTag {
    /// Runs its previous tag, as before the deploy: a rollback leaves it alone.
    pub fn as_before(&self) -> bool {
        self.running.is_some() && self.running == self.previous
    }

    /// What the journal last knew of it, for a person: `tag` is the deploy's new tag.
    pub fn last_known(&self, tag: Option<&str>) -> String {
        let tag = tag.unwrap_or("the new tag");
        match &self.running {
            Some(t) if self.as_before() => format!("ran {t}, as before the deploy"),
            Some(t) => format!("ran {t}"),
            None => format!("unknown, a command there was cut off: it may still run {tag}, or be stopped"),
        }
    }
}

/// What a rollback does on one host the config lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WayBack {
    /// Start a tag there: its own previous one (`None`: the run's).
    Start(Option<String>),
    /// It runs its previous tag, as before the deploy, and was never stopped.
    AsBefore,
    /// The deploy never touched it (added to `target.hosts` after): a rollback has nothing to
    /// return there, and starting the previous tag would change a host the deploy did not.
    NotInDeploy,
}

impl Journal {
    /// Records what `host` runs now (`None`: not known, or stopped). A host reached again is no
    /// longer abandoned.
    pub fn set_running(&mut self, host: &str, tag: Option<&str>) {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.host == host) {
            h.running = tag.map(str::to_string);
            h.abandoned = None;
        }
    }

    /// What a rollback does on `host`, which the config lists (`primary`: as its primary). A
    /// journal without hosts is a deploy to one host, the primary.
    pub fn way_back(&self, host: &str, primary: bool) -> WayBack {
        if self.hosts.is_empty() {
            return if primary { WayBack::Start(None) } else { WayBack::NotInDeploy };
        }
        match self.host(host) {
            None => WayBack::NotInDeploy,
            Some(h) if h.as_before() => WayBack::AsBefore,
            Some(h) => WayBack::Start(h.previous.clone()),
        }
    }

    /// The hosts of the deploy that `listed` (the config's hosts now) no longer names. Those
    /// not as before the deploy are marked abandoned at `at` (once): nothing returns them, and
    /// their state stays what the journal last knew.
    pub fn abandon_unlisted(&mut self, listed: &[&str], at: DateTime<Utc>) -> Vec<HostTag> {
        let mut gone = Vec::new();
        for h in self.hosts.iter_mut().filter(|h| !listed.contains(&h.host.as_str())) {
            if !h.as_before() && h.abandoned.is_none() {
                h.abandoned = Some(Abandoned { at });
            }
            gone.push(h.clone());
        }
        gone
    }

    pub fn host(&self, host: &str) -> Option<&HostTag> {
        self.hosts.iter().find(|h| h.host == host)
    }

    pub fn begin(&mut self, step: Step, at: DateTime<Utc>) {
        self.entries.push(Entry {
            step,
            state: EntryState::Running,
            started_at: at,
            finished_at: None,
            detail: String::new(),
        });
    }

    /// Ends the last entry for `step`.
    pub fn end(&mut self, step: Step, state: EntryState, detail: impl Into<String>, at: DateTime<Utc>) {
        if let Some(e) = self.entries.iter_mut().rev().find(|e| e.step == step && e.state == EntryState::Running) {
            e.state = state;
            e.finished_at = Some(at);
            e.detail = detail.into();
        }
    }

    /// Takes back the last entry begun for `step`: it never started after all.
    pub fn withdraw(&mut self, step: Step) {
        if let Some(i) = self.entries.iter().rposition(|e| e.step == step && e.state == EntryState::Running) {
            self.entries.remove(i);
        }
    }

    /// The step a previous run was in when it stopped without ending it.
    pub fn interrupted(&self) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.state == EntryState::Running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_finds_interruptions() {
        let t = DateTime::parse_from_rfc3339("2026-05-10T15:00:00Z").unwrap().with_timezone(&Utc);
        let mut j = Journal::default();
        j.begin(Step::Backup, t);
        j.end(Step::Backup, EntryState::Ok, "3 MiB", t + chrono::Duration::seconds(2));
        j.begin(Step::Migrate, t);
        assert_eq!(j.interrupted().unwrap().step, Step::Migrate);
        assert_eq!((j.entries[0].state, j.entries[0].duration_ms()), (EntryState::Ok, Some(2000)));
        assert_eq!((j.entries[1].state, j.entries[1].duration_ms()), (EntryState::Running, None));
        // A step begun and then not started after all leaves no trace.
        j.withdraw(Step::Migrate);
        assert_eq!(j.interrupted(), None);
        assert_eq!(j.entries.len(), 1);
    }

    fn host(name: &str, previous: &str, running: Option<&str>) -> HostTag {
        HostTag {
            host: name.into(),
            previous: Some(previous.into()),
            running: running.map(Into::into),
            abandoned: None,
        }
    }

    #[test]
    fn a_rollback_returns_only_the_hosts_the_deploy_changed() {
        let j = Journal {
            hosts: vec![host("web1", "v1", Some("v2")), host("web2", "v0", None), host("web3", "v1", Some("v1"))],
            ..Journal::default()
        };
        assert_eq!(j.way_back("web1", true), WayBack::Start(Some("v1".into())));
        assert_eq!(j.way_back("web2", false), WayBack::Start(Some("v0".into())), "each to its own tag");
        assert_eq!(j.way_back("web3", false), WayBack::AsBefore);
        // Added to target.hosts after the deploy: never given the previous tag.
        assert_eq!(j.way_back("web4", false), WayBack::NotInDeploy);
        // A deploy to one host: the primary was it, any other host came later.
        let one = Journal::default();
        assert_eq!(one.way_back("web1", true), WayBack::Start(None));
        assert_eq!(one.way_back("web2", false), WayBack::NotInDeploy);
    }

    #[test]
    fn a_host_taken_out_of_the_config_is_abandoned_as_last_known_until_reached_again() {
        let t = DateTime::parse_from_rfc3339("2026-05-10T15:00:00Z").unwrap().with_timezone(&Utc);
        let mut j = Journal {
            hosts: vec![host("web1", "v1", Some("v1")), host("web2", "v1", None), host("web3", "v1", Some("v1"))],
            ..Journal::default()
        };
        assert!(j.abandon_unlisted(&["web1", "web2", "web3"], t).is_empty());
        // web2 was cut off mid-deploy, web3 never touched; both taken out of the config.
        let gone = j.abandon_unlisted(&["web1"], t);
        assert_eq!(gone.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), vec!["web2", "web3"]);
        assert_eq!(j.host("web2").unwrap().abandoned, Some(Abandoned { at: t }));
        assert_eq!(j.host("web2").unwrap().running, None, "its state is left as last known");
        assert_eq!(j.host("web3").unwrap().abandoned, None, "as before the deploy: nothing was left undone");
        assert!(j.host("web2").unwrap().last_known(Some("v2")).contains("may still run v2"));
        // A second rollback keeps the first time it was abandoned.
        j.abandon_unlisted(&["web1"], t + chrono::Duration::hours(1));
        assert_eq!(j.host("web2").unwrap().abandoned, Some(Abandoned { at: t }));
        // Back in the config and started again: no longer abandoned.
        j.set_running("web2", Some("v1"));
        assert_eq!(j.host("web2").unwrap().abandoned, None);
        assert!(j.host("web2").unwrap().as_before());
    }
}
