//! The PR check's rehearsal (`plan --rehearse`): the pull request's migrations up and back down on
//! a copy of the job's database, with the migration tool run here, in the checkout. It is the
//! rehearsal a deploy runs — a verified backup, restored into a scratch database, up, down,
//! compared (schema, migration rows, every row) — aimed at this machine: the backup goes to a
//! temporary store removed after, and nothing reaches the target.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::deploy::DeployArgs;
use crate::config::{Config, RuntimeKind, ShellCommands, StoreOn};
use crate::exec::Local;
use crate::report::pr_check::PrRehearsal;
use crate::world::World;

/// `cfg` aimed at this machine: the database as the job reaches it, the tool run in the checkout
/// (the shell runtime with no app commands: nothing is deployed), a temporary store.
fn here(cfg: &Config, store: &std::path::Path) -> Config {
    let mut c = cfg.clone();
    c.target.host = None;
    c.database.service = None;
    c.app.runtime = RuntimeKind::Shell;
    c.app.commands = ShellCommands::default();
    c.app.workdir = None;
    c.app.env_file = None;
    c.backup.store = format!("file://{}", store.display());
    c.backup.store_on = StoreOn::Runner;
    c.backup.copy_to = None;
    c.backup.keep = None;
    c.backup.max_age = None;
    c.github.deployments = false;
    c.github.comment = false;
    c.github.incident = false;
    c
}

/// Rehearses `a.tag`'s pending migrations on a copy of the job's database.
pub async fn rehearse(cfg: &Config, a: &super::plan::PlanArgs<'_>) -> PrRehearsal {
    match run(cfg, a).await {
        Ok(r) => r,
        Err(e) => PrRehearsal::NotRun { reason: format!("{e:#}") },
    }
}

async fn run(cfg: &Config, a: &super::plan::PlanArgs<'_>) -> Result<PrRehearsal> {
    let store = tempfile::Builder::new()
        .prefix("deploy-guard-pr-rehearse")
        .tempdir()
        .context("making the rehearsal's temporary store")?;
    let w = World::with_executor(here(cfg, store.path()), Arc::new(Local)).await?;
    let args = DeployArgs {
        sha: a.sha,
        tag: a.tag,
        // Nothing is deployed or redeployed here: the tag only fills the record's field.
        previous_tag: Some(a.tag),
        fallback_previous_tag: None,
        config_arg: a.config_arg,
        allow_destructive: true,
    };
    let report = super::deploy::rehearse(&w, &args).await;
    Ok(match (report.outcome.is_success(), report.rehearsal) {
        (true, Some(r)) => PrRehearsal::Ran(r),
        (true, None) => PrRehearsal::NotRun { reason: "the rehearsal recorded nothing".into() },
        // The migrations failed on the copy, or the run stopped before them (the backup, the lock).
        (false, _) => {
            let failed = report.steps.iter().rev().find(|e| e.state == crate::guard::EntryState::Failed);
            match failed {
                Some(e) if e.step == crate::guard::Step::Rehearse => PrRehearsal::Failed { reason: e.detail.clone() },
                Some(e) => PrRehearsal::NotRun { reason: format!("{}: {}", e.step, e.detail) },
                None => PrRehearsal::NotRun { reason: report.headline },
            }
        }
    })
}
