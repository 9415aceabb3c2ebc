use anyhow::Result;
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::exec::Cmd;

pub struct Deploy;

#[async_trait]
impl StepSpec for Deploy {
    fn what(&self, run: &Run) -> String {
        format!("start {}", run.tag.as_deref().unwrap_or("the new tag"))
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        run.tag.as_deref().map(|t| run.w.runtime.deploy_cmds(t)).unwrap_or_default()
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let tag = run.code_tag()?.to_string();
        run.w.runtime.deploy(&tag).await?;
        Ok(Done::Ok(format!("{tag} started")))
    }
}
