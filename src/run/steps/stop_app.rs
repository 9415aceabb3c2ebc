use anyhow::Result;
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::{Action, Host};
use crate::exec::Cmd;

/// Before the swap: the app's writes paused (where it has a read-only switch), else the app
/// stopped; on every host. The redeploy brings them all back.
pub struct StopApp;

fn pauses(host: &Host) -> bool {
    host.runtime.cmd(Action::PauseWrites).is_some()
}

#[async_trait]
impl StepSpec for StopApp {
    fn what(&self, run: &Run) -> String {
        let every = if run.w.fleet.several() { " on every host" } else { "" };
        if pauses(run.w.fleet.primary()) {
            format!("the restored backup is valid: pause the app's writes (app.commands.pause_writes){every} before the swap")
        } else {
            format!("the restored backup is valid: stop every service that writes{every} before the swap")
        }
    }

    /// Pausing writes, where the app has a read-only switch, else stopping it.
    fn commands(&self, run: &Run) -> Vec<Cmd> {
        run.w
            .fleet
            .each(|h| h.runtime.cmd(Action::PauseWrites).or_else(|| h.runtime.cmd(Action::Stop)).into_iter().collect())
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let several = w.fleet.several();
        let stops = !pauses(w.fleet.primary());
        if let Err(e) = if stops { record_replicas(run).await } else { Ok(()) } {
            // The deploy's own record (the record step) still says how many each ran.
            tracing::warn!("could not read the services' replicas before stopping them: {e:#}");
        }
        let (mut done, mut warnings) = (Vec::new(), Vec::new());
        for host in w.fleet.hosts() {
            let on = if several { format!(" on {}", host.name) } else { String::new() };
            // Whatever the command does, the host no longer runs the previous tag as before:
            // the redeploy brings it back.
            run.journal.set_running(&host.name, None);
            if pauses(host) {
                // Writes left running would be lost by the swap: a pause that fails stops the run here.
                let paused = host.runtime.run(Action::PauseWrites).await;
                paused.map_err(|e| if several { e.context(format!("pausing writes{on}")) } else { e })?;
                done.push(format!("writes paused{on}; the app keeps serving reads"));
                continue;
            }
            match host.runtime.stop().await {
                Ok(said) if said.is_empty() => done.push(format!("app stopped{on}")),
                Ok(said) => done.push(format!("app stopped{on}: {said}")),
                // A running app is cut off by the swap anyway.
                Err(e) => warnings.push(format!("{e:#}{on}")),
            }
        }
        run.persist().await;
        if warnings.is_empty() {
            return Ok(Done::Ok(done.join("; ")));
        }
        done.extend(warnings);
        Ok(Done::Warning(format!("{}; carrying on: the swap cuts the app off", done.join("; "))))
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
