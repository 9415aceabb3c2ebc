//! `restore`: the safe path on its own — scratch restore, validation, swap — for a backup found
//! by SHA or key, or (`--at`, on Neon) a branch of the primary as it was at that moment,
//! journaled in that backup's manifest. The app is left as it is (the swap cuts its connections).

use anyhow::{bail, Context, Result};

use crate::config::{Config, Provider};
use crate::guard::Mode;
use crate::model::{usage, BackupName, PointInTime, ShaPrefix};
use crate::record::{self, Manifest};
use crate::report::{self, Report};
use crate::run::Run;
use crate::world::World;

pub async fn find(w: &World, sha: Option<&ShaPrefix>, key: Option<&str>) -> Result<Manifest> {
    match (sha, key) {
        (Some(s), _) => {
            record::find_here_or_copy(w.store.as_ref(), w.copy.as_deref(), &w.config.project, &w.db.name, s.as_str())
                .await
        }
        (None, Some(k)) => {
            let m = Manifest::load(w.store.as_ref(), &BackupName::from_key(k).manifest_key()).await?;
            if !m.verified {
                bail!("backup {} was never verified; refusing to restore it", m.key);
            }
            Ok(m)
        }
        (None, None) => bail!("give --sha SHA or --key KEY"),
    }
}

/// `--at` is for a provider that keeps the database's history: refused, before anything is
/// reached, on any other.
pub fn refuse_at_without_history(config: &Config) -> Result<()> {
    if config.backup.provider == Provider::Neon {
        return Ok(());
    }
    usage(Err(anyhow::anyhow!(
        "restore --at needs backup.provider: neon (Neon keeps the history a branch at that moment is taken \
         from); the backups here are pg_dump snapshots, with no history between them. Restore one of them \
         instead (`deploy-guard backups` lists them; `deploy-guard restore --sha SHA` or `--key KEY`), or use \
         your database provider's own point-in-time recovery (RDS, Cloud SQL, Azure, pgBackRest, WAL-G)"
    )))
}

/// `--at`: a branch of the primary as it was at `at`, verified and recorded as a backup of the
/// deploy `sha` names (else the newest recorded one): the source of the same restore as any.
pub async fn find_at(w: &World, sha: Option<&ShaPrefix>, at: &PointInTime) -> Result<Manifest> {
    let (project, db) = (&w.config.project, &w.db.name);
    let deploy = match sha {
        Some(s) => record::find_for(w.store.as_ref(), project, db, s.as_str()).await?,
        None => {
            let newest = record::list(w.store.as_ref())
                .await?
                .checked()
                .into_iter()
                .find(|m| &m.project == project && &m.database == db);
            usage(newest.with_context(|| {
                format!(
                    "no deploy of project {project}, database {db} is recorded in {}: give --sha SHA with --at (the \
                     deploy the restore is recorded under)",
                    w.store.describe()
                )
            }))?
        }
    };
    let taken = crate::run::steps::backup::point_in_time(w, &deploy.sha, at).await;
    // Neon refused to branch at that time (one outside the project's history): bad input.
    let refused = |e: &anyhow::Error| {
        e.chain()
            .filter_map(|c| c.downcast_ref::<crate::backup::neon::api::Refused>())
            .any(|r| r.call == "POST /branches")
    };
    match taken {
        Err(e) if refused(&e) => usage(Err(e.context(format!(
            "Neon has no state of the primary branch at {at}: a time must be within the project's history \
                 retention window (Neon console: Settings → Storage; `neon projects get`)"
        )))),
        taken => taken,
    }
}

/// Restores `manifest`'s backup over the live database.
pub async fn restore(w: &World, manifest: Manifest, config_arg: &str) -> Report {
    let mut run = Run::resume(w, Mode::Restore, manifest);
    run.config_arg = config_arg.to_string();
    let outcome = run.drive(w.config.rollback.strategy).await;
    report::build(&run, outcome)
}
