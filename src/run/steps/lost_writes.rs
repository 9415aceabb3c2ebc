use anyhow::{Context, Result};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Done, Run, StepSpec};
use crate::db::TableLoss;
use crate::exec::Cmd;
use crate::model::BackupName;
use crate::record::LostWrites as Found;

/// At most this many differing rows of a table the migrations changed are held to be told
/// apart (key, hashes: about 100 bytes each).
const HOLD: usize = 200_000;

/// The replay file's first lines.
pub fn header(live: &str, backup: &str, replay: &str) -> String {
    format!(
        "-- deploy-guard: writes made to {live} after the backup {backup} and lost by its restore.\n\
         -- Idempotent; review it, then: {replay}\n"
    )
}

/// The step's line: what was lost, what waits to be told apart, what was not compared. "No
/// writes were lost" only when every table was compared.
pub fn describe(found: &Found, replay: &str) -> String {
    let (ins, upd, del) =
        found.tables.iter().fold((0, 0, 0), |a, t| (a.0 + t.inserted, a.1 + t.updated, a.2 + t.deleted));
    let mut parts = Vec::new();
    if !found.tables.is_empty() {
        parts.push(format!(
            "{ins} row(s) inserted, {upd} updated, {del} deleted after the backup, in {} table(s): {} (apply with `{replay}`)",
            found.tables.len(),
            found.key
        ));
    }
    if !found.held.is_empty() {
        parts.push(format!(
            "the migrations changed rows of {} too: the app's writes there are told from theirs once the service is back",
            found.held.join(", ")
        ));
    }
    if !found.not_compared.is_empty() {
        let list: Vec<String> = found.not_compared.iter().map(|(t, why)| format!("{t} ({why})")).collect();
        parts.push(format!("NOT compared, writes there may be lost: {}", list.join("; ")));
    }
    if parts.is_empty() {
        return "no writes after the backup were lost (every table compared)".into();
    }
    if found.tables.is_empty() && found.held.is_empty() {
        parts.insert(0, "no lost writes in the tables compared".into());
    }
    parts.join("; ")
}

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
        // Where the migrations' own changes may be among the differences: their tables wait to
        // be told apart (unknown: every table the deploy touched).
        let migrated = m.migrated.clone().unwrap_or_else(|| touched.clone());
        let stats_now = match run.found.kept_stats.clone() {
            Some(read_before_the_restore) => read_before_the_restore,
            None => w.db.table_stats(&names.failed).await?,
        };
        // A kept Neon branch read through a new compute: its counters started again.
        let elsewhere = w.db.is_elsewhere(&names.failed) && run.found.kept_stats.is_none();
        // The kept database is the one the migrations ran on: its identities tell their renames.
        let renames = match &m.identities {
            Some(then) => crate::db::Renames::between(then, &w.db.identities(&names.failed).await?),
            None => crate::db::Renames::default(),
        };
        // Tables that saw writes since the backup (all of them when nothing was recorded), but
        // not the migration table: its rows are the migrations' own, and the restore put it
        // back as it must be.
        let migration_table = w.migration_table_key();
        let candidates: Vec<&String> = m
            .dumped_tables()
            .into_iter()
            .filter(|t| migration_table.as_deref() != Some(t.as_str()))
            .filter(|t| m.stats.is_empty() || elsewhere || stats_now.get(renames.table(t)) != m.stats.get(*t))
            .collect();
        let key = BackupName::from_key(&m.key).replay_key(chrono::Utc::now());
        let mut found = Found::default();
        let mut held = Vec::new();
        let sha = std::sync::Arc::new(std::sync::Mutex::new(Sha256::new()));
        let (tx, mut rx) = tokio::io::duplex(64 * 1024);
        // Hashed as it is written, so no table's statements are ever held whole.
        let hashing = sha.clone();
        let tx = tokio_util::io::InspectWriter::new(tx, move |b| hashing.lock().expect("sha").update(b));
        // The writer lives in this future, so an error here ends the file (and the put) too.
        let produce = async {
            let mut tx = tx;
            tx.write_all(header(&names.live, &m.key, &run.dg(&format!("replay --sha {}", run.sha.short()))).as_bytes())
                .await?;
            for t in candidates {
                let shape = match w.db.loss_shape(&names.live, &names.failed, t, &renames).await {
                    Ok(s) => s,
                    Err(e) => {
                        found.not_compared.push((t.clone(), format!("{e:#}")));
                        continue;
                    }
                };
                if migrated.contains(t) {
                    match w.db.differing(&names.live, &names.failed, &shape, HOLD).await? {
                        Some(rows) if rows.is_empty() => {}
                        Some(rows) => {
                            found.held.push(t.clone());
                            held.push(crate::db::Held { shape, rows });
                        }
                        None => found.not_compared.push((
                            t.clone(),
                            format!(
                                "the migrations changed its rows too, and more than {HOLD} rows differ from the \
                                 backup: too many to tell the app's writes from theirs (compare {t} in {} with {} \
                                 by hand)",
                                names.failed, names.live
                            ),
                        )),
                    }
                    continue;
                }
                let loss: TableLoss = w.db.table_loss(&names.live, &names.failed, &shape, &mut tx).await?;
                if loss.total() > 0 {
                    for statement in w.db.sequences_past_rows(&names.live, t).await? {
                        tx.write_all(format!("{statement}\n").as_bytes()).await?;
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
        if let Err(e) = produced {
            // What was stored is a part of the file: never left for someone to replay.
            if stored.is_ok() {
                let _ = w.store.delete(&key).await;
            }
            return Err(e);
        }
        stored.context("storing the replay file")?;
        if found.tables.is_empty() && found.held.is_empty() {
            // Nothing lost: no file to review.
            w.store.delete(&key).await.context("removing the empty replay file")?;
        } else {
            found.key = key;
            found.sha256 = hex::encode(sha.lock().expect("sha").clone().finalize());
        }
        let detail = describe(&found, &run.dg(&format!("replay --sha {}", run.sha.short())));
        if let Some(m) = run.manifest.as_mut() {
            m.lost_writes = Some(found.clone());
        }
        run.found.lost_writes = Some(found);
        run.found.held = held;
        run.persist().await;
        Ok(Done::Ok(detail))
    }
}
