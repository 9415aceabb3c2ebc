//! Once the service is back: in the tables the migrations changed rows of, the lost writes are
//! told from the migrations' own. The backup is restored into a scratch copy, the release's
//! migrations run on it (what the database would hold had nothing been written after the
//! backup), and each differing row held by `lost-writes` is looked up there. The app's writes
//! join the replay file; a table where some row was changed by both is left out and named with
//! its counts and the query to look at it by hand. The copy is dropped whatever happens.

use anyhow::{Context, Result};
use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::rehearse::Rehearse;
use super::{Done, Run, StepSpec};
use crate::exec::{self, Cmd};
use crate::guard::Step;

pub struct AppWrites;

impl AppWrites {
    fn migrate_on_copy(run: &Run) -> Option<Cmd> {
        let names = run.db_names().ok()?;
        let tag = run.tag.as_deref()?;
        Rehearse::on_copy(run, "apart migrate", &run.w.migrator.run_script(tag, run.sha.as_str()), &names.apart)
    }
}

#[async_trait]
impl StepSpec for AppWrites {
    fn what(&self, run: &Run) -> String {
        let copy = run.db_names().map(|n| n.apart).unwrap_or_default();
        format!(
            "where the migrations changed rows too: restore the backup into {copy}, run the migrations there, and keep \
             in the replay file only the rows the app wrote"
        )
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let db = &run.w.db;
        let Ok(names) = run.db_names() else { return Vec::new() };
        let mut out = vec![db.query_cmd(&db.maintenance_db)];
        out.push(db.restore_cmd_for(super::restore::backup_kind(run).0, &names.apart, true));
        out.extend(Self::migrate_on_copy(run));
        out.extend([db.query_cmd(&names.apart), db.query_cmd(&names.failed)]);
        out
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        vec![
            "# the writes the restore took away were found; in the tables the migrations changed too, compare the"
                .into(),
            "# kept database with the live one by hand before replaying anything there:".into(),
            run.dg(&format!("replay --sha {} --dry-run", run.sha.short())),
        ]
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let held = std::mem::take(&mut run.found.held);
        if held.is_empty() {
            let why = match run.found.lost_writes {
                None => "no restore: no lost writes to tell apart",
                Some(_) => "nothing to tell apart: the migrations changed no rows where writes were lost",
            };
            return Ok(Done::Ok(why.into()));
        }
        let w = run.w;
        let names = run.db_names()?;
        let stored = run.manifest()?.stored();
        let recorded = run.manifest()?.migrations.rows.clone();
        let up = Self::migrate_on_copy(run).context("no tag to run the migrations of")?;
        // A release whose migrations failed on production fails the same way on the copy: the
        // copy then holds what they did before failing, which is what production held.
        let failed_on_production =
            run.journal.entries.iter().any(|e| e.step == Step::Migrate && e.state == crate::guard::EntryState::Failed);
        w.db.create_scratch(&names.apart).await?;
        let result: Result<(Vec<u8>, Vec<crate::db::Apart>)> = async {
            crate::backup::restore_stream(&w.db, w.store.as_ref(), &stored, &names.apart).await?;
            let ran = exec::capture(w.exec.as_ref(), &up).await?;
            super::live_untouched(run, &recorded, "the migrations run to tell the writes apart").await?;
            if w.migration_rows(&names.apart).await? == recorded && !failed_on_production {
                anyhow::bail!(
                    "the migrations did not reach the copy {} ({}): nothing to tell the writes apart with",
                    names.apart,
                    crate::migrate::failure_quote(&ran.stdout, &ran.exit.stderr_tail, 4)
                );
            }
            if !ran.exit.success() && !failed_on_production {
                anyhow::bail!(
                    "the migrations failed on the copy ({}): {}",
                    ran.exit.describe(),
                    crate::migrate::failure_quote(&ran.stdout, &ran.exit.stderr_tail, 4)
                );
            }
            let mut sql = Vec::new();
            let mut found = Vec::new();
            for h in &held {
                let apart = w.db.apart(&names.failed, &names.apart, h, &mut sql).await?;
                if apart.mixed.is_empty() && apart.loss.total() > 0 {
                    for s in w.db.sequences_past_rows(&names.live, &h.shape.table).await? {
                        sql.extend_from_slice(format!("{s}\n").as_bytes());
                    }
                }
                found.push(apart);
            }
            Ok((sql, found))
        }
        .await;
        if let Err(e) = w.db.drop_database(&names.apart).await {
            tracing::warn!("could not drop the copy {}: {e:#}", names.apart);
        }
        let mut lost = run.found.lost_writes.clone().unwrap_or_default();
        let tables: Vec<String> = held.iter().map(|h| h.shape.table.clone()).collect();
        lost.held.retain(|t| !tables.contains(t));
        let (sql, found) = match result {
            Ok(r) => r,
            Err(e) => {
                for t in &tables {
                    lost.not_compared
                        .push((t.clone(), format!("the app's writes could not be told from the migrations': {e:#}")));
                }
                self.save(run, lost, None).await?;
                return Err(e);
            }
        };
        let mut said = Vec::new();
        for (h, a) in held.iter().zip(found) {
            let t = &h.shape.table;
            if !a.mixed.is_empty() {
                let sample: Vec<&str> = a.mixed.iter().take(5).map(String::as_str).collect();
                lost.not_compared.push((
                    t.clone(),
                    format!(
                        "{} row(s) were changed by both the migrations and the app ({} by the app alone, {} by the \
                         migrations alone): left out of the replay. Look by hand, in {} and in {}: SELECT * FROM {t} \
                         WHERE row({})::text IN ({})",
                        a.mixed.len(),
                        a.loss.total(),
                        a.loss.migrations_own,
                        names.failed,
                        names.live,
                        h.shape.key.iter().map(|k| crate::db::ident(k)).collect::<Vec<_>>().join(", "),
                        sample.iter().map(|k| crate::db::literal(k)).collect::<Vec<_>>().join(", "),
                    ),
                ));
                said.push(format!("{t}: left out ({} row(s) changed by both)", a.mixed.len()));
                continue;
            }
            said.push(format!(
                "{t}: {} of the app's row(s) kept, {} of the migrations' own left out",
                a.loss.total(),
                a.loss.migrations_own
            ));
            if a.loss.total() > 0 {
                lost.tables.push(a.loss);
            }
        }
        self.save(run, lost, Some(sql)).await?;
        Ok(Done::Ok(said.join("; ")))
    }
}

