use anyhow::{Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::Action;
use crate::exec::Cmd;

pub struct Redeploy;

#[async_trait]
impl StepSpec for Redeploy {
    fn what(&self, run: &Run) -> String {
        format!("start the previous tag {}", run.previous_tag.as_deref().unwrap_or("(read at run time)"))
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        // The plan is printed before the running tag is known: a placeholder stands for it.
        let tag = run.previous_tag.as_deref().unwrap_or("PREVIOUS_TAG");
        let rt = &run.w.runtime;
        rt.redeploy_cmds(tag, recorded(run)).into_iter().chain(rt.cmd(Action::ResumeWrites)).collect()
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        let mut c = vec!["# the database is back to its pre-deploy state; the previous tag did not come up".into()];
        c.extend(self.commands(run).iter().map(|c| c.shell_text()));
        c.push(format!("# then check: {}", run.w.health.describe()));
        c
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let tag = run.previous_tag.clone().context("no previous tag known; rerun with --to-tag TAG")?;
        run.w.runtime.redeploy(&tag, recorded(run)).await?;
        if run.w.runtime.cmd(Action::ResumeWrites).is_some() {
            run.w
                .runtime
                .run(Action::ResumeWrites)
                .await
                .context("the previous tag runs but writes are still paused")?;
            return Ok(Done::Ok(format!("{tag} started; writes resumed")));
        }
        Ok(Done::Ok(format!("{tag} started")))
    }
}

/// Each service as the deploy recorded it before anything changed (swarm), from the manifest.
fn recorded<'a>(run: &'a Run) -> &'a [crate::app::ServiceState] {
    run.manifest.as_ref().map(|m| m.services.as_slice()).unwrap_or_default()
}
