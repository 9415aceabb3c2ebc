use anyhow::Result;
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::Action;
use crate::exec::Cmd;

pub struct StopApp;

#[async_trait]
impl StepSpec for StopApp {
    fn what(&self, run: &Run) -> String {
        if run.w.runtime.cmd(Action::PauseWrites).is_some() {
            "the restored backup is valid: pause the app's writes (app.commands.pause_writes) before the swap".into()
        } else {
            "the restored backup is valid: stop every service that writes before the swap".into()
        }
    }

    /// Pausing writes, where the app has a read-only switch, else stopping it.
    fn commands(&self, run: &Run) -> Vec<Cmd> {
        run.w.runtime.cmd(Action::PauseWrites).or_else(|| run.w.runtime.cmd(Action::Stop)).into_iter().collect()
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        if run.w.runtime.cmd(Action::PauseWrites).is_some() {
            // Writes left running would be lost by the swap: a pause that fails stops the run here.
            run.w.runtime.run(Action::PauseWrites).await?;
            return Ok(Done::Ok("writes paused; the app keeps serving reads".into()));
        }
        if let Err(e) = record_replicas(run).await {
            // The deploy's own record (the record step) still says how many each ran.
            tracing::warn!("could not read the services' replicas before stopping them: {e:#}");
        }
        Ok(match run.w.runtime.stop().await {
            Ok(said) if said.is_empty() => Done::Ok("app stopped".into()),
            Ok(said) => Done::Ok(format!("app stopped: {said}")),
            // A running app is cut off by the swap anyway.
            Err(e) => Done::Warning(format!("{e:#}; carrying on: the swap cuts the app off")),
        })
    }
}

/// The replicas each service runs now, written into the manifest before they are scaled to 0,
/// so that a redeploy from another process brings each back to exactly that many. A service at 0
/// already (a rerun after a stop) keeps the count recorded before.
async fn record_replicas(run: &mut Run<'_>) -> Result<()> {
    let now = run.w.runtime.services().await?;
    let Some(m) = run.manifest.as_mut() else { return Ok(()) };
    if now.is_empty() {
        return Ok(());
    }
    for s in now {
        match m.services.iter_mut().find(|r| r.service == s.service) {
            Some(r) if s.replicas != Some(0) => r.replicas = s.replicas,
            Some(_) => {}
            None => m.services.push(s),
        }
    }
    run.persist().await;
    Ok(())
}
