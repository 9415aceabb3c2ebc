use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::{Action, Host, TagSource};
use crate::exec::Cmd;
use crate::guard::WayBack;

/// Starts the previous tag again (and resumes writes where they were paused): on every host
/// that does not run it as before the deploy, each on the tag it ran then.
pub struct Redeploy;

/// The tag `host` goes back to: the one given on the command line, else the one it ran before
/// the deploy (the journal), else the run's previous tag. `None`: it runs that already, as the
/// journal says, and was never stopped; or the deploy never touched it (it was added to
/// `target.hosts` after), so there is nothing to return.
fn back_to(run: &Run, host: &Host) -> Option<String> {
    let given = run.previous_tag.clone().filter(|_| run.previous_tag_source == Some(TagSource::Given));
    match way_back(run, host) {
        // The plan is printed before anything ran: a placeholder stands for each host's tag.
        None => Some(run.previous_tag.clone().unwrap_or_else(|| "PREVIOUS_TAG".into())),
        Some(WayBack::NotInDeploy) => None,
        Some(WayBack::AsBefore) => given,
        Some(WayBack::Start(own)) => given.or(own).or_else(|| run.previous_tag.clone()),
    }
}

/// What the journal says a rollback does on `host`; `None` before anything ran (the plan).
fn way_back(run: &Run, host: &Host) -> Option<WayBack> {
    let recorded = run.manifest.is_some() || !run.journal.hosts.is_empty();
    recorded.then(|| run.journal.way_back(&host.name, run.w.fleet.primary().name == host.name))
}

/// The hosts of the deploy the config no longer lists (gone for good), marked abandoned in the
/// journal, and the hosts it lists that the deploy never touched: both left as they are, and said.
fn left_alone(run: &mut Run) -> Vec<String> {
    let listed = run.w.fleet.names();
    let tag = run.tag.clone();
    let gone = run.journal.abandon_unlisted(&listed, chrono::Utc::now());
    let mut said: Vec<String> = gone
        .iter()
        .filter(|h| h.abandoned.is_some())
        .map(|h| {
            format!(
                "{} is no longer in target.hosts and was NOT rolled back, nor reached: last known {}; not \
                 verified. If it ever comes back, keep it out of service (it may still run {}, which the database \
                 no longer matches): wipe it, or, before any later deploy, put it back in target.hosts and run `{}` \
                 to start {} there",
                h.host,
                h.last_known(tag.as_deref()),
                tag.as_deref().unwrap_or("the new tag"),
                run.dg(&format!("rollback --sha {}", run.sha.short())),
                h.previous.as_deref().or(run.previous_tag.as_deref()).unwrap_or("the previous tag"),
            )
        })
        .collect();
    let untouched: Vec<&str> = gone.iter().filter(|h| h.abandoned.is_none()).map(|h| h.host.as_str()).collect();
    if !untouched.is_empty() {
        said.push(format!(
            "{} no longer in target.hosts: not reached; the journal last knew it ran the previous tag, as before the deploy",
            untouched.join(", ")
        ));
    }
    let added: Vec<&str> = run
        .w
        .fleet
        .hosts()
        .iter()
        .filter(|h| way_back(run, h) == Some(WayBack::NotInDeploy))
        .map(|h| h.name.as_str())
        .collect();
    if !added.is_empty() {
        said.push(format!(
            "{} not in this deploy's journal (added to target.hosts after it): the deploy never touched it, so it \
             was left alone",
            added.join(", ")
        ));
    }
    said
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
        c.extend(self.commands(run).iter().map(|c| run.w.fleet.shown(c)));
        c.push(format!("# then check: {}", run.w.health.describe()));
        if run.w.fleet.several() {
            c.push(format!(
                "# or, once every host can be reached: {}",
                run.dg(&format!("rollback --sha {}", run.sha.short()))
            ));
            c.push(
                "# a host gone for good: take it out of target.hosts first; the rollback then leaves it as it was, \
                 and says so"
                    .into(),
            );
        }
        c
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let alone = left_alone(run);
        run.persist().await;
        let detail = match w.fleet.several() {
            false => {
                let tag = run.previous_tag.clone().context("no previous tag known; rerun with --to-tag TAG")?;
                let said = start(w.fleet.primary(), &tag, recorded(run)).await?;
                run.journal.set_running(&w.fleet.primary().name, Some(&tag));
                said
            }
            true => every_host(run, &alone).await?,
        };
        // A host left alone is a warning, so a manual rollback ends exit 0 (`ExitCode::Ok`: did
        // what was asked), not 3 (`Act`): it did what the config asks on every host it lists, and
        // taking a lost host out of the config is the act exit 3 asked a person for. Failing would
        // keep every later deploy refused with nothing left for deploy-guard to do.
        Ok(match alone.is_empty() {
            true => Done::Ok(detail),
            false => Done::Warning(
                std::iter::once(detail).chain(alone).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(". "),
            ),
        })
    }
}

/// The several-hosts redeploy: each host that needs it, in the fleet's order.
async fn every_host(run: &mut Run<'_>, alone: &[String]) -> Result<String> {
    let w = run.w;
    let (mut back, mut left, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for host in w.fleet.hosts() {
        let Some(tag) = back_to(run, host) else {
            if run.journal.host(&host.name).is_some_and(|h| h.as_before()) {
                left.push(host.name.clone());
            }
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
        false => format!("{} never left the previous tag", left.join(", ")),
    };
    if !failed.is_empty() {
        bail!(
            "the previous tag could not be started on {} host(s): {}. Back on it: {}{}. Once the host can be \
             reached, `{}` finishes the rollback host by host (a host gone for good: take it out of target.hosts \
             first){}",
            failed.len(),
            failed.join("; "),
            if back.is_empty() { "none".to_string() } else { back.join("; ") },
            if left.is_empty() { String::new() } else { format!("; {left}") },
            run.dg(&format!("rollback --sha {}", run.sha.short())),
            alone.iter().map(|a| format!(". {a}")).collect::<String>()
        );
    }
    Ok(back.into_iter().chain((!left.is_empty()).then_some(left)).collect::<Vec<_>>().join("; "))
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
