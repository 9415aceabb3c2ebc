//! `resolve`: records what a person did about a deploy whose rollback failed (exit 3). Until it
//! is recorded, the next deploy is refused (preflight) and retention keeps the backup the "what
//! to run next" block points at.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::model::ShaPrefix;
use crate::record::{self, Resolution};
use crate::world::World;

#[derive(Debug, Serialize)]
pub struct Resolved {
    pub sha: String,
    pub key: String,
    pub tag: Option<String>,
    pub resolution: Resolution,
}

/// Marks every unresolved `rollback-failed` run of this project and database whose SHA starts
/// with `sha` as resolved, with `note`.
pub async fn resolve(w: &World, sha: &ShaPrefix, note: &str) -> Result<Vec<Resolved>> {
    let store = w.store.as_ref();
    let mine: Vec<_> = record::list(store)
        .await?
        .checked()
        .into_iter()
        .filter(|m| {
            m.project == w.config.project && m.database == w.db.name && m.sha.as_str().starts_with(sha.as_str())
        })
        .collect();
    if mine.is_empty() {
        bail!(
            "no deploy of project {}, database {} matches SHA {sha} in {}",
            w.config.project,
            w.db.name,
            store.describe()
        );
    }
    let mut done = Vec::new();
    for mut m in mine.into_iter().filter(|m| m.unresolved_failure()) {
        let resolution = Resolution { at: chrono::Utc::now(), note: note.trim().to_string() };
        m.resolved = Some(resolution.clone());
        m.save(store).await.with_context(|| format!("cannot record the resolution in {}", m.manifest_key()))?;
        done.push(Resolved { sha: m.sha.to_string(), key: m.manifest_key(), tag: m.tag.clone(), resolution });
    }
    if done.is_empty() {
        bail!("no rollback of SHA {sha} is waiting to be resolved (none failed, or it was resolved already)");
    }
    Ok(done)
}

pub fn render(done: &[Resolved]) -> String {
    done.iter()
        .map(|r| {
            format!(
                "resolved the failed rollback of {} (sha {}, {}): {}\n",
                r.tag.as_deref().unwrap_or("?"),
                r.sha,
                r.key,
                r.resolution.note
            )
        })
        .collect()
}
