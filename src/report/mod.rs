//! What happened, for people (markdown summary) and programs (JSON, Actions outputs).

pub mod actions;
pub mod summary;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::guard::{Entry, Outcome};

#[derive(Clone, Debug, Serialize)]
pub struct BackupInfo {
    /// Where the object is: store location + key.
    pub location: String,
    pub key: String,
    pub size: u64,
    pub dump_bytes: u64,
    pub sha256: String,
    pub verified: bool,
}

/// The report of one deploy or rollback.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub project: String,
    /// deployed, rolled-back, rollback-failed, aborted.
    pub result: String,
    /// none, revert, restore.
    pub path: String,
    pub exit_code: i32,
    pub headline: String,
    pub outcome: Outcome,
    pub sha: String,
    pub tag: Option<String>,
    pub previous_tag: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_secs: f64,
    /// From the first rollback step to the end.
    pub recovery_secs: Option<f64>,
    pub steps: Vec<Entry>,
    pub backup: Option<BackupInfo>,
    pub migrations_before: Vec<Value>,
    pub migrations_after: Option<Vec<Value>>,
    /// Schema differences found (`+` added since the backup, `-` missing).
    pub drift: Vec<String>,
    pub app_status: Option<String>,
    pub app_logs: Option<String>,
    /// The broken database, kept for forensics after a restore.
    pub kept_database: Option<String>,
    pub notes: Vec<String>,
    /// What a person runs next (set when a person must act).
    pub next_commands: Vec<String>,
}

impl Report {
    /// Outputs for `$GITHUB_OUTPUT`.
    pub fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("result", self.result.clone()),
            ("path", self.path.clone()),
            ("backup-key", self.backup.as_ref().map(|b| b.key.clone()).unwrap_or_default()),
            ("previous-tag", self.previous_tag.clone().unwrap_or_default()),
            ("duration", format!("{}", self.duration_secs.round() as i64)),
        ]
    }

    /// Steps journaled by this run (a manual rollback's manifest also holds the deploy's).
    pub fn own_steps(&self) -> impl Iterator<Item = &Entry> {
        self.steps.iter().filter(move |e| e.started_at >= self.started_at)
    }
}