impl AppWrites {
    /// Appends `sql` to the replay file (written anew, its hash in the manifest updated) and
    /// records what was found.
    async fn save(&self, run: &mut Run<'_>, mut lost: crate::record::LostWrites, sql: Option<Vec<u8>>) -> Result<()> {
        let w = run.w;
        lost.tables.retain(|t| t.total() > 0);
        if let Some(sql) = sql.filter(|s| !s.is_empty()) {
            let mut file = w.store.get_bytes(&lost.key).await.with_context(|| format!("reading {}", lost.key))?;
            if hex::encode(Sha256::digest(&file)) != lost.sha256 {
                anyhow::bail!("{} changed since it was written: not appending to it", lost.key);
            }
            file.extend_from_slice(&sql);
            lost.sha256 = hex::encode(Sha256::digest(&file));
            w.store
                .put(&lost.key, &mut &file[..], crate::store::Put::Replace)
                .await
                .with_context(|| format!("writing {}", lost.key))?;
        }
        if lost.tables.is_empty() && lost.held.is_empty() && !lost.key.is_empty() {
            // Only the migrations' own changes: no file to review.
            w.store.delete(&lost.key).await.with_context(|| format!("removing {}", lost.key))?;
            lost.key.clear();
            lost.sha256.clear();
        }
        if let Some(m) = run.manifest.as_mut() {
            m.lost_writes = Some(lost.clone());
        }
        run.found.lost_writes = Some(lost);
        run.persist().await;
        Ok(())
    }
}
