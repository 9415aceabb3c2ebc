use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::exec::Cmd;

pub struct ValidateRestore;

#[async_trait]
impl StepSpec for ValidateRestore {
    fn what(&self, _run: &Run) -> String {
        "fingerprint and migration rows equal the recorded ones".into()
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let db = &run.w.db;
        let mut out: Vec<Cmd> = run.db_names().ok().map(|n| db.query_cmd(&n.scratch)).into_iter().collect();
        out.push(db.query_cmd(&db.maintenance_db));
        out
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        super::restore::Restore.by_hand(run)
    }

    fn manual(&self, _run: &Run) -> Vec<String> {
        Vec::new() // part of the restore's manual steps
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let m = run.manifest()?.clone();
        let names = run.found.restored.clone().context("no scratch database")?;
        let check = async {
            if let Some(t) = &m.migrations.table {
                let rows = w.db.migration_rows(&names.scratch, t, &w.migrator.order_by).await?;
                if rows != m.migrations.rows {
                    bail!("restored migration table has {} rows, the recorded {}", rows.len(), m.migrations.rows.len());
                }
            }
            let fp = w.db.fingerprint(&names.scratch).await?;
            match &m.fingerprint {
                Some(before) if *before != fp => {
                    bail!("restored schema differs: {}", before.diff(&fp).join("; "))
                }
                Some(_) => {
                    let state = match m.neon.as_ref().and_then(|b| b.at) {
                        Some(_) => "the recorded state of the point-in-time branch",
                        None => "the recorded pre-deploy state",
                    };
                    Ok(format!("fingerprint {} and migration rows equal {state}", fp.short()))
                }
                None => Ok(format!("restored (fingerprint {}; no recorded state to compare with)", fp.short())),
            }
        }
        .await;
        // A Neon branch is the backup itself: never dropped.
        if check.is_err() && !w.db.is_elsewhere(&names.scratch) {
            let _ = w.db.drop_database(&names.scratch).await;
        }
        check.map(Done::Ok).map_err(|e| e.context(format!("{} is untouched", names.live)))
    }
}
