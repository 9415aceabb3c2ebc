use anyhow::Result;
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::backup::{self, Manifest};
use crate::exec::Cmd;
use crate::model::{human_bytes, BackupName};

pub struct Backup;

#[async_trait]
impl StepSpec for Backup {
    fn what(&self, run: &Run) -> String {
        format!(
            "stream pg_dump → gzip → {}/{} (…time of the run), then read it back whole to verify",
            run.w.store.describe(),
            BackupName::new(&run.sha, run.started_at).data_key()
        )
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        vec![run.w.db.query_cmd(&run.w.db.name), run.w.db.dump_cmd()]
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let key = BackupName::new(&run.sha, run.started_at).data_key();
        // Before the dump: every write after this shows in the counters (damage, lost writes).
        let stats = w.db.table_stats(&w.db.name).await?;
        let taken = backup::take_verified(&w.db, w.store.as_ref(), &key, w.config.backup.compression).await?;
        let detail = format!(
            "{} ({} of SQL), sha256 {}, verified",
            human_bytes(taken.size),
            human_bytes(taken.dump_bytes),
            &taken.sha256[..16]
        );
        let mut m = Manifest::verified(&w.config.project, &run.sha, &w.db.name, run.started_at, taken);
        m.tag = run.tag.clone();
        m.previous_tag = run.previous_tag.clone();
        m.server_version = run.server_version.clone();
        m.stats = stats;
        m.classification = run.classification.clone();
        run.manifest = Some(m);
        run.persist().await;
        Ok(Done::Ok(detail))
    }
}
