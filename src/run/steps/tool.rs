//! The migration tool's commands that change the live database (migrate, revert): run under a
//! name their sessions and container carry, so one that outlives its command (a timeout, a
//! dropped SSH channel, a killed client) can be found, reported and ended before anything else
//! looks at or replaces the database.

use anyhow::{bail, Context, Result};

use super::{tool_cmd, tool_name, Run};
use crate::exec::{self, Cmd};

/// A tool command that changes the live database.
#[derive(Clone, Copy)]
pub(super) enum Tool {
    Migrate,
    Revert,
}

impl Tool {
    /// Its step's label, part of the name it runs under.
    fn label(self) -> &'static str {
        match self {
            Tool::Migrate => "migrate",
            Tool::Revert => "revert",
        }
    }

    /// What the messages call it.
    fn noun(self) -> &'static str {
        match self {
            Tool::Migrate => "migration",
            Tool::Revert => "revert",
        }
    }
}

/// `tool` running `script` with the code of `tag`: its sessions' `application_name` (libpq's
/// PGAPPNAME) is the tool's name, and the migrations' lock and statement timeouts apply to it.
pub(super) fn cmd(run: &Run, tool: Tool, tag: &str, script: &str) -> Cmd {
    let m = &run.w.config.migrations;
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    let options: Vec<String> = [("lock_timeout", m.lock_timeout), ("statement_timeout", m.statement_timeout)]
        .iter()
        .filter_map(|(k, v)| v.map(|d| format!("-c {k}={}", ms(d))))
        .collect();
    let pgoptions =
        if options.is_empty() { String::new() } else { format!(" PGOPTIONS={}", exec::quote(&options.join(" "))) };
    let script = format!("export PGAPPNAME={}{pgoptions} && {script}", tool_name(run, tool.label()));
    tool_cmd(run, tool.label(), tag, &script)
}

/// The commands [`end`] runs for `tool`, for the plan.
pub(super) fn end_commands(run: &Run, tool: Tool) -> Vec<Cmd> {
    let db = &run.w.db;
    let stop = run.w.runtime.tool_stop(&tool_name(run, tool.label()));
    stop.into_iter().chain([db.query_cmd(&db.maintenance_db)]).collect()
}

/// Waits (up to 5 s) until the tool's sessions are gone from the server after its command
/// ended: a session's statistics are flushed as it exits.
pub(super) async fn settled(run: &Run<'_>, tool: Tool) {
    let db = &run.w.db;
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = {};",
        crate::db::literal(&tool_name(run, tool.label()))
    );
    for _ in 0..50 {
        match db.query(&db.maintenance_db, &sql).await {
            Ok(n) if n.trim() != "0" => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            _ => return,
        }
    }
}

/// Who blocks the tool's sessions, when they wait on a lock: pid, application, age, query.
async fn blockers(run: &Run<'_>, tool: Tool) -> Option<String> {
    let db = &run.w.db;
    let sql = format!(
        "SELECT string_agg(format('pid %s (%s, %s, for %s): %s', b.pid, coalesce(nullif(b.application_name, ''), '?'), \
         b.state, date_trunc('second', now() - coalesce(b.xact_start, b.query_start)), left(b.query, 120)), '; ') \
         FROM pg_stat_activity m JOIN pg_stat_activity b ON b.pid = ANY(pg_blocking_pids(m.pid)) \
         WHERE m.application_name = {};",
        crate::db::literal(&tool_name(run, tool.label()))
    );
    let out = db.query(&db.maintenance_db, &sql).await.ok()?;
    (!out.trim().is_empty()).then(|| format!("it waited on a lock held by {}", out.trim()))
}

/// Ends `tool`'s command that did not end cleanly, and waits until it is gone: first what runs
/// it where it was started (compose: its one-off container, which outlives a killed or
/// disconnected client and could connect again), then its database sessions.
async fn end(run: &Run<'_>, tool: Tool) -> Result<String> {
    // Ending it runs to its end even when the run is being stopped: it is part of stopping.
    let _shield = crate::exec::cancel::shield();
    let name = tool_name(run, tool.label());
    let noun = tool.noun();
    let mut done = Vec::new();
    if let Some(stop) = run.w.runtime.tool_stop(&name) {
        let removed = exec::run_ok(run.w.runtime.executor(), &stop)
            .await
            .with_context(|| format!("removing the {noun}'s container failed"))?;
        done.push(format!("{} container(s) of the {noun} removed", removed.trim()));
    }
    let db = &run.w.db;
    // Ended means none seen for a full second: something that reconnects as the tool (a worker
    // it left behind) shows up again between two readings, and is ended again. Only on this
    // database: another project on the same server may deploy the same SHA at once.
    let terminate = crate::db::sql::end_sessions_of(&name, Some(&db.name));
    let (mut ended, mut quiet) = (0u64, 0);
    for _ in 0..300 {
        let found: u64 = db.query(&db.maintenance_db, &terminate).await?.trim().parse().unwrap_or(1);
        ended += found;
        quiet = if found == 0 { quiet + 1 } else { 0 };
        if quiet >= 10 {
            done.push(format!("{ended} session(s) of the {noun} ended"));
            return Ok(done.join(", "));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("sessions of the {noun} ({name}) kept coming back for 30 s ({ended} ended)")
}

/// Why `tool`'s command failed, with what held its locks and how it was ended; `Err` of [`end`]
/// when it could not be (it may still be running).
pub(super) async fn failed(run: &Run<'_>, tool: Tool, what: String) -> (String, Result<String>) {
    let blocked = blockers(run, tool).await.map(|b| format!("; {b}")).unwrap_or_default();
    (format!("{what}{blocked}"), end(run, tool).await)
}
