use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::Action;
use crate::backup;
use crate::exec::Cmd;
use crate::guard::Mode;

pub struct Preflight;

#[async_trait]
impl StepSpec for Preflight {
    fn what(&self, run: &Run) -> String {
        match run.mode {
            Mode::Deploy | Mode::Rehearse => {
                "store writable, database reachable, migration table readable and not failed or dirty, deploy lock, \
                 no unfinished deploy, previous tag"
                    .into()
            }
            Mode::Backup => "store writable, database reachable, deploy lock".into(),
            Mode::Rollback | Mode::Restore => "database server reachable, deploy lock".into(),
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let db = &run.w.db;
        let mut out = vec![db.query_cmd(&db.maintenance_db)];
        if matches!(run.mode, Mode::Deploy | Mode::Backup | Mode::Rehearse) {
            out.push(db.query_cmd(&db.name));
        }
        if matches!(run.mode, Mode::Deploy | Mode::Rehearse) {
            out.extend(run.w.runtime.cmd(Action::CurrentTag));
        }
        out
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        let mut c = vec!["# the run could not start: find what is unreachable".into(), run.dg("check")];
        match run.mode {
            Mode::Rollback => c.push(run.dg(&format!("rollback --sha {}", run.sha.short()))),
            Mode::Restore => c.push(run.dg(&format!("restore --sha {}", run.sha.short()))),
            Mode::Deploy | Mode::Backup | Mode::Rehearse => {}
        }
        c
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        if matches!(run.mode, Mode::Rollback | Mode::Restore) {
            let version =
                w.db.server_version(&w.db.maintenance_db).await.context("the database server is not reachable")?;
            run.lock = Some(w.db.lock(&w.lock_key()).await?);
            return Ok(Done::Ok(format!("PostgreSQL {version} ok; deploy lock taken")));
        }
        // Fail before a long dump, not after it: the store must be there and writable.
        w.store.check().await.with_context(|| format!("backup store {} is not usable", w.store.describe()))?;
        let version =
            w.db.server_version(&w.db.name)
                .await
                .with_context(|| format!("database {} is not reachable", w.db.name))?;
        run.server_version = Some(version.clone());
        w.migration_rows(&w.db.name).await?;
        w.migrator.refuse_failed_state(&w.db, &w.db.name).await?;
        run.lock = Some(w.db.lock(&w.lock_key()).await?);
        if run.mode == Mode::Backup {
            return Ok(Done::Ok(format!(
                "store {} ok; PostgreSQL {version} ok; deploy lock taken",
                w.store.describe()
            )));
        }
        w.runtime.validate().await.context("app")?;
        refuse_unfinished_runs(run).await?;
        if run.previous_tag.is_none() {
            run.previous_tag = w.runtime.current_tag().await.context("cannot read the running tag")?;
            if run.previous_tag.is_none() {
                run.previous_tag = run.fallback_previous_tag.clone();
            }
        }
        let Some(prev) = &run.previous_tag else {
            bail!("cannot tell which tag runs now (app.commands.current_tag printed nothing); pass --previous-tag TAG");
        };
        crate::config::check_tag("the running tag", prev)?;
        Ok(Done::Ok(format!(
            "store {} ok; PostgreSQL {version} ok; deploy lock taken; running tag {prev}",
            w.store.describe()
        )))
    }
}

/// A deploy that stopped half-way (job cancelled, runner lost), or whose rollback failed and no
/// one has resolved (`deploy-guard resolve`), must be dealt with first: never stack a deploy on
/// top of an unknown state.
async fn refuse_unfinished_runs(run: &Run<'_>) -> Result<()> {
    let w = run.w;
    let mine: Vec<_> =
        backup::list(w.store.as_ref()).await?.into_iter().filter(|m| m.project == w.config.project).collect();
    if let Some(m) = mine.iter().find(|m| m.outcome.is_none() && m.tag.is_some()) {
        let at = m.journal.interrupted().map(|e| e.step.name()).unwrap_or("an unknown step");
        bail!(
            "an earlier deploy of {} (sha {}) stopped during `{at}` and never finished; \
             run `{}` (or inspect and re-run it) first",
            m.tag.as_deref().unwrap_or("?"),
            m.sha,
            run.dg(&format!("rollback --sha {}", m.sha.short()))
        );
    }
    if let Some(m) = mine.iter().find(|m| m.unresolved_failure()) {
        bail!(
            "the rollback of the deploy of {} (sha {}) failed and no one has recorded what was done about it: \
             deploying on top of a half-rolled-back database is refused. Finish it (`{}`) or repair it by hand, then record what was done with `{}`",
            m.tag.as_deref().unwrap_or("?"),
            m.sha,
            run.dg(&format!("rollback --sha {}", m.sha.short())),
            run.dg(&format!("resolve --sha {} --note \"what you did\"", m.sha.short()))
        );
    }
    Ok(())
}
