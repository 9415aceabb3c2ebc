//! `restore`: the safe path on its own — scratch restore, validation, swap — for a backup found
//! by SHA or key, journaled in that backup's manifest. The app is left as it is (the swap cuts
//! its connections).

use anyhow::{bail, Result};

use crate::guard::Mode;
use crate::model::{BackupName, ShaPrefix};
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

/// Restores `manifest`'s backup over the live database.
pub async fn restore(w: &World, manifest: Manifest, config_arg: &str) -> Report {
    let mut run = Run::resume(w, Mode::Restore, manifest);
    run.config_arg = config_arg.to_string();
    let outcome = run.drive(w.config.rollback.strategy).await;
    report::build(&run, outcome)
}
