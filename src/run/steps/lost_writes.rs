use anyhow::{Context, Result};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Done, Run, StepSpec};
use crate::db::TableLoss;
use crate::exec::Cmd;
use crate::model::BackupName;
use crate::record::LostWrites as Found;

/// After the swap: the kept database holds every write made after the backup's snapshot;
/// those the restore took away (and the sequences it set back) are written to a replay file
/// beside the backup (never applied by itself: `deploy-guard replay --sha SHA`).
pub struct LostWrites;

#[async_trait]
impl StepSpec for LostWrites {
    fn what(&self, run: &Run) -> String {
        let failed = run.db_names().map(|n| n.failed).unwrap_or_else(|_| "the kept database".into());
        format!(
            "compare {failed} with the restored database, by primary key, for the tables written after the backup; \
             the differences go to a replay file beside the backup"
        )
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let db = &run.w.db;
        let mut out = vec![db.query_cmd(&db.name)];
        if let Ok(n) = run.db_names() {
            out.push(db.query_cmd(&n.failed));
        }
        out
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        vec![run.dg(&format!("replay --sha {} --dry-run", run.sha.short()))]
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let names = run.found.restored.clone().context("no swap happened")?;
        let m = run.manifest()?.clone();
        let touched = run.found.assessed.as_ref().map(|a| a.touched.clone()).unwrap_or_default();
        let stats_now = w.db.table_stats(&names.failed).await?;
        // Tables that saw writes since the backup (all of them when nothing was recorded), but
        // not the migration table: its rows are the migrations' own, and the restore put it
        // back as it must be.
        let migration_table = w.migration_table_key();
        let candidates: Vec<&String> = m
            .dumped_tables()
            .into_iter()
            .filter(|t| migration_table.as_deref() != Some(t.as_str()))
            .filter(|t| m.stats.is_empty() || stats_now.get(*t) != m.stats.get(*t))
            .collect();
        let key = BackupName::from_key(&m.key).replay_key(chrono::Utc::now());
        let mut found = Found::default();
        let sha = std::sync::Arc::new(std::sync::Mutex::new(Sha256::new()));
        let (tx, mut rx) = tokio::io::duplex(64 * 1024);
        // Hashed as it is written, so no table's statements are ever held whole.
        let hashing = sha.clone();
        let mut tx = tokio_util::io::InspectWriter::new(tx, move |b| hashing.lock().expect("sha").update(b));
        let produce = async {
            let header = format!(
                "-- deploy-guard: writes made to {} after the backup {} and lost by its restore.\n\
                 -- Idempotent; review it, then: deploy-guard replay --sha {}\n",
                names.live,
                m.key,
                run.sha.short()
            );
            tx.write_all(header.as_bytes()).await?;
            for t in candidates {
                let shape = match w.db.loss_shape(&names.live, &names.failed, t).await {
                    Ok(s) => s,
                    Err(e) => {
                        found.not_compared.push((t.clone(), format!("{e:#}")));
                        continue;
                    }
                };
                let loss: TableLoss = w.db.table_loss(&names.live, &names.failed, &shape, &mut tx).await?;
                if loss.total() > 0 {
                    if touched.contains(t) {
                        found.touched_by_migrations.push(t.clone());
                    }
                    found.tables.push(loss);
                }
            }
            for statement in w.db.sequence_catchup(&names.live, &names.failed).await? {
                tx.write_all(format!("{statement}\n").as_bytes()).await?;
            }
            tx.shutdown().await?;
            anyhow::Ok(())
        };
        let store = w.store.clone();
        let stored_at = key.clone();
        let put = async move { store.put(&stored_at, &mut rx, crate::store::Put::New).await };
        let (produced, stored) = tokio::join!(produce, put);
        produced?;
        stored.context("storing the replay file")?;
        if found.tables.is_empty() {
            // Nothing lost: no file to review.
            w.store.delete(&key).await.context("removing the empty replay file")?;
        } else {
            found.key = key;
            found.sha256 = hex::encode(sha.lock().expect("sha").clone().finalize());
        }
        let (ins, upd, del) =
            found.tables.iter().fold((0, 0, 0), |a, t| (a.0 + t.inserted, a.1 + t.updated, a.2 + t.deleted));
        let detail = if found.tables.is_empty() {
            "no writes after the backup were lost".to_string()
        } else {
            format!(
                "{ins} row(s) inserted, {upd} updated, {del} deleted after the backup, in {} table(s): {} (apply with `{}`)",
                found.tables.len(),
                found.key,
                run.dg(&format!("replay --sha {}", run.sha.short()))
            )
        };
        if let Some(m) = run.manifest.as_mut() {
            m.lost_writes = Some(found.clone());
        }
        run.found.lost_writes = Some(found);
        run.persist().await;
        Ok(Done::Ok(detail))
    }
}
