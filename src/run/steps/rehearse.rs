//! The rehearsal (`deploy.rehearse: true`): the verified backup restored into a scratch
//! database, the release's migrations run up there and then reverted, and the copy compared
//! with the backup — schema, migration rows and every table's rows. A migration that fails on
//! the copy stops the deploy before production is touched; a revert that does not bring
//! everything back means a rollback will restore. The copy is dropped whatever happens.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{tool_cmd, Done, Run, StepSpec};
use crate::backup;
use crate::exec::{self, Cmd};
use crate::guard::Mode;
use crate::model::DbNames;

pub struct Rehearse;

/// What the rehearsal found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rehearsal {
    pub applied: usize,
    pub up_secs: f64,
    pub down_secs: f64,
    pub revert_restores_schema: bool,
    pub revert_restores_data: bool,
    /// What differed after the revert.
    pub differences: Vec<String>,
}

/// `deploy.rehearse: true`, or the `rehearse` command itself.
fn enabled(run: &Run) -> bool {
    run.mode == Mode::Rehearse || run.w.config.deploy.rehearse
}

impl Rehearse {
    /// The migration tool's command, aimed at the copy.
    fn on_copy(run: &Run, label: &str, script: &str, copy: &str) -> Option<Cmd> {
        let tag = run.tag.as_deref()?;
        let mut cmd = tool_cmd(run, label, tag, script);
        cmd.env.push(("PGDATABASE".into(), copy.into()));
        Some(cmd)
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
        format!("restore the backup into {copy}, run the migrations up and back down there, compare with the backup")
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        if !enabled(run) {
            return Vec::new();
        }
        let db = &run.w.db;
        let mut out = vec![db.query_cmd(&db.maintenance_db)];
        if let Some((names, up, down)) = Self::cmds(run) {
            out.push(db.restore_cmd(&names.rehearse));
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
        w.db.create_scratch(&names.rehearse).await?;
        let result = async {
            backup::restore_stream(&w.db, w.store.as_ref(), &m, &names.rehearse).await?;
            let before = w.migration_rows(&names.rehearse).await?;
            let t = Instant::now();
            let out = exec::capture(w.exec.as_ref(), &up).await?;
            if let Err(e) = out.exit.check("the migrations on the copy") {
                bail!("{e:#}: production was not touched");
            }
            let up_secs = t.elapsed().as_secs_f64();
            let after = w.migration_rows(&names.rehearse).await?;
            let applied = w.migrator.applied(&before, &after).unwrap_or(0);
            let mut r = Rehearsal { applied, up_secs, ..Default::default() };
            let Some(down) = down else {
                r.differences.push("no revert: a rollback restores the backup".into());
                return Ok(r);
            };
            let t = Instant::now();
            for i in 0..applied {
                let out = exec::capture(w.exec.as_ref(), &down).await?;
                if let Err(e) = out.exit.check(&format!("revert {} of {applied} on the copy", i + 1)) {
                    r.differences.push(format!("{e:#}"));
                    return Ok(r);
                }
            }
            r.down_secs = t.elapsed().as_secs_f64();
            let fp = w.db.fingerprint(&names.rehearse).await?;
            let rows = w.migration_rows(&names.rehearse).await?;
            r.revert_restores_schema = m.fingerprint.as_ref() == Some(&fp) && rows == m.migrations.rows;
            if !r.revert_restores_schema {
                let diff = m.fingerprint.as_ref().map(|b| b.diff(&fp)).unwrap_or_default();
                r.differences.push(format!("schema after the revert: {}", diff.join("; ")));
            }
            r.revert_restores_data = true;
            for (table, sum) in &m.data {
                if w.migration_table_key().as_deref() == Some(table.as_str()) {
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
        if let Err(e) = w.db.drop_database(&names.rehearse).await {
            tracing::warn!("could not drop the rehearsal copy {}: {e:#}", names.rehearse);
        }
        let r = result?;
        let detail = format!(
            "{} migration(s) applied on the copy in {:.1} s, reverted in {:.1} s; the revert {}",
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
            m.rehearsal = Some(r.clone());
        }
        run.persist().await;
        Ok(Done::Ok(detail))
    }
}
