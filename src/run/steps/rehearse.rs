//! The rehearsal (`deploy.rehearse: true`): the verified backup restored into a scratch
//! database, the release's migrations run up there and then reverted, and the copy compared
//! with the backup — schema, migration rows and every table's rows. A migration that fails on
//! the copy stops the deploy before production is touched; a revert that does not bring
//! everything back means a rollback will restore. The copy is dropped whatever happens.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::backup;
use crate::db::locks::{self, HeldLock, Sample};
use crate::exec::{self, Cmd};
use crate::guard::Mode;
use crate::model::DbNames;
use crate::record::{Rehearsal, RehearsedMigration};

pub struct Rehearse;

/// `deploy.rehearse: true`, or the `rehearse` command itself.
fn enabled(run: &Run) -> bool {
    run.mode == Mode::Rehearse || run.w.config.deploy.rehearse
}

impl Rehearse {
    /// The migration tool's command, aimed at the copy.
    pub(super) fn on_copy(run: &Run, label: &str, script: &str, copy: &str) -> Option<Cmd> {
        let tag = run.tag.as_deref()?;
        Some(super::tool_cmd_on(run, label, tag, script, copy))
    }

    fn cmds(run: &Run) -> Option<(DbNames, Cmd, Option<Cmd>)> {
        let names = run.db_names().ok()?;
        let tag = run.tag.as_deref()?;
        let w = run.w;
        let up =
            Self::on_copy(run, "rehearse migrate", &w.migrator.run_script(tag, run.sha.as_str()), &names.rehearse)?;
        let recorded = run.manifest.as_ref().map(|m| m.migrations.rows.as_slice());
        let down = w
            .migrator
            .revert_script(tag, run.sha.as_str(), recorded)
            .and_then(|s| Self::on_copy(run, "rehearse revert", &s, &names.rehearse));
        Some((names, up, down))
    }
}

