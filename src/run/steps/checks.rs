//! The user's own checks (`verify.queries`, `verify.commands`): the queries' results are
//! recorded before the deploy and must be the same once a rollback or restore is done; the
//! commands must exit 0 then.

use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{psql_line, Done, Run, StepSpec};
use crate::exec::{self, quote, Cmd};
use crate::world::World;

pub struct Checks;

/// Each query's result on `db` (the live database; a point-in-time branch), in order.
pub async fn query_results(w: &World, db: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for q in &w.config.verify.queries {
        let result =
            w.db.query(db, &crate::db::read_only("verify.queries", q)?).await.with_context(|| {
                format!("verify.queries: {q:?} failed (it must be a read-only query that runs as is)")
            })?;
        out.push(result);
    }
    Ok(out)
}

fn command_cmds(w: &World) -> Vec<Cmd> {
    w.config
        .verify
        .commands
        .iter()
        .map(|c| {
            let script = match &w.config.app.workdir {
                Some(d) => format!("cd {} && {c}", quote(d)),
                None => c.clone(),
            };
            Cmd::new("verify command", script).timeout(w.config.target.command_timeout)
        })
        .collect()
}

#[async_trait]
impl StepSpec for Checks {
    fn what(&self, run: &Run) -> String {
        let v = &run.w.config.verify;
        format!(
            "{} verify.queries equal their results before the deploy; {} verify.commands exit 0",
            v.queries.len(),
            v.commands.len()
        )
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let mut out = Vec::new();
        if !run.w.config.verify.queries.is_empty() {
            out.push(run.w.db.query_cmd(&run.w.db.name));
        }
        out.extend(command_cmds(run.w));
        out
    }

    fn manual(&self, run: &Run) -> Vec<String> {
        let w = run.w;
        let mut out: Vec<String> = w.config.verify.queries.iter().map(|q| psql_line(run, &w.db.name, q)).collect();
        out.extend(command_cmds(w).iter().map(Cmd::shell_text));
        out
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        let mut c = vec![
            "# the database and the app are back, but your own checks disagree: compare by hand".into(),
            format!(
                "# the results before the deploy are in the manifest ({})",
                run.dg(&format!("backups --sha {} --json", run.sha.short()))
            ),
        ];
        c.extend(self.manual(run));
        c
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let v = &w.config.verify;
        if v.queries.is_empty() && v.commands.is_empty() {
            return Ok(Done::Ok("none configured (verify.queries, verify.commands)".into()));
        }
        let before = run.manifest()?.checks.clone();
        let now = query_results(w, &w.db.name).await?;
        let mut differ = Vec::new();
        for (i, q) in v.queries.iter().enumerate() {
            match before.get(i) {
                Some(b) if b == &now[i] => {}
                Some(b) => differ.push(format!("{q:?} gave {b:?} before the deploy and {:?} now", now[i])),
                None => differ.push(format!("{q:?} has no result recorded before the deploy")),
            }
        }
        if !differ.is_empty() {
            bail!("verify.queries differ: {}", differ.join("; "));
        }
        for cmd in command_cmds(w) {
            let out = exec::capture(w.exec.as_ref(), &cmd).await?;
            out.exit.check(&format!("verify command `{}`", cmd.script))?;
        }
        Ok(Done::Ok(format!(
            "{} quer(ies) equal their results before the deploy; {} command(s) exited 0",
            v.queries.len(),
            v.commands.len()
        )))
    }
}
