use anyhow::{anyhow, Result};
use async_trait::async_trait;

use super::{health::healthy, Done, Run, StepSpec};
use crate::app::Host;
use crate::config::Rollout;
use crate::exec::Cmd;

/// Starts the new tag: on one host; or on several (`target.hosts`) in the fleet's order, one at
/// a time with its health check before the next host is touched (`app.rollout: one-at-a-time`)
/// or all started, then all checked by the health step (`all-at-once`). The first host that
/// fails, drops its connection or cannot be reached stops the rollout: the step fails, and the
/// rollback returns every host that got the tag.
pub struct Deploy;

fn one_at_a_time(run: &Run) -> bool {
    run.w.fleet.several() && run.w.config.app.rollout == Rollout::OneAtATime
}

#[async_trait]
impl StepSpec for Deploy {
    fn what(&self, run: &Run) -> String {
        let tag = run.tag.as_deref().unwrap_or("the new tag");
        let f = &run.w.fleet;
        match (f.several(), one_at_a_time(run)) {
            (false, _) => format!("start {tag}"),
            (true, true) => format!(
                "start {tag} on {}, one host at a time, each healthy before the next is touched",
                f.names().join(", then ")
            ),
            (true, false) => {
                format!("start {tag} on every host ({}); the health step checks them all", f.names().join(", "))
            }
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let Some(tag) = run.tag.as_deref() else { return Vec::new() };
        let check_each = one_at_a_time(run);
        run.w.fleet.each(|h| {
            let check = check_each.then(|| std::iter::once(h.health.cmd()).chain(h.runtime.settle_cmd()));
            h.runtime.deploy_cmds(tag).into_iter().chain(check.into_iter().flatten()).collect()
        })
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let tag = run.code_tag()?.to_string();
        let w = run.w;
        if !w.fleet.several() {
            w.runtime.deploy(&tag).await?;
            return Ok(Done::Ok(format!("{tag} started")));
        }
        let check_each = one_at_a_time(run);
        let mut reached: Vec<&str> = Vec::new();
        for host in w.fleet.hosts() {
            // Unknown until its deploy command says: a dropped connection leaves it so.
            run.journal.set_running(&host.name, None);
            run.persist().await;
            if let Err(e) = host.runtime.deploy(&tag).await {
                reached.push(&host.name);
                return Err(stopped(run, host, &reached, &tag, e));
            }
            run.journal.set_running(&host.name, Some(&tag));
            reached.push(&host.name);
            if check_each {
                if let Err(e) = healthy(host, &w.config.app.health).await {
                    return Err(stopped(run, host, &reached, &tag, e));
                }
            }
            tracing::info!("{tag} started on {}{}", host.name, if check_each { " and healthy" } else { "" });
        }
        run.persist().await;
        Ok(Done::Ok(match check_each {
            true => format!("{tag} started and healthy on {}, one at a time", reached.join(", ")),
            false => format!("{tag} started on {}", reached.join(", ")),
        }))
    }
}

/// The rollout stopped at `host`: what failed there, which hosts got the tag, which were not
/// touched.
fn stopped(run: &Run, host: &Host, reached: &[&str], tag: &str, e: anyhow::Error) -> anyhow::Error {
    let untouched: Vec<&str> = run.w.fleet.names().into_iter().filter(|n| !reached.contains(n)).collect();
    anyhow!(
        "host {}: {e:#}. The rollout stopped there: {} got {tag} (or may have); {}. The rollback returns every host \
         that got it to the previous tag",
        host.name,
        reached.join(", "),
        match untouched.is_empty() {
            true => "no host was left untouched".to_string(),
            false => format!("{} not touched", untouched.join(", ")),
        }
    )
}
