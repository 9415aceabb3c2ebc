use anyhow::{Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::Host;
use crate::exec::Cmd;

/// The health check: after the deploy, and again after the redeploy of a rollback; on every
/// host, in the fleet's order.
pub struct Health;

#[async_trait]
impl StepSpec for Health {
    fn what(&self, run: &Run) -> String {
        let timeout = humantime::format_duration(run.w.config.app.health.timeout);
        match run.w.fleet.several() {
            false => format!("wait for health (timeout {timeout})"),
            true => format!("wait for health on every host, in turn (timeout {timeout} each)"),
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        run.w.fleet.each(|h| std::iter::once(h.health.cmd()).chain(h.runtime.settle_cmd()).collect())
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        super::redeploy::Redeploy.by_hand(run)
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        if !w.fleet.several() {
            return healthy(w.fleet.primary(), &w.config.app.health).await.map(Done::Ok);
        }
        let mut said = Vec::new();
        for host in w.fleet.hosts() {
            let h = healthy(host, &w.config.app.health).await.with_context(|| format!("host {}", host.name))?;
            said.push(format!("{}: {h}", host.name));
        }
        Ok(Done::Ok(said.join("; ")))
    }
}

/// Waits for `host`'s app to be healthy; and every service there that writes to run steadily
/// (the URL answers for one service only).
pub(super) async fn healthy(host: &Host, settings: &crate::config::Health) -> Result<String> {
    let healthy = host.health.wait().await?;
    let services = host.runtime.settled(settings.timeout, settings.interval).await?;
    Ok(if services.is_empty() { healthy } else { format!("{healthy}; {services}") })
}
