//! `backup` (take and verify one, record the state) and `backups` (list them).

use anyhow::Result;
use serde::Serialize;

use crate::guard::{Mode, Outcome};
use crate::model::{human_bytes, Sha, ShaPrefix};
use crate::record;
use crate::report::{self, Report};
use crate::run::Run;
use crate::world::World;

/// Takes a verified backup tagged with `sha`, recording the current migration rows and
/// fingerprint so it can be validated on restore: the tree in `backup` mode.
pub async fn backup(w: &World, sha: &Sha, config_arg: &str) -> Report {
    let mut run = Run::new(w, Mode::Backup, sha.clone());
    run.config_arg = config_arg.to_string();
    let outcome = run.drive(w.config.rollback.strategy).await;
    report::build(&run, outcome)
}

/// One row of `backups`.
#[derive(Serialize)]
pub struct Listed {
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sha: Sha,
    pub tag: Option<String>,
    pub previous_tag: Option<String>,
    pub key: String,
    pub size: u64,
    pub verified: bool,
    /// How the last run on this backup ended (`deployed`, `backed-up`, `restored`, …); none while
    /// a run is under way.
    pub outcome: Option<&'static str>,
    /// How that run brought the database back (`none`, `revert`, `restore`).
    pub path: Option<&'static str>,
}

pub async fn list(w: &World, sha_prefix: Option<&ShaPrefix>) -> Result<Vec<Listed>> {
    Ok(record::list(w.store.as_ref())
        .await?
        .checked()
        .into_iter()
        .filter(|m| sha_prefix.is_none_or(|p| m.sha.starts_with(p)))
        .map(|m| Listed {
            created_at: m.created_at,
            sha: m.sha,
            tag: m.tag,
            previous_tag: m.previous_tag,
            key: m.key,
            size: m.size,
            verified: m.verified,
            outcome: m.outcome.as_ref().map(Outcome::result),
            path: m.outcome.as_ref().map(|o| o.path().name()),
        })
        .collect())
}

/// The table `backups` prints.
pub fn table(rows: &[Listed]) -> String {
    if rows.is_empty() {
        return "no backups\n".into();
    }
    let mut out =
        format!("{:<20} {:<9} {:>10} {:<9} {:<16} {}\n", "DATE (UTC)", "SHA", "SIZE", "VERIFIED", "OUTCOME", "KEY");
    for r in rows {
        out.push_str(&format!(
            "{:<20} {:<9} {:>10} {:<9} {:<16} {}\n",
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            r.sha.short(),
            human_bytes(r.size),
            if r.verified { "yes" } else { "NO" },
            r.outcome.unwrap_or("in progress"),
            r.key
        ));
    }
    out
}

/// The retention policy the config asks for.
pub fn policy(w: &World) -> record::retention::Policy {
    record::retention::Policy { keep: w.config.backup.keep, max_age: w.config.backup.max_age }
}

/// Retention after a successful backup or deploy: a failure here is a warning, never a failed
/// deploy. Returns one line per deleted backup.
pub async fn prune_after(w: &World) -> Vec<String> {
    let policy = policy(w);
    if !policy.is_set() {
        return Vec::new();
    }
    match record::retention::prune(w.store.as_ref(), w.neon.as_ref(), &w.config.project, policy, false).await {
        Ok(d) => d.iter().map(prune_line).collect(),
        Err(e) => {
            tracing::warn!("retention did not run to the end: {e:#}");
            vec![format!("retention did not run to the end: {e:#}")]
        }
    }
}

/// "deleted 202605/…sql.gz (2026-05-10 15:00:00, abc1234, 1.2 MiB): beyond the newest 10".
pub fn prune_line(d: &record::retention::Decision) -> String {
    let m = &d.manifest;
    format!(
        "deleted {} ({}, {}, {}): {}",
        m.key,
        m.created_at.format("%Y-%m-%d %H:%M:%S"),
        m.sha.short(),
        human_bytes(m.size),
        d.why
    )
}
