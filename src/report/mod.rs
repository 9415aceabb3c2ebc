//! What happened, for people (markdown summary) and programs (JSON, Actions outputs).

pub mod actions;
mod build;
pub mod comment;
pub mod flowchart;
pub mod github;
pub mod pr_check;
pub mod runbook;
pub mod summary;

pub use build::build;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::guard::{Entry, Mode, Outcome};
use crate::model::ExitCode;

#[derive(Clone, Debug, Serialize)]
pub struct BackupInfo {
    /// Where the object is: store location + key.
    pub location: String,
    pub key: String,
    pub size: u64,
    pub dump_bytes: u64,
    pub sha256: String,
    pub verified: bool,
    /// The verified offsite copy (`backup.copy_to`), if one was made.
    pub copy: Option<String>,
}

/// The report of one deploy or rollback.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The command that ran: deploy, rollback, restore, backup.
    pub command: Mode,
    pub project: String,
    /// deployed, rolled-back, rollback-failed, aborted, backed-up, restored.
    pub result: &'static str,
    /// none, revert, restore.
    pub path: &'static str,
    pub exit_code: ExitCode,
    pub headline: String,
    pub outcome: Outcome,
    pub sha: crate::model::Sha,
    pub tag: Option<String>,
    pub previous_tag: Option<String>,
    /// Where the previous tag was read.
    pub previous_tag_source: Option<crate::app::TagSource>,
    pub started_at: DateTime<Utc>,
    pub duration_secs: f64,
    /// From the first rollback step to the end.
    pub recovery_secs: Option<f64>,
    pub steps: Vec<Entry>,
    /// With several hosts: the tag each ran before and runs now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::guard::HostTag>,
    pub backup: Option<BackupInfo>,
    pub migrations_before: Vec<Value>,
    pub migrations_after: Option<Vec<Value>>,
    /// Schema differences found (`+` added since the backup, `-` missing).
    pub drift: Vec<String>,
    /// What the migrations destroyed of the data that existed before the deploy.
    pub destroyed: Vec<String>,
    /// The writes the restore took away, and their replay file.
    pub lost_writes: Option<crate::record::LostWrites>,
    /// Additions the rollback kept (`rollback.additive: keep`): what stays in the schema.
    pub kept_additions: Vec<String>,
    /// The pending migrations' SQL, classified before the deploy.
    pub classification: Vec<crate::db::lint::Finding>,
    /// The rehearsal on a copy of the backup: per migration, durations and long locks.
    pub rehearsal: Option<crate::record::Rehearsal>,
    /// What the revert dropped that the new release had written (set when the path is revert).
    pub discarded: Vec<String>,
    pub app_status: Option<String>,
    pub app_logs: Option<String>,
    /// The broken database, kept for forensics after a restore.
    pub kept_database: Option<String>,
    pub notes: Vec<String>,
    /// The migration tool can revert (false: forward-only, restore is the only way back).
    pub can_revert: bool,
    /// What a person runs next (set when a person must act).
    pub next_commands: Vec<String>,
    /// What the run left on GitHub (its comment, its incident issue).
    pub links: github::Links,
}

impl Report {
    /// Outputs for `$GITHUB_OUTPUT`.
    pub fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("result", self.result.to_string()),
            ("path", self.path.to_string()),
            ("backup-key", self.backup.as_ref().map(|b| b.key.clone()).unwrap_or_default()),
            ("previous-tag", self.previous_tag.clone().unwrap_or_default()),
            ("duration", format!("{}", self.duration_secs.round() as i64)),
            ("summary-url", github::run_url().unwrap_or_default()),
            ("comment-url", self.links.comment.clone().unwrap_or_default()),
            ("incident-url", self.links.incident.clone().unwrap_or_default()),
        ]
    }

    /// The next commands as a fenced `sh` block (empty when there are none).
    pub fn next_commands_block(&self) -> String {
        if self.next_commands.is_empty() {
            return String::new();
        }
        format!("```sh\n{}\n```\n", self.next_commands.join("\n"))
    }

    /// Steps journaled by this run (a manual rollback's manifest also holds the deploy's).
    pub fn own_steps(&self) -> impl Iterator<Item = &Entry> {
        self.steps.iter().filter(move |e| e.started_at >= self.started_at)
    }
}

/// A report to render in tests: a deploy of station v2.4.0 with the given outcome and steps.
#[cfg(test)]
pub(crate) mod fixture {
    use chrono::{DateTime, Duration, Utc};
    use serde_json::json;

    use super::*;
    use crate::guard::{EntryState, Step};

    pub fn at(s: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-10T15:00:00Z").unwrap().with_timezone(&Utc) + Duration::seconds(s)
    }

    pub fn entry(step: Step, state: EntryState, from: i64, to: i64, detail: &str) -> Entry {
        Entry { step, state, started_at: at(from), finished_at: Some(at(to)), detail: detail.into() }
    }

    pub fn report(outcome: Outcome, steps: Vec<Entry>, next: Vec<String>) -> Report {
        Report {
            command: Mode::Deploy,
            project: "station".into(),
            result: outcome.result(),
            path: outcome.path().name(),
            exit_code: outcome.exit_code(Mode::Deploy),
            headline: outcome.headline(),
            outcome,
            sha: crate::model::Sha::parse("abc1234def5678abc1234def5678abc1234def56").unwrap(),
            tag: Some("v2.4.0".into()),
            previous_tag: Some("v2.3.1".into()),
            previous_tag_source: Some(crate::app::TagSource::Running),
            started_at: at(0),
            duration_secs: 42.0,
            recovery_secs: Some(30.0),
            steps,
            hosts: Vec::new(),
            backup: Some(BackupInfo {
                location: "file:///var/backups/station/202605/20260510_150000_pre-deploy-abc1234.sql.gz".into(),
                key: "202605/20260510_150000_pre-deploy-abc1234.sql.gz".into(),
                size: 3 * 1024 * 1024,
                dump_bytes: 17 * 1024 * 1024,
                sha256: "9f2c".repeat(16),
                verified: true,
                copy: None,
            }),
            migrations_before: vec![json!({"id": 1, "timestamp": 1, "name": "Init1"})],
            migrations_after: Some(vec![
                json!({"id": 1, "timestamp": 1, "name": "Init1"}),
                json!({"id": 2, "timestamp": 2, "name": "AddTier2"}),
            ]),
            drift: vec!["+ column public.users.tier integer".into()],
            destroyed: Vec::new(),
            lost_writes: None,
            kept_additions: Vec::new(),
            classification: Vec::new(),
            rehearsal: None,
            discarded: Vec::new(),
            app_status: Some("exited (1)".into()),
            app_logs: Some("TypeError: cannot read properties of undefined (reading 'tier')".into()),
            kept_database: Some("station__failed_abc1234".into()),
            notes: vec!["verify-revert: schema drift after revert: + column public.users.tier integer".into()],
            links: Default::default(),
            next_commands: next,
            can_revert: true,
        }
    }
}
