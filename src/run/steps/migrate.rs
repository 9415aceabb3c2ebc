use anyhow::{bail, Result};
use async_trait::async_trait;

use super::{tool_cmd, Done, Run, StepSpec};
use crate::exec::{self, Cmd};

pub struct Migrate;

impl Migrate {
    /// The tool's sessions carry this `application_name` (libpq's PGAPPNAME), so a migration that
    /// outlives its command (a timeout, a dropped SSH channel) can be found and ended.
    fn app_name(run: &Run) -> String {
        format!("deploy-guard-migrate-{}", run.sha.short())
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

/// Ends the database sessions of a migration whose command did not end cleanly, and waits until
/// they are gone: assess must never look at a database a migration is still changing.
async fn cancel(run: &Run<'_>) -> Result<String> {
    let db = &run.w.db;
    let name = crate::db::literal(&Migrate::app_name(run));
    let ended = db
        .query(
            &db.maintenance_db,
            &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = {name};"),
        )
        .await?;
    for _ in 0..300 {
        let left = db
            .query(
                &db.maintenance_db,
                &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = {name};"),
            )
            .await?;
        if left.trim() == "0" {
            return Ok(format!("{} session(s) of the migration ended", ended.trim()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("the migration's sessions ({name}) did not end within 30 s")
}

#[async_trait]
impl StepSpec for Migrate {
    fn what(&self, run: &Run) -> String {
        format!("run the migrations (timeout {})", humantime::format_duration(run.w.migrator.timeout))
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let db = &run.w.db;
        Self::cmd(run).into_iter().chain([db.query_cmd(&db.maintenance_db)]).collect()
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        run.code_tag()?;
        let cmd = Self::cmd(run).expect("a tag");
        let out = match exec::capture(run.w.exec.as_ref(), &cmd).await {
            Ok(out) => out,
            Err(e) => {
                let blocked = blockers(run).await.map(|b| format!("; {b}")).unwrap_or_default();
                let cancelled = cancel(run).await.unwrap_or_else(|c| format!("cancelling it failed too: {c:#}"));
                bail!("{e:#}{blocked}; {cancelled}");
            }
        };
        if !out.exit.success() {
            // A timeout or a lost channel can leave the migration running where it was started.
            let blocked = blockers(run).await.map(|b| format!("; {b}")).unwrap_or_default();
            let cancelled = cancel(run).await.unwrap_or_else(|c| format!("cancelling it failed too: {c:#}"));
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