#[async_trait]
impl StepSpec for Rehearse {
    fn what(&self, run: &Run) -> String {
        if !enabled(run) {
            return "off (deploy.rehearse): the migrations first run on production".into();
        }
        let copy = run.db_names().map(|n| n.rehearse).unwrap_or_default();
        if run.w.config.backup.provider == crate::config::Provider::Neon {
            return format!(
                "branch the pre-deploy branch as deploy-guard/rehearse-{} (read-write), run the migrations up and back \
                 down there, compare with the pre-deploy branch, delete it",
                run.sha.short()
            );
        }
        format!("restore the backup into {copy}, run the migrations up and back down there, compare with the backup")
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        if !enabled(run) {
            return Vec::new();
        }
        let db = &run.w.db;
        let mut out = vec![db.query_cmd(&db.maintenance_db), db.version_cmd("psql")];
        if let Some((names, up, down)) = Self::cmds(run) {
            out.push(db.restore_cmd_for(super::restore::backup_kind(run).0, &names.rehearse, true));
            out.push(db.query_cmd(&names.rehearse));
            out.push(up);
            out.extend(down);
        }
        out
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        vec![
            "# the migrations failed on a copy of production's data: production was not touched".into(),
            "# fix the release, then deploy again; to see it fail on the copy:".into(),
            run.dg(&format!("deploy --sha {} --tag {} --dry-run", run.sha, run.tag.as_deref().unwrap_or("TAG"))),
        ]
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        if !enabled(run) {
            return Ok(Done::Ok("off (deploy.rehearse)".into()));
        }
        let (names, up, down) = Self::cmds(run).context("nothing to rehearse: no tag or database names")?;
        let m = run.manifest()?.clone();
        let watch_name = format!("deploy-guard-lockwatch-{}", run.sha.short());
        let ours = w.migration_table_key();
        // Every table's rows at the backup, summed while the copy is restored: the revert is
        // compared with all of them.
        let unsummed: BTreeSet<String> = m
            .dumped_tables()
            .into_iter()
            .filter(|t| !m.data.contains_key(*t) && ours.as_deref() != Some(t.as_str()))
            .cloned()
            .collect();
        let mut summed = BTreeMap::new();
        // On Neon the copy is a writable branch of the pre-deploy branch: nothing to restore.
        let pre = run.neon_branch().await?;
        let neon = w.neon.as_ref().zip(m.neon.as_ref());
        let copy_branch = match neon {
            Some((n, b)) => Some(n.rehearsal_copy(&w.db, &names.rehearse, &b.id, &run.sha).await?),
            None => {
                w.db.create_scratch(&names.rehearse).await?;
                None
            }
        };
        // The tool's commands aimed at the branch's own endpoint, now that it has one.
        let (up, down) = match copy_branch {
            Some(_) => Self::cmds(run).map(|(_, up, down)| (up, down)).context("nothing to rehearse")?,
            None => (up, down),
        };
        let stored = m.stored();
        let result: Result<Rehearsal> = async {
            let t = Instant::now();
            let sum = async {
                if down.is_none() || unsummed.is_empty() {
                    return Ok(BTreeMap::new());
                }
                let Some(pre) = &pre else { return backup::sums(w.store.as_ref(), &stored, unsummed.clone()).await };
                let mut read = BTreeMap::new();
                for t in &unsummed {
                    let columns = m.tables.get(t).cloned().unwrap_or_default();
                    read.insert(t.clone(), w.db.table_sum(pre, t, &columns).await?);
                }
                Ok(read)
            };
            let sum = async { sum.await.context("reading the backup's rows to compare the revert with") };
            let restore = async {
                match copy_branch {
                    Some(_) => Ok(0),
                    None => backup::restore_stream(&w.db, w.store.as_ref(), &stored, &names.rehearse).await,
                }
            };
            // Joined, not tried: a restore dropped half way would leave its work on the target.
            let (restored, sums) = tokio::join!(restore, sum);
            restored?;
            summed = sums?;
            let how = if copy_branch.is_some() { "a branch of the pre-deploy branch" } else { "the backup restored" };
            tracing::info!("rehearse: {how} as {} in {:.1} s", names.rehearse, t.elapsed().as_secs_f64());
            let before = w.migration_rows(&names.rehearse).await?;
            let clock = Instant::now();
            let table = w.migration_table_key();
            let watch = w.db.watch_locks(&names.rehearse, table.as_deref(), &watch_name, clock).await;
            let ran = Self::up_and_down(run, &names.rehearse, &up, down.as_ref(), &before, clock).await;
            let samples = match watch {
                Ok(watch) => watch.stop(&w.db).await,
                Err(e) => Err(e),
            };
            let (mut r, timeline) = ran?;
            match samples {
                Ok(samples) => timeline.report(&mut r, &samples, w.config.migrations.lock_warn),
                Err(e) => r.notes.push(format!("locks were not observed: {e:#}")),
            }
            tracing::info!(
                "rehearse: up in {:.1} s, down in {:.1} s; comparing with the backup",
                r.up_secs,
                r.down_secs
            );
            if down.is_none() || !r.differences.is_empty() {
                return Ok(r);
            }
            let fp = w.db.fingerprint(&names.rehearse).await?;
            let rows = w.migration_rows(&names.rehearse).await?;
            r.revert_restores_schema = m.fingerprint.as_ref() == Some(&fp) && rows == m.migrations.rows;
            if !r.revert_restores_schema {
                let diff = m.fingerprint.as_ref().map(|b| b.diff(&fp)).unwrap_or_default();
                r.differences.push(format!("schema after the revert: {}", diff.join("; ")));
            }
            r.revert_restores_data = true;
            for (table, sum) in m.data.iter().chain(&summed) {
                if ours.as_deref() == Some(table.as_str()) {
                    continue;
                }
                match w.db.table_sum(&names.rehearse, table, &sum.columns).await {
                    Ok(now) if now.same_rows(sum) => {}
                    Ok(now) => {
                        r.revert_restores_data = false;
                        r.differences
                            .push(format!("rows of {table} after the revert: {} then, {} now", sum.rows, now.rows));
                    }
                    Err(e) => {
                        r.revert_restores_data = false;
                        r.differences.push(format!("{table}: {e:#}"));
                    }
                }
            }
            Ok(r)
        }
        .await;
        let dropped = match (neon, &copy_branch) {
            (Some((n, _)), Some(id)) => n.api.delete_branch(id).await,
            _ => w.db.drop_database(&names.rehearse).await,
        };
        if let Err(e) = dropped {
            tracing::warn!("could not drop the rehearsal copy {}: {e:#}", names.rehearse);
        }
        let r = result?;
        let locks = if r.long_locks.is_empty() {
            String::new()
        } else {
            let each: Vec<String> = r.long_locks.iter().map(HeldLock::describe).collect();
            format!(
                "; locks held over {}: {}",
                humantime::format_duration(w.config.migrations.lock_warn),
                each.join("; ")
            )
        };
        let detail = format!(
            "{} migration(s) applied on the copy in {:.1} s, reverted in {:.1} s{locks}; the revert {}",
            r.applied,
            r.up_secs,
            r.down_secs,
            if r.differences.is_empty() {
                "brings back the schema, the migration rows and every row".to_string()
            } else {
                format!("does NOT bring everything back (a rollback will restore): {}", r.differences.join("; "))
            }
        );
        if let Some(m) = run.manifest.as_mut() {
            m.data.extend(summed);
            m.rehearsal = Some(r.clone());
        }
        run.persist().await;
        Ok(Done::Ok(detail))
    }
}

