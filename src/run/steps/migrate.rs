use anyhow::Result;
use async_trait::async_trait;

use super::tool::{self, Tool};
use super::{Done, Run, StepSpec};
use crate::exec::{self, Cmd};

pub struct Migrate;

impl Migrate {
    fn cmd(run: &Run) -> Option<Cmd> {
        let tag = run.tag.as_deref()?;
        Some(tool::cmd(run, Tool::Migrate, tag, &run.w.migrator.run_script(tag, run.sha.as_str())))
    }
}

/// Why the migration failed, with what blocked it and how it was ended. When it could not be
/// ended the run notes that it may still be running, so that assess refuses to read the database
/// (and the safe path, whose swap ends every session on the live database, is taken instead of
/// trusting what it saw). Assess must never look at a database a migration is still changing.
async fn failed(run: &mut Run<'_>, what: String) -> anyhow::Error {
    let (why, ended) = tool::failed(run, Tool::Migrate, what).await;
    let ended = match ended {
        Ok(done) => done,
        Err(c) => {
            let why = format!("cancelling it failed too: {c:#}");
            run.found.migration_left_running = Some(why.clone());
            why
        }
    };
    anyhow::anyhow!("{why}; {ended}")
}

#[async_trait]
impl StepSpec for Migrate {
    fn what(&self, run: &Run) -> String {
        format!("run the migrations (timeout {})", humantime::format_duration(run.w.migrator.timeout))
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let db = &run.w.db;
        let stats = [db.query_cmd(&db.name), db.query_cmd(&db.maintenance_db)];
        Self::cmd(run).into_iter().chain(stats).chain(tool::end_commands(run, Tool::Migrate)).collect()
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        run.code_tag()?;
        // The statistics around the run say which tables' rows the migrations changed: a restore
        // tells the app's lost writes there from the migrations' own.
        let before = run.w.db.table_stats(&run.w.db.name).await.ok();
        let result = Self::run_tool(run).await;
        let migrated = match before {
            Some(before) if run.found.migration_left_running.is_none() => migrated(run, &before).await,
            _ => None,
        };
        if let Some(m) = run.manifest.as_mut() {
            m.migrated = migrated;
        }
        result
    }
}

/// The tables whose rows changed while the migrations ran (updated, deleted, or rewritten),
/// read once the tool's sessions are gone (a session flushes its statistics as it ends);
/// `None` when they cannot be read.
async fn migrated(
    run: &Run<'_>,
    before: &std::collections::BTreeMap<String, crate::db::TableStats>,
) -> Option<std::collections::BTreeSet<String>> {
    tool::settled(run, Tool::Migrate).await;
    let now = run.w.db.table_stats(&run.w.db.name).await.ok()?;
    Some(
        now.into_iter()
            .filter(|(t, n)| {
                before
                    .get(t)
                    .is_some_and(|b| b.relfilenode != n.relfilenode || b.updated_or_deleted != n.updated_or_deleted)
            })
            .map(|(t, _)| t)
            .collect(),
    )
}

impl Migrate {
    async fn run_tool(run: &mut Run<'_>) -> Result<Done> {
        let cmd = Self::cmd(run).expect("a tag");
        let out = match exec::capture(run.w.exec.as_ref(), &cmd).await {
            Ok(out) => out,
            Err(e) => return Err(failed(run, format!("{e:#}")).await),
        };
        if !out.exit.success() {
            // A timeout or a lost channel can leave the migration running where it was started.
            let what = format!(
                "the migration command failed ({}): {}",
                out.exit.describe(),
                crate::migrate::failure_quote(&out.stdout, &out.exit.stderr_tail, 6)
            );
            return Err(failed(run, what).await);
        }
        let stdout = crate::migrate::strip_control(&out.stdout);
        Ok(Done::Ok(last_lines(&stdout, 3).unwrap_or_else(|| "migrations applied".into())))
    }
}

fn last_lines(text: &str, n: usize) -> Option<String> {
    // TypeORM and others echo every SQL statement as `query: …`: not what a person wants here.
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("query:")).collect();
    (!lines.is_empty()).then(|| lines[lines.len().saturating_sub(n)..].join(" | "))
}
