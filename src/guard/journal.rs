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
}

impl HostTag {
    /// Runs its previous tag, as before the deploy: a rollback leaves it alone.
    pub fn as_before(&self) -> bool {
        self.running.is_some() && self.running == self.previous
    }
}

impl Journal {
    /// Records what `host` runs now (`None`: not known, or stopped).
    pub fn set_running(&mut self, host: &str, tag: Option<&str>) {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.host == host) {
            h.running = tag.map(str::to_string);
        }
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
}