impl Rehearse {
    /// Runs the migrations up on `copy`, then reverts them one by one, timing each part on
    /// `clock`. A failure of the up is the error; a failed revert is a difference.
    async fn up_and_down(
        run: &Run<'_>,
        copy: &str,
        up: &Cmd,
        down: Option<&Cmd>,
        before: &[serde_json::Value],
        clock: Instant,
    ) -> Result<(Rehearsal, Timeline)> {
        let w = run.w;
        let now = || clock.elapsed().as_secs_f64();
        let up_start = now();
        let out = exec::capture(w.exec.as_ref(), up).await?;
        let recorded = run.manifest.as_ref().map(|m| m.migrations.rows.clone()).unwrap_or_default();
        super::live_untouched(run, &recorded, "the rehearsal's migrations").await?;
        if let Err(e) = out.exit.check("the migrations on the copy") {
            bail!("{e:#}: production was not touched");
        }
        let up_end = now();
        let after = w.migration_rows(copy).await?;
        let applied = w.migrator.applied(before, &after).unwrap_or(0);
        let names: Vec<String> = match crate::migrate::applied_since(before, &after) {
            Some(rows) if w.migrator.history == crate::migrate::History::Appends => {
                rows.iter().map(crate::migrate::row_name).collect()
            }
            _ => after.last().map(crate::migrate::row_name).into_iter().collect(),
        };
        let mut r = Rehearsal { applied, up_secs: up_end - up_start, ..Default::default() };
        let mut t = Timeline { up: (up_start, up_end), rows: (before.len(), after.len()), names, reverts: Vec::new() };
        let Some(down) = down else {
            r.differences.push("no revert: a rollback restores the backup".into());
            return Ok((r, t));
        };
        let mut rows = after;
        for i in 0..applied {
            let start = now();
            let out = exec::capture(w.exec.as_ref(), down).await?;
            let end = now();
            let name = t.names.len().checked_sub(i + 1).map(|k| t.names[k].clone()).unwrap_or_default();
            t.reverts.push((start, end, name.clone()));
            if let Err(e) = out.exit.check(&format!("revert {} of {applied} on the copy", i + 1)) {
                r.differences.push(format!("{e:#}"));
                return Ok((r, t));
            }
            let now_rows = w.migration_rows(copy).await?;
            if !w.migrator.reverted_one(&rows, &now_rows, &recorded) {
                r.differences.push(format!("the revert of {name} did not remove exactly its migration row"));
            }
            rows = now_rows;
            r.down_secs += end - start;
        }
        Ok((r, t))
    }
}

/// When each part of the rehearsal ran, on the lock sampler's clock.
struct Timeline {
    up: (f64, f64),
    /// The migration table's row count before and after the up.
    rows: (usize, usize),
    /// The applied migrations' names, in order (head-only tools: the new head).
    names: Vec<String>,
    /// Each revert: start, end, the migration it reverts.
    reverts: Vec<(f64, f64, String)>,
}

impl Timeline {
    /// Per-migration durations and the long locks, from the sampler's samples.
    fn report(&self, r: &mut Rehearsal, samples: &[Sample], warn: std::time::Duration) {
        let (up_start, up_end) = self.up;
        // When each applied migration's row became visible: its commit (the last ones: the end).
        let mut seen = locks::row_times(samples, self.rows.0 as i64, self.rows.1 as i64);
        seen.resize(self.names.len(), None);
        let done: Vec<f64> = seen.iter().map(|t| t.unwrap_or(up_end).clamp(up_start, up_end)).collect();
        let mut migrations: Vec<RehearsedMigration> = Vec::new();
        let mut prev = up_start;
        let mut i = 0;
        while i < self.names.len() {
            let group = done[i..].iter().take_while(|t| **t == done[i]).count();
            for name in &self.names[i..i + group] {
                migrations.push(RehearsedMigration {
                    name: name.clone(),
                    up_secs: done[i] - prev,
                    committed_with: group,
                    down_secs: None,
                });
            }
            prev = done[i];
            i += group;
        }
        for (start, end, name) in &self.reverts {
            if let Some(m) = migrations.iter_mut().rev().find(|m| &m.name == name && m.down_secs.is_none()) {
                m.down_secs = Some(end - start);
            }
        }
        let during = |at: f64| -> (String, bool) {
            if let Some((_, _, name)) = self.reverts.iter().find(|(s, e, _)| (*s..=*e).contains(&at)) {
                return (name.clone(), true);
            }
            // The migration (or the ones committed together) whose commit came next.
            let k = done.iter().position(|t| *t >= at).unwrap_or(done.len().saturating_sub(1));
            let names: Vec<&str> = migrations
                .iter()
                .enumerate()
                .filter(|(j, _)| done.get(*j) == done.get(k))
                .map(|(_, m)| m.name.as_str())
                .collect();
            (names.join(" + "), false)
        };
        r.long_locks = locks::long_locks(samples, warn, during);
        r.lock_warn_secs = warn.as_secs_f64();
        r.migrations = migrations;
    }
}
