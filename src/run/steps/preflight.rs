use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::Action;
use crate::app::TagSource;
use crate::exec::Cmd;
use crate::guard::Outcome;
use crate::guard::{HostTag, Mode};
use crate::record::{self, Manifest};

pub struct Preflight;

#[async_trait]
impl StepSpec for Preflight {
    fn what(&self, run: &Run) -> String {
        match run.mode {
            Mode::Deploy | Mode::Rehearse => {
                "store writable, deploys not frozen, database reachable, migration table readable and not failed or \
                 dirty, deploy lock, no unfinished deploy, previous tag"
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
            out.extend(run.w.fleet.each(|h| h.runtime.cmd(Action::CurrentTag).into_iter().collect()));
        }
        out
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        let mut c = vec!["# the run could not start: find what is unreachable".into(), run.dg("check")];
        match run.mode {
            Mode::Rollback => c.push(run.dg(&format!("rollback --sha {}", run.sha.short()))),
            Mode::Restore => c.push(run.restore_again(&format!("restore --sha {}", run.sha.short()))),
            Mode::Deploy | Mode::Backup | Mode::Rehearse => {}
        }
        c
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        // The key and the primary branch, before anything changes.
        if let Some(n) = &w.neon {
            n.check().await.context("Neon is not usable (nothing was changed)")?;
        }
        if matches!(run.mode, Mode::Rollback | Mode::Restore) {
            let version =
                w.db.server_version(&w.db.maintenance_db).await.context("the database server is not reachable")?;
            run.hold_lock(w.db.lock(&w.lock_key(), &run.holder()).await?);
            return Ok(Done::Ok(format!("PostgreSQL {version} ok; deploy lock taken")));
        }
        // Fail before a long dump, not after it: the store must be there and writable.
        w.store.check().await.with_context(|| format!("backup store {} is not usable", w.store.describe()))?;
        if run.mode == Mode::Deploy {
            if let Some(f) = record::freeze::read(w.store.as_ref(), &w.config.project).await? {
                bail!(
                    "{f}. The deploy is refused; rollbacks and restores still run. {} lifts the freeze",
                    run.dg("lock unfreeze")
                );
            }
        }
        let version =
            w.db.server_version(&w.db.name)
                .await
                .with_context(|| format!("database {} is not reachable", w.db.name))?;
        run.found.server_version = Some(version.clone());
        w.migration_rows(&w.db.name).await?;
        w.migrator.refuse_failed_state(&w.db, &w.db.name).await?;
        run.hold_lock(w.db.lock(&w.lock_key(), &run.holder()).await?);
        if run.mode == Mode::Backup {
            return Ok(Done::Ok(format!(
                "store {} ok; PostgreSQL {version} ok; deploy lock taken",
                w.store.describe()
            )));
        }
        w.runtime.validate().await.context("app")?;
        let listing = record::list(w.store.as_ref()).await?;
        listing.warn_unreadable();
        // Fail closed: a record that cannot be trusted may be the one that says a person must act.
        if let Some(u) = listing.unreadable.iter().find(|u| u.may_wait_for_a_person(&w.config.project, &w.db.name)) {
            bail!(
                "the manifest {} in {} cannot be trusted ({}), and it may record a rollback of this deploy that \
                 failed and waits for a person: a deploy on top of it is refused. Look at it by hand; once what it \
                 records is dealt with, move it out of the store (or, if it predates DEPLOY_GUARD_MANIFEST_KEY, \
                 deploy with the key it was written with)",
                u.key,
                w.store.describe(),
                u.why
            );
        }
        let mine: Vec<Manifest> = listing
            .manifests
            .into_iter()
            .filter(|m| m.project == w.config.project && m.database == w.db.name)
            .collect();
        refuse_unfinished_runs(run, &mine)?;
        if run.previous_tag.is_none() {
            let (tag, source) = previous_tag(run, &mine).await?;
            crate::config::check_tag(&format!("the previous tag (from {})", source.describe()), &tag)?;
            run.previous_tag = Some(tag);
            run.previous_tag_source = Some(source);
        }
        let hosts = match w.fleet.several() {
            true => record_hosts(run).await?,
            false => String::new(),
        };
        let prev = run.previous_tag.as_deref().unwrap_or_default();
        let from = run.previous_tag_source.map(|s| s.describe()).unwrap_or_default();
        Ok(Done::Ok(format!(
            "store {} ok; PostgreSQL {version} ok; deploy lock taken; previous tag {prev} (from {from}){hosts}",
            w.store.describe()
        )))
    }
}

/// With several hosts: every other host's runtime checked and the tag each runs read, into the
/// journal (the primary's is the run's previous tag), so a rollback returns each to its own.
async fn record_hosts(run: &mut Run<'_>) -> Result<String> {
    let w = run.w;
    let mut hosts = Vec::new();
    for (i, host) in w.fleet.hosts().iter().enumerate() {
        let tag = match i {
            0 => run.previous_tag.clone(),
            _ => {
                host.runtime.validate().await.with_context(|| format!("host {}: app", host.name))?;
                let tag = host.runtime.current_tag().await;
                tag.with_context(|| format!("host {}: cannot read the running tag", host.name))?
                    .or_else(|| run.previous_tag.clone())
            }
        };
        hosts.push(HostTag { host: host.name.clone(), previous: tag.clone(), running: tag, abandoned: None });
    }
    let said: Vec<String> =
        hosts.iter().map(|h| format!("{} runs {}", h.host, h.running.as_deref().unwrap_or("?"))).collect();
    run.journal.hosts = hosts;
    Ok(format!("; {}", said.join(", ")))
}

/// The tag a rollback would redeploy: the steadily running app's; else (the container is gone or
/// crash-looping) the compose env file's, then the last deploy the journal saw succeed, then
/// GitHub's last successful deployment; the crash-looping container's image only when nothing
/// else knows.
async fn previous_tag(run: &Run<'_>, mine: &[Manifest]) -> Result<(String, TagSource)> {
    let read = run.w.runtime.previous_tag().await.context("cannot read the running tag")?;
    let last_resort = match read {
        Some((tag, source)) if source != TagSource::Unsteady => return Ok((tag, source)),
        other => other,
    };
    // Newest first: the last deploy that ended deployed (a later rollback of it changes its outcome).
    let journal = mine.iter().find(|m| matches!(m.outcome, Some(Outcome::Deployed))).and_then(|m| m.tag.clone());
    let github = run.fallback_previous_tag.clone();
    journal
        .map(|t| (t, TagSource::Journal))
        .or(github.map(|t| (t, TagSource::GitHub)))
        .or(last_resort)
        .context("cannot tell which tag runs now (no running app, no tag in the env file, no successful deploy in the journal or on GitHub); pass --previous-tag TAG")
}

/// A deploy that stopped half-way (job cancelled, runner lost), or whose rollback failed and no
/// one has resolved (`deploy-guard resolve`), must be dealt with first: never stack a deploy on
/// top of an unknown state.
fn refuse_unfinished_runs(run: &Run<'_>, mine: &[Manifest]) -> Result<()> {
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
