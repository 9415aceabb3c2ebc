use anyhow::Result;
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::Action;
use crate::exec::Cmd;

pub struct StopApp;

#[async_trait]
impl StepSpec for StopApp {
    fn what(&self, _run: &Run) -> String {
        "the restored backup is valid: stop the app before the swap".into()
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        run.w.runtime.cmd(Action::Stop).into_iter().collect()
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        Ok(match run.w.runtime.stop().await {
            Ok(()) => Done::Ok("app stopped".into()),
            // A running app is cut off by the swap anyway.
            Err(e) => Done::Warning(format!("{e:#}; carrying on: the swap cuts the app off")),
        })
    }
}
