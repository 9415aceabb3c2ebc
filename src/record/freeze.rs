//! A freeze: deploys of a project refused, with a person's message, until it is lifted
//! (`deploy-guard lock freeze -m "…"` / `lock unfreeze`). It lives in the backup store beside the
//! journal, which every deploy reads before it starts: a freeze then needs no database (during an
//! incident the database may be what is down), outlives any session, and rollbacks and restores,
//! which never read it, are not held back.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{Put, Store};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub project: String,
    pub message: String,
    /// `$GITHUB_ACTOR`, else `$USER@host`.
    pub by: Option<String>,
    pub run_url: Option<String>,
    pub since: DateTime<Utc>,
}

impl std::fmt::Display for Freeze {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "deploys of {} are frozen since {}", self.project, self.since.format("%Y-%m-%d %H:%M:%S UTC"))?;
        if let Some(by) = &self.by {
            write!(f, " by {by}")?;
        }
        if let Some(url) = &self.run_url {
            write!(f, " (run {url})")?;
        }
        write!(f, ": {:?}", self.message)
    }
}

/// The freeze's object: one per project (not a manifest, so listings and retention pass it by).
fn key(project: &str) -> String {
    format!("deploy-guard-freeze.{project}.json")
}

/// The freeze of `project`, if deploys are frozen. An object that cannot be read as one is a
/// freeze all the same (failing closed: it was written to stop deploys).
pub async fn read(store: &dyn Store, project: &str) -> Result<Option<Freeze>> {
    let key = key(project);
    let there = store.list(&key).await?.into_iter().any(|o| o.key == key);
    if !there {
        return Ok(None);
    }
    let bytes = store.get_bytes(&key).await.with_context(|| format!("reading the freeze {key}"))?;
    Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| Freeze {
        project: project.to_string(),
        message: format!("(the freeze object {key} cannot be read: {e}; `deploy-guard lock unfreeze` removes it)"),
        by: None,
        run_url: None,
        since: DateTime::<Utc>::default(),
    })))
}

/// Freezes deploys of `project` with `message` (replacing an earlier freeze's message).
pub async fn freeze(store: &dyn Store, project: &str, message: &str) -> Result<Freeze> {
    let f = Freeze {
        project: project.to_string(),
        message: message.to_string(),
        by: crate::db::deploy_lock::who(),
        run_url: crate::db::deploy_lock::run_url(),
        since: Utc::now(),
    };
    let key = key(project);
    if read(store, project).await?.is_some() {
        store.delete(&key).await?;
    }
    store.put_bytes(&key, &serde_json::to_vec_pretty(&f)?, Put::New).await?;
    Ok(f)
}

/// Lifts the freeze; returns the one lifted.
pub async fn unfreeze(store: &dyn Store, project: &str) -> Result<Option<Freeze>> {
    let was = read(store, project).await?;
    if was.is_some() {
        store.delete(&key(project)).await?;
    }
    Ok(was)
}
