//! Pulls the new tag's image on the target (on every host) before anything is backed up or
//! changed, so a registry that refuses a host (not logged in, a tag never pushed) aborts the
//! deploy with nothing changed (exit 4), instead of failing the migration and rolling back.

use anyhow::Result;
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::{Action, Host};
use crate::exec::Cmd;

pub struct Pull;

impl Pull {
    fn cmd(run: &Run, host: &Host) -> Option<Cmd> {
        host.runtime.cmd(Action::Pull(run.tag.as_deref()?))
    }
}

#[async_trait]
impl StepSpec for Pull {
    fn what(&self, run: &Run) -> String {
        let every = if run.w.fleet.several() { " (on every host)" } else { "" };
        match (Pull::cmd(run, run.w.fleet.primary()), run.tag.as_deref()) {
            (Some(_), Some(tag)) => format!("pull {tag}'s image on the target{every} where it is not there yet"),
            _ => "the runtime pulls nothing of its own: its deploy command does what is needed".into(),
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        run.w.fleet.each(|h| Pull::cmd(run, h).into_iter().collect())
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let tag = run.code_tag()?.to_string();
        let mut pulled = false;
        for host in run.w.fleet.hosts() {
            let Some(cmd) = Pull::cmd(run, host) else { continue };
            let target = host.runtime.executor().describe();
            crate::exec::run_ok(host.runtime.executor(), &cmd).await.map_err(|e| {
                e.context(format!(
                    "the target ({target}) cannot pull the image of {tag}: nothing was backed up or changed. \
                     Check that {tag} was pushed; if the registry is private, log the target in once as the user \
                     deploy-guard connects as (`docker login REGISTRY` on the host, the password on stdin, or a \
                     credential helper: docs/COMPOSE.md, \"Private registry\"), then deploy again"
                ))
            })?;
            pulled = true;
        }
        Ok(Done::Ok(match pulled {
            true if run.w.fleet.several() => format!("{tag} is on every host"),
            true => format!("{tag} is on the target"),
            false => "nothing to pull".into(),
        }))
    }
}
