use anyhow::{Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::Action;
use crate::exec::Cmd;
use crate::guard::Mode;
use crate::record::MigrationState;

pub struct Record;

#[async_trait]
impl StepSpec for Record {
    fn what(&self, run: &Run) -> String {
        format!(
            "record migration rows ({}) and the schema fingerprint in the manifest",
            run.w.migrator.table.as_deref().unwrap_or("no table configured")
        )
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let mut out = vec![run.w.db.query_cmd(&run.w.db.name)];
        if run.mode == Mode::Backup {
            out.extend(run.w.runtime.cmd(Action::CurrentTag));
        }
        out
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let rows = w.migration_rows(&w.db.name).await?;
        let fp = w.db.fingerprint(&w.db.name).await?;
        let identities = w.db.identities(&w.db.name).await?;
        let checks = super::checks::query_results(w, &w.db.name).await?;
        let detail =
            format!("{} migration rows; schema fingerprint {} ({} objects)", rows.len(), fp.short(), fp.items.len());
        let m = run.manifest.as_mut().context("no manifest")?;
        m.migrations = MigrationState { table: w.migrator.table.clone(), rows };
        m.fingerprint = Some(fp);
        m.identities = Some(identities);
        m.checks = checks;
        if m.previous_tag.is_none() {
            // A backup on its own records what runs, for a later restore's redeploy.
            if let Some((tag, source)) = w.runtime.previous_tag().await.ok().flatten() {
                m.previous_tag = Some(tag);
                m.previous_tag_source = Some(source);
            }
        }
        if m.services.is_empty() {
            // What a rollback puts back, service by service (swarm: image and replicas).
            m.services = w.runtime.services().await.context("cannot read the services' images and replicas")?;
        }
        let detail = match m.services.len() {
            0 => detail,
            n => format!("{detail}; {n} service(s)' images and replicas"),
        };
        run.persist().await;
        Ok(Done::Ok(detail))
    }
}
