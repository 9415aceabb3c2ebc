use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::tool::{self, Tool};
use super::{Done, Run, StepSpec};
use crate::exec::{self, Cmd};

/// The fast path: the tool's revert, once per migration this deploy applied, with the code of
/// the new tag (it has the down migrations).
pub struct Revert;

impl Revert {
    fn cmd(run: &Run) -> Option<Cmd> {
        let tag = run.tag.as_deref()?;
        let recorded = run.manifest.as_ref().map(|m| &m.migrations.rows[..]);
        let script = run.w.migrator.revert_script(tag, run.sha.as_str(), recorded)?;
        Some(tool::cmd(run, Tool::Revert, tag, &script))
    }
}

#[async_trait]
impl StepSpec for Revert {
    fn what(&self, run: &Run) -> String {
        match run.w.migrator.revert {
            Some(_) => "fast path: revert each migration this deploy applied".into(),
            None => "fast path: no revert command is configured, so it is never taken".into(),
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let mut out: Vec<Cmd> = Self::cmd(run).into_iter().collect();
        out.push(run.w.db.query_cmd(&run.w.db.name));
        out.extend(tool::end_commands(run, Tool::Revert));
        out
    }

    fn manual(&self, run: &Run) -> Vec<String> {
        match Self::cmd(run) {
            Some(c) => vec![run.w.fleet.shown(&c)],
            None => vec!["# no revert command is configured (migrations.revert): use the safe path".into()],
        }
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        super::assess::Assess.by_hand(run)
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let tag = run.code_tag()?.to_string();
        let table = w.migrator.table.clone().context("no migration table")?;
        let cmd = Self::cmd(run).context("no revert command")?;
        let applied = run.found.assessed.as_ref().map_or(0, |a| a.applied);
        let mut rows = w.db.migration_rows(&w.db.name, &table, &w.migrator.order_by).await?;
        for i in 0..applied {
            match exec::capture(w.exec.as_ref(), &cmd).await {
                Ok(out) if out.exit.success() => {}
                Ok(out) if out.exit.code.is_some() => bail!(
                    "revert {} of {applied} failed ({}): {}",
                    i + 1,
                    out.exit.describe(),
                    crate::migrate::failure_quote(&out.stdout, &out.exit.stderr_tail, 6)
                ),
                // Timed out, killed, or its channel lost: it can run on where it was started,
                // changing the database the restore is about to replace, or reconnect to the
                // restored one. It is ended first.
                failed => {
                    let what = match failed {
                        Ok(out) => format!("revert {} of {applied} failed ({})", i + 1, out.exit.describe()),
                        Err(e) => format!("revert {} of {applied} could not be run to the end: {e:#}", i + 1),
                    };
                    let (why, ended) = tool::failed(run, Tool::Revert, what).await;
                    match ended {
                        Ok(done) => bail!("{why}; {done}"),
                        Err(e) => bail!(
                            "{why}; ending it failed too, so it may still be running: {e:#}. The restore's swap \
                             ends every session on the live database; check the target for the revert's process"
                        ),
                    }
                }
            }
            let now = w.db.migration_rows(&w.db.name, &table, &w.migrator.order_by).await?;
            if !w.migrator.reverted_one(&rows, &now, &run.manifest()?.migrations.rows) {
                bail!(
                    "revert {} of {applied} exited 0 but the migration table went from {} to {} rows instead of \
                     going back one migration",
                    i + 1,
                    rows.len(),
                    now.len()
                );
            }
            rows = now;
        }
        Ok(Done::Ok(format!("{applied} migration(s) reverted with the code of {tag}")))
    }
}
