use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::exec::Cmd;

pub struct VerifyRevert;

#[async_trait]
impl StepSpec for VerifyRevert {
    fn what(&self, _run: &Run) -> String {
        "migration rows, fingerprint and the rows of the tables the deploy touched must equal the recorded ones".into()
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        vec![run.w.db.query_cmd(&run.w.db.name)]
    }

    fn manual(&self, run: &Run) -> Vec<String> {
        vec![format!(
            "{}   # reverts and verifies schema and migration rows, or stops",
            run.dg(&format!("rollback --sha {} --path revert", run.sha.short()))
        )]
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        super::assess::Assess.by_hand(run)
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let m = run.manifest()?.clone();
        if let Some(t) = &w.migrator.table {
            let rows = w.db.migration_rows(&w.db.name, t, &w.migrator.order_by).await?;
            if rows != m.migrations.rows {
                bail!(
                    "the migration table has {} rows, the recorded pre-deploy state {}",
                    rows.len(),
                    m.migrations.rows.len()
                );
            }
        }
        let before = m.fingerprint.as_ref().context("no recorded fingerprint to compare with")?;
        let now = w.db.fingerprint(&w.db.name).await?;
        let drift = before.diff(&now);
        run.found.drift_after_revert = Some(drift.clone());
        if !drift.is_empty() {
            bail!("schema drift after revert: {}", drift.join("; "));
        }
        // "Verified" means the data too: the rows of every pre-existing table the deploy touched
        // must equal the backup's.
        let mut compared = 0;
        let touched = run.found.assessed.as_ref().map(|a| a.touched.clone()).unwrap_or_default();
        for (t, backup) in run.backup_sums(&touched).await? {
            let rows = w.db.table_sum(&w.db.name, &t, &backup.columns).await?;
            if !rows.same_rows(&backup) {
                bail!(
                    "the rows of {t} differ from the backup after the revert ({} rows then, {} now): the revert \
                     did not bring the data back",
                    backup.rows,
                    rows.rows
                );
            }
            compared += 1;
        }
        Ok(Done::Ok(format!(
            "migration table, schema fingerprint {} and the rows of {compared} touched table(s) equal the recorded ones",
            now.short()
        )))
    }
}
