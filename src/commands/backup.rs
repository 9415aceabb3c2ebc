//! `backup` (take and verify one, record the state) and `backups` (list them).

use anyhow::{Context, Result};
use serde::Serialize;

use super::World;
use crate::backup::{self, human_bytes, Manifest, MigrationState};
use crate::guard::{EntryState, Step};

/// Takes a verified backup tagged with `sha`, recording the current migration rows and
/// fingerprint so it can be validated on restore.
pub async fn backup(w: &World, sha: &str) -> Result<Manifest> {
    let started = chrono::Utc::now();
    let lock = w.db.lock(&w.lock_key()).await?;
    let result = async {
        // Fail before a long dump, not after it: the store must be there and writable.
        w.store.check().await.with_context(|| format!("backup store {} is not usable", w.store.describe()))?;
        let server_version =
            w.db.server_version(&w.db.name)
                .await
                .with_context(|| format!("database {} is not reachable", w.db.name))?;
        let key = backup::data_key(&backup::stem(sha, started));
        let taken = backup::take_verified(&w.db, w.store.as_ref(), &key, w.config.backup.compression).await?;
        let rows = w.migration_rows(&w.db.name).await?;
        let fingerprint = w.db.fingerprint(&w.db.name).await?;
        let mut m = Manifest::verified(&w.config.project, sha, &w.db.name, started, taken);
        m.previous_tag = w.runtime.current_tag().await.ok().flatten();
        m.server_version = Some(server_version);
        m.migrations = MigrationState { table: w.migrator.table.clone(), rows };
        m.fingerprint = Some(fingerprint);
        m.journal.begin(Step::Backup, started);
        m.journal.end(Step::Backup, EntryState::Ok, "backup command", chrono::Utc::now());
        m.outcome = Some("backup".into());
        m.save(w.store.as_ref()).await?;
        Ok(m)
    }
    .await;
    lock.release().await;
    result
}

/// One row of `backups`.
#[derive(Serialize)]
pub struct Listed {
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sha: String,
    pub tag: Option<String>,
    pub previous_tag: Option<String>,
    pub key: String,
    pub size: u64,
    pub verified: bool,
    pub outcome: Option<String>,
}

pub async fn list(w: &World, sha_prefix: Option<&str>) -> Result<Vec<Listed>> {
    let prefix = sha_prefix.map(|p| p.to_ascii_lowercase());
    Ok(backup::list(w.store.as_ref())
        .await?
        .into_iter()
        .filter(|m| prefix.as_deref().is_none_or(|p| m.sha.starts_with(p)))
        .map(|m| Listed {
            created_at: m.created_at,
            sha: m.sha,
            tag: m.tag,
            previous_tag: m.previous_tag,
            key: m.key,
            size: m.size,
            verified: m.verified,
            outcome: m.outcome,
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
            &r.sha[..7.min(r.sha.len())],
            human_bytes(r.size),
            if r.verified { "yes" } else { "NO" },
            r.outcome.as_deref().unwrap_or("in progress"),
            r.key
        ));
    }
    out
}

/// The retention policy the config asks for.
pub fn policy(w: &World) -> backup::retention::Policy {
    backup::retention::Policy { keep: w.config.backup.keep, max_age: w.config.backup.max_age }
}

/// Retention after a successful backup or deploy: a failure here is a warning, never a failed
/// deploy. Returns one line per deleted backup.
pub async fn prune_after(w: &World) -> Vec<String> {
    let policy = policy(w);
    if !policy.is_set() {
        return Vec::new();
    }
    match backup::retention::prune(w.store.as_ref(), &w.config.project, policy, false).await {
        Ok(d) => d.iter().map(prune_line).collect(),
        Err(e) => {
            tracing::warn!("retention did not run to the end: {e:#}");
            vec![format!("retention did not run to the end: {e:#}")]
        }
    }
}

/// "deleted 202605/…sql.gz (2026-05-10 15:00:00, abc1234, 1.2 MiB): beyond the newest 10".
pub fn prune_line(d: &backup::retention::Decision) -> String {
    let m = &d.manifest;
    format!(
        "deleted {} ({}, {}, {}): {}",
        m.key,
        m.created_at.format("%Y-%m-%d %H:%M:%S"),
        m.sha7(),
        human_bytes(m.size),
        d.why
    )
}
