use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{tool_cmd, tool_name, Done, Run, StepSpec};
use crate::exec::{self, Cmd};

pub struct Migrate;

impl Migrate {
    /// What the migration runs as: its sessions' `application_name` (libpq's PGAPPNAME) and its
    /// container's label, so a migration that outlives its command (a timeout, a dropped SSH
    /// channel) can be found and ended.
    fn app_name(run: &Run) -> String {
        tool_name(run, "migrate")
    }

    fn cmd(run: &Run) -> Option<Cmd> {
        let tag = run.tag.as_deref()?;
        let m = &run.w.config.migrations;
        let ms = |d: std::time::Duration| d.as_millis().to_string();
        let options: Vec<String> = [("lock_timeout", m.lock_timeout), ("statement_timeout", m.statement_timeout)]
            .iter()
            .filter_map(|(k, v)| v.map(|d| format!("-c {k}={}", ms(d))))
            .collect();
        let pgoptions = if options.is_empty() {
            String::new()
        } else {
            format!(" PGOPTIONS={}", crate::exec::quote(&options.join(" ")))
        };
        let script = format!(
            "export PGAPPNAME={}{pgoptions} && {}",
            Self::app_name(run),
            run.w.migrator.run_script(tag, run.sha.as_str())
        );
        Some(tool_cmd(run, "migrate", tag, &script))
    }
}

/// Who blocks the migration's sessions, when they wait on a lock: pid, application, age, query.
async fn blockers(run: &Run<'_>) -> Option<String> {
    let db = &run.w.db;
    let sql = format!(
        "SELECT string_agg(format('pid %s (%s, %s, for %s): %s', b.pid, coalesce(nullif(b.application_name, ''), '?'), \
         b.state, date_trunc('second', now() - coalesce(b.xact_start, b.query_start)), left(b.query, 120)), '; ') \
         FROM pg_stat_activity m JOIN pg_stat_activity b ON b.pid = ANY(pg_blocking_pids(m.pid)) \
         WHERE m.application_name = {};",
        crate::db::literal(&Migrate::app_name(run))
    );
    let out = db.query(&db.maintenance_db, &sql).await.ok()?;
    (!out.trim().is_empty()).then(|| format!("it waited on a lock held by {}", out.trim()))
}

/// Ends a migration whose command did not end cleanly, and waits until it is gone: first what
/// runs it where it was started (compose: its one-off container, which outlives a killed or
/// disconnected client and could connect again), then its database sessions. Assess must never
/// look at a database a migration is still changing.
async fn cancel(run: &Run<'_>) -> Result<String> {
    let mut done = Vec::new();
    if let Some(stop) = run.w.runtime.tool_stop(&Migrate::app_name(run)) {
        let removed =
            exec::run_ok(run.w.runtime.executor(), &stop).await.context("removing the migration's container failed")?;
        done.push(format!("{} container(s) of the migration removed", removed.trim()));
    }
    let db = &run.w.db;
    let name = crate::db::literal(&Migrate::app_name(run));
    // Ended means none seen for a full second: something that reconnects as the migration (a
    // worker it left behind) shows up again between two readings, and is ended again. Only on
    // this database: another project on the same server may deploy the same SHA at once.
    let terminate = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = {name} AND datname = {};",
        crate::db::literal(&db.name)
    );
    let (mut ended, mut quiet) = (0u64, 0);
    for _ in 0..300 {
        let found: u64 = db.query(&db.maintenance_db, &terminate).await?.trim().parse().unwrap_or(1);
        ended += found;
        quiet = if found == 0 { quiet + 1 } else { 0 };
        if quiet >= 10 {
            done.push(format!("{ended} session(s) of the migration ended"));
            return Ok(done.join(", "));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("sessions of the migration ({name}) kept coming back for 30 s ({ended} ended)")
}

/// [`cancel`]; when it fails, the run notes that the migration may still be running, so that
/// assess refuses to read the database (and the safe path, whose swap ends every session on the
/// live database, is taken instead of trusting what it saw).
async fn cancel_or_note(run: &mut Run<'_>) -> String {
    match cancel(run).await {
        Ok(done) => done,
        Err(c) => {
            let why = format!("cancelling it failed too: {c:#}");
            run.migration_left_running = Some(why.clone());
            why
        }
    }
}

#[async_trait]
impl StepSpec for Migrate {
    fn what(&self, run: &Run) -> String {
        format!("run the migrations (timeout {})", humantime::format_duration(run.w.migrator.timeout))
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let db = &run.w.db;
        let stop = run.w.runtime.tool_stop(&Self::app_name(run));
        Self::cmd(run).into_iter().chain(stop).chain([db.query_cmd(&db.maintenance_db)]).collect()
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        run.code_tag()?;
        let cmd = Self::cmd(run).expect("a tag");
        let out = match exec::capture(run.w.exec.as_ref(), &cmd).await {
            Ok(out) => out,
            Err(e) => {
                let blocked = blockers(run).await.map(|b| format!("; {b}")).unwrap_or_default();
                let cancelled = cancel_or_note(run).await;
                bail!("{e:#}{blocked}; {cancelled}");
            }
        };
        if !out.exit.success() {
            // A timeout or a lost channel can leave the migration running where it was started.
            let blocked = blockers(run).await.map(|b| format!("; {b}")).unwrap_or_default();
            let cancelled = cancel_or_note(run).await;
            bail!(
                "the migration command failed ({}): {}{blocked}; {cancelled}",
                out.exit.describe(),
                crate::migrate::failure_quote(&out.stdout, &out.exit.stderr_tail, 6)
            );
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
