//! Backups named by git SHA, their manifests (which are also the run's journal), and lookup.

mod pipeline;
pub mod retention;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db::Fingerprint;
use crate::guard::{Journal, Outcome};
use crate::model::{BackupName, Sha};
use crate::store::Store;

pub use pipeline::{human_bytes, restore_stream, take, take_verified, verify, Taken, TRAILER};

/// The migration table as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationState {
    pub table: Option<String>,
    pub rows: Vec<serde_json::Value>,
}

/// Everything known about one guarded deploy, written beside its backup before each step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub project: String,
    pub sha: Sha,
    /// The tag being deployed.
    pub tag: Option<String>,
    /// The tag that ran before (what a rollback redeploys).
    pub previous_tag: Option<String>,
    pub created_at: DateTime<Utc>,
    pub database: String,
    pub server_version: Option<String>,
    /// Key of the gzip-compressed plain dump, relative to the store.
    pub key: String,
    /// Size of the plain SQL.
    pub dump_bytes: u64,
    /// Size of the stored `.sql.gz`.
    pub size: u64,
    pub sha256: String,
    /// Set only once the stored object was read back whole and matched.
    pub verified: bool,
    pub migrations: MigrationState,
    pub fingerprint: Option<Fingerprint>,
    pub journal: Journal,
    /// How the last run on this backup ended; none while a run is under way.
    pub outcome: Option<Outcome>,
}

impl Manifest {
    pub const FORMAT: u32 = 1;

    /// The manifest of a backup that was just taken and verified; the caller fills in the rest.
    pub fn verified(project: &str, sha: &Sha, database: &str, created_at: DateTime<Utc>, taken: Taken) -> Manifest {
        Manifest {
            format: Manifest::FORMAT,
            project: project.to_string(),
            sha: sha.clone(),
            tag: None,
            previous_tag: None,
            created_at,
            database: database.to_string(),
            server_version: None,
            key: taken.key,
            dump_bytes: taken.dump_bytes,
            size: taken.size,
            sha256: taken.sha256,
            verified: true,
            migrations: MigrationState::default(),
            fingerprint: None,
            journal: Journal::default(),
            outcome: None,
        }
    }

    pub fn manifest_key(&self) -> String {
        BackupName::from_key(&self.key).manifest_key()
    }

    pub async fn save(&self, store: &dyn Store) -> Result<()> {
        let body = serde_json::to_vec_pretty(self)?;
        store.put_bytes(&self.manifest_key(), &body).await.context("cannot write the backup manifest")?;
        Ok(())
    }

    pub async fn load(store: &dyn Store, key: &str) -> Result<Manifest> {
        let bytes = store.get_bytes(key).await?;
        serde_json::from_slice(&bytes).with_context(|| format!("{key} is not a deploy-guard manifest"))
    }
}

/// Every manifest in the store, newest first.
pub async fn list(store: &dyn Store) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for obj in store.list("").await? {
        if BackupName::is_manifest_key(&obj.key) {
            match Manifest::load(store, &obj.key).await {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!("skipping {}: {e:#}", obj.key),
            }
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.key.cmp(&a.key)));
    Ok(out)
}

/// The newest verified backup of the deploy whose SHA starts with `prefix`. Two different SHAs
/// matching is an error that lists them.
pub async fn find(store: &dyn Store, prefix: &str) -> Result<Manifest> {
    let prefix = prefix.to_ascii_lowercase();
    let short = &prefix[..7.min(prefix.len())];
    let mut found = Vec::new();
    for obj in store.list("").await? {
        let Some(sha7) = BackupName::sha7_of_manifest_key(&obj.key) else {
            continue;
        };
        if !sha7.starts_with(short) {
            continue;
        }
        let m = Manifest::load(store, &obj.key).await?;
        if m.sha.as_str().starts_with(&prefix) {
            found.push(m);
        }
    }
    let mut shas: Vec<&str> = found.iter().map(|m| m.sha.as_str()).collect();
    shas.sort();
    shas.dedup();
    match shas.len() {
        0 => bail!(
            "no backup for a deploy of SHA {prefix} in {}; `deploy-guard backups` lists what there is",
            store.describe()
        ),
        1 => {}
        _ => bail!("SHA prefix {prefix} is ambiguous: it matches {}; give more digits", shas.join(", ")),
    }
    found.sort_by_key(|m| std::cmp::Reverse(m.created_at));
    let verified = found.iter().find(|m| m.verified).cloned();
    verified.ok_or_else(|| {
        anyhow::anyhow!(
            "the backups of {} were never verified ({}): they cannot be trusted for a restore",
            found[0].sha,
            found.iter().map(|m| m.key.as_str()).collect::<Vec<_>>().join(", ")
        )
    })
}
