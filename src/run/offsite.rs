//! `backup.copy_to` on Neon: a `pg_dump` of the pre-deploy branch into the offsite store, taken
//! once the run is over, so it never delays the deploy. It is an ordinary backup there, with an
//! ordinary manifest: restored by any deploy-guard pointed at that store.

use anyhow::{Context, Result};

use super::Run;
use crate::backup::{self, Packing};
use crate::model::{human_bytes, BackupName};
use crate::store::Store;

impl Run<'_> {
    /// Dumps the run's pre-deploy branch into `backup.copy_to`, if both are there; a failure is
    /// a note (the branch is the backup).
    pub async fn copy_branch_offsite(&mut self) {
        let (Some(copy), Some(name)) = (self.w.copy.clone(), self.manifest.as_ref().and_then(|m| m.neon.clone()))
        else {
            return;
        };
        match self.dump_branch(copy.as_ref()).await {
            Ok(line) => self.notes.push(line),
            Err(e) => self.notes.push(format!("no offsite copy of the branch {}: {e:#}", name.name)),
        }
    }

    async fn dump_branch(&mut self, copy: &dyn Store) -> Result<String> {
        let w = self.w;
        let alias = self.neon_branch().await?.context("no pre-deploy branch")?;
        let endpoint = w.db.endpoint_of(&alias).context("the branch is not reachable")?;
        let db = w.db.at_endpoint(&endpoint)?;
        let b = &w.config.backup;
        let m = self.manifest()?.clone();
        let packing = Packing::choose(db.executor().as_ref(), b.format, b.compression).await?;
        let key = packing.key(&BackupName::from_key(&m.key));
        let taken = backup::take_verified(&db, copy, &key, packing, b.verify).await?;
        let size = taken.size;
        m.as_dump(taken).create(copy).await?;
        if let Some(m) = self.manifest.as_mut() {
            m.copy = Some(copy.location(&key));
        }
        self.persist().await;
        Ok(format!(
            "offsite copy: the branch {alias} dumped to {} ({}), verified",
            copy.location(&key),
            human_bytes(size)
        ))
    }
}
