//! `restore`: the safe path on its own — scratch restore, validation, swap — for a backup found
//! by SHA or key. The app is left as it is (the swap cuts its connections).

use anyhow::{bail, Result};
use chrono::Utc;

use super::drive::Run;
use super::World;
use crate::backup::{self, Manifest};
use crate::guard::{EntryState, Step};

pub async fn find(w: &World, sha: Option<&str>, key: Option<&str>) -> Result<Manifest> {
    match (sha, key) {
        (Some(s), _) => backup::find(w.store.as_ref(), s).await,
        (None, Some(k)) => {
            let stem = k.strip_suffix(".sql.gz").or_else(|| k.strip_suffix(".manifest.json")).unwrap_or(k);
            let m = Manifest::load(w.store.as_ref(), &backup::manifest_key(stem)).await?;
            if !m.verified {
                bail!("backup {} was never verified; refusing to restore it", m.key);
            }
            Ok(m)
        }
        (None, None) => bail!("give --sha SHA or --key KEY"),
    }
}

/// Restores `manifest`'s backup over the live database; returns what each step did.
pub async fn restore(w: &World, manifest: Manifest) -> Result<Vec<(Step, String)>> {
    let mut run = Run::resume(w, manifest);
    let mut done = Vec::new();
    for step in [Step::Preflight, Step::Restore, Step::ValidateRestore, Step::Swap] {
        run.journal.begin(step, Utc::now());
        tracing::info!("▶ {}: {}", step.name(), step.title());
        let r = match step {
            Step::Preflight => run.rollback_preflight().await,
            Step::Restore => run.restore().await,
            Step::ValidateRestore => run.validate_restore().await,
            _ => run.swap().await,
        };
        match r {
            Ok(detail) => {
                tracing::info!("✓ {}: {detail}", step.name());
                run.journal.end(step, EntryState::Ok, detail.clone(), Utc::now());
                done.push((step, detail));
            }
            Err(e) => {
                run.journal.end(step, EntryState::Failed, format!("{e:#}"), Utc::now());
                run.release().await;
                return Err(e.context(format!("restore stopped at {step}")));
            }
        }
    }
    run.release().await;
    Ok(done)
}
