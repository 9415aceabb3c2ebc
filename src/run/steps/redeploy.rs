use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::{Action, Host, TagSource};
use crate::exec::Cmd;

/// Starts the previous tag again (and resumes writes where they were paused): on every host
/// that does not run it as before the deploy, each on the tag it ran then.
pub struct Redeploy;

/// The tag `host` goes back to: the one given on the command line, else the one it ran before
/// the deploy (the journal), else the run's previous tag. `None`: it runs that already, as the
/// journal says, and was never stopped.
fn back_to(run: &Run, host: &Host) -> Option<String> {
    let given = run.previous_tag_source == Some(TagSource::Given);
    let recorded = run.journal.host(&host.name).filter(|_| !given);
    match recorded {
        Some(h) if h.as_before() => None,
        Some(h) => h.previous.clone().or_else(|| run.previous_tag.clone()),
        // The plan is printed before the running tag is known: a placeholder stands for it.
        None => Some(run.previous_tag.clone().unwrap_or_else(|| "PREVIOUS_TAG".into())),
    }
}

fn host_cmds(run: &Run, host: &Host, tag: &str) -> Vec<Cmd> {
    let rt = &host.runtime;
    rt.redeploy_cmds(tag, recorded(run)).into_iter().chain(rt.cmd(Action::ResumeWrites)).collect()
}

/// Each service as the deploy recorded it before anything changed (swarm), from the manifest.
fn recorded<'a>(run: &'a Run) -> &'a [crate::app::ServiceState] {
    run.manifest.as_ref().map(|m| m.services.as_slice()).unwrap_or_default()
}

#[async_trait]
impl StepSpec for Redeploy {
    fn what(&self, run: &Run) -> String {
        let tag = run.previous_tag.as_deref().unwrap_or("(read at run time)");
        match run.w.fleet.several() {
            false => format!("start the previous tag {tag}"),
            true => format!("start the previous tag {tag} on every host that does not run it as before the deploy"),
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        run.w.fleet.each(|h| back_to(run, h).map(|t| host_cmds(run, h, &t)).unwrap_or_default())
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        let mut c = vec!["# the database is back to its pre-deploy state; the previous tag did not come up".into()];
        c.extend(self.commands(run).iter().map(|c| c.shell_text()));
        c.push(format!("# then check: {}", run.w.health.describe()));
        if run.w.fleet.several() {
            c.push(format!(
                "# or, once every host can be reached: {}",
                run.dg(&format!("rollback --sha {}", run.sha.short()))
            ));
        }
        c
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        if !w.fleet.several() {
            let tag = run.previous_tag.clone().context("no previous tag known; rerun with --to-tag TAG")?;
            return start(w.fleet.primary(), &tag, recorded(run)).await.map(Done::Ok);
        }
        let (mut back, mut left, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for host in w.fleet.hosts() {
            let Some(tag) = back_to(run, host) else {
                left.push(host.name.clone());
                continue;
            };
            if tag == "PREVIOUS_TAG" {
                bail!("no previous tag known for {}; rerun with --to-tag TAG", host.name);
            }
            match start(host, &tag, recorded(run)).await {
                Ok(said) => {
                    run.journal.set_running(&host.name, Some(&tag));
                    back.push(format!("{}: {said}", host.name));
                }
                Err(e) => failed.push(format!("{}: {e:#}", host.name)),
            }
            run.persist().await;
        }
        let left = match left.is_empty() {
            true => String::new(),
            false => format!("; {} never left the previous tag", left.join(", ")),
        };
        if !failed.is_empty() {
            bail!(
                "the previous tag could not be started on {} host(s): {}. Back on it: {}{left}. Once the host can be \
                 reached, `{}` finishes the rollback host by host",
                failed.len(),
                failed.join("; "),
                if back.is_empty() { "none".to_string() } else { back.join("; ") },
                run.dg(&format!("rollback --sha {}", run.sha.short()))
            );
        }
        Ok(Done::Ok(format!("{}{left}", back.join("; "))))
    }
}

/// `tag` started on `host`, and its writes resumed where they were paused.
async fn start(host: &Host, tag: &str, recorded: &[crate::app::ServiceState]) -> Result<String> {
    host.runtime.redeploy(tag, recorded).await?;
    if host.runtime.cmd(Action::ResumeWrites).is_some() {
        host.runtime.run(Action::ResumeWrites).await.context("the previous tag runs but writes are still paused")?;
        return Ok(format!("{tag} started; writes resumed"));
    }
    Ok(format!("{tag} started"))
}
