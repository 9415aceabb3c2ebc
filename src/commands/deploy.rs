//! `deploy` and `rollback`: drive the tree in their mode, then report.

use anyhow::{bail, Context, Result};

use crate::config::Strategy;
use crate::guard::plan::Plan;
use crate::guard::Mode;
use crate::model::{Sha, ShaPrefix};
use crate::report::{self, Report};
use crate::run::{self, Run};
use crate::world::World;

/// What `deploy` is asked to do.
pub struct DeployArgs<'a> {
    pub sha: &'a Sha,
    pub tag: &'a str,
    pub previous_tag: Option<&'a str>,
    /// Used when the runtime cannot tell what runs (e.g. the last successful GitHub deployment).
    pub fallback_previous_tag: Option<String>,
    pub config_arg: &'a str,
    /// Deploy even when `rollback.destructive: refuse` finds destructive SQL.
    pub allow_destructive: bool,
}

fn deploy_run<'w>(w: &'w World, a: &DeployArgs) -> Run<'w> {
    let mut run = Run::new(w, Mode::Deploy, a.sha.clone());
    run.tag = Some(a.tag.to_string());
    run.previous_tag = a.previous_tag.map(str::to_string);
    run.previous_tag_source = a.previous_tag.map(|_| crate::app::TagSource::Given);
    run.fallback_previous_tag = a.fallback_previous_tag.clone();
    run.config_arg = a.config_arg.to_string();
    run.allow_destructive = a.allow_destructive;
    run
}

/// The whole run as data, nothing executed (`deploy --dry-run`).
pub fn plan(w: &World, a: &DeployArgs) -> Plan {
    run::plan(&deploy_run(w, a))
}

/// Runs the whole guarded deploy.
pub async fn deploy(w: &World, a: &DeployArgs<'_>) -> Report {
    let mut run = deploy_run(w, a);
    let outcome = run.drive(w.config.rollback.strategy).await;
    // After the deploy went on (or was rolled back): it never delays it.
    run.copy_branch_offsite().await;
    if outcome.is_success() {
        for line in super::backup::prune_after(w).await {
            run.notes.push(format!("retention: {line}"));
        }
    }
    report::build(&run, outcome)
}

/// Rehearses the release `a.tag`: a fresh verified backup, then its migrations up and down on
/// a copy of it; production is not changed.
pub async fn rehearse(w: &World, a: &DeployArgs<'_>) -> Report {
    let mut run = deploy_run(w, a);
    run.mode = Mode::Rehearse;
    let outcome = run.drive(w.config.rollback.strategy).await;
    report::build(&run, outcome)
}

/// Rolls back the deploy of `sha` by hand: finds its manifest, then assess onwards.
pub async fn rollback(
    w: &World,
    sha: &ShaPrefix,
    path: Option<Strategy>,
    to_tag: Option<&str>,
    config_arg: &str,
) -> Result<Report> {
    let manifest = crate::record::find_here_or_copy(
        w.store.as_ref(),
        w.copy.as_deref(),
        &w.config.project,
        &w.db.name,
        sha.as_str(),
    )
    .await?;
    let mut run = Run::resume(w, Mode::Rollback, manifest);
    run.config_arg = config_arg.to_string();
    if let Some(t) = to_tag {
        run.previous_tag = Some(t.to_string());
        run.previous_tag_source = Some(crate::app::TagSource::Given);
    }
    if run.previous_tag.is_none() {
        bail!("the manifest of {} records no previous tag; pass --to-tag TAG", run.sha);
    }
    if path == Some(Strategy::Revert) {
        // A revert known to fail is refused before it is tried: a typo must not leave the deploy
        // recorded as half rolled back.
        let lacking = crate::run::steps::assess::release_without_down(&run).await.with_context(|| {
            format!(
                "--path revert: which of this deploy's migrations have a down could not be read (nothing was \
                 changed); restoring the pre-deploy backup needs none: {}",
                run.dg(&format!("rollback --sha {} --path restore", run.sha.short()))
            )
        })?;
        if !lacking.is_empty() {
            return Err(crate::model::Usage(anyhow::anyhow!(
                "--path revert: {} has no down migration, so this deploy cannot be reverted; nothing was changed. \
                 Restoring the pre-deploy backup is the way back: {}",
                lacking.join(", "),
                run.dg(&format!("rollback --sha {} --path restore", run.sha.short()))
            ))
            .into());
        }
    }
    let outcome = run.drive(path.unwrap_or(w.config.rollback.strategy)).await;
    Ok(report::build(&run, outcome))
}
