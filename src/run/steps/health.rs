use anyhow::Result;
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::exec::Cmd;

/// The health check: after the deploy, and again after the redeploy of a rollback.
pub struct Health;

#[async_trait]
impl StepSpec for Health {
    fn what(&self, run: &Run) -> String {
        format!("wait for health (timeout {})", humantime::format_duration(run.w.config.app.health.timeout))
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        std::iter::once(run.w.health.cmd()).chain(run.w.runtime.settle_cmd()).collect()
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        super::redeploy::Redeploy.by_hand(run)
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let healthy = run.w.health.wait().await?;
        let h = &run.w.config.app.health;
        // The URL answers for one service; every other one that writes must be running too.
        let services = run.w.runtime.settled(h.timeout, h.interval).await?;
        Ok(Done::Ok(if services.is_empty() { healthy } else { format!("{healthy}; {services}") }))
    }
}
