//! The step table: each step of the tree, said once — what it does with this config, the exact
//! commands it runs, how it is performed, and what a person runs by hand if a run stopped there.
//! `--dry-run`, the runbook and the "what to run next" block are views of this table.
//!
//! A new step: a file here implementing [`StepSpec`], a variant in `guard/step.rs`, its line in
//! [`spec`], and its edges in `guard/tree.rs`.

mod app_writes;
pub mod assess;
pub mod backup;
pub mod checks;
pub mod classify;
mod deploy;
mod health;
mod lost_writes;
mod migrate;
mod preflight;
mod pull;
mod record;
mod redeploy;
pub mod rehearse;
mod restore;
mod revert;
mod stop_app;
mod swap;
mod tool;
mod validate_restore;
mod verify_revert;

use anyhow::Result;
use async_trait::async_trait;

use super::Run;
use crate::exec::Cmd;
use crate::guard::{Assessment, Step};

/// How a step ended when it did not fail (a failure is the `Err`).
pub enum Done {
    Ok(String),
    /// Went wrong in a way the tree carries on past.
    Warning(String),
    Assessed(Assessment, String),
}

#[async_trait]
pub trait StepSpec: Send + Sync {
    /// What the step does with this config, in one line.
    fn what(&self, run: &Run) -> String;
    /// The commands it runs on the target, exactly as it runs them.
    fn commands(&self, _run: &Run) -> Vec<Cmd> {
        Vec::new()
    }
    /// The SQL statements it runs on the maintenance database, as it runs them (the plan shows
    /// them under its commands).
    fn sql(&self, _run: &Run) -> Vec<String> {
        Vec::new()
    }
    /// Whether a run asked to stop may cut it short (its commands killed where they run). The
    /// swap may not: it ends, one way or the other, within seconds.
    fn interruptible(&self) -> bool {
        true
    }
    /// What a person runs by hand when a run stopped at this step.
    fn by_hand(&self, _run: &Run) -> Vec<String> {
        Vec::new()
    }
    /// How a person does this step by hand, for the runbook (default: its commands).
    fn manual(&self, run: &Run) -> Vec<String> {
        self.commands(run).iter().map(|c| run.w.fleet.shown(c)).collect()
    }
    async fn perform(&self, run: &mut Run<'_>) -> Result<Done>;
}

/// The table: one line per step.
pub fn spec(step: Step) -> &'static dyn StepSpec {
    match step {
        Step::Preflight => &preflight::Preflight,
        Step::Pull => &pull::Pull,
        Step::Classify => &classify::Classify,
        Step::Backup => &backup::Backup,
        Step::Record => &record::Record,
        Step::Rehearse => &rehearse::Rehearse,
        Step::Migrate => &migrate::Migrate,
        Step::Deploy => &deploy::Deploy,
        Step::Health => &health::Health,
        Step::Assess => &assess::Assess,
        Step::Revert => &revert::Revert,
        Step::VerifyRevert => &verify_revert::VerifyRevert,
        Step::StopApp => &stop_app::StopApp,
        Step::Restore => &restore::Restore,
        Step::ValidateRestore => &validate_restore::ValidateRestore,
        Step::Swap => &swap::Swap,
        Step::LostWrites => &lost_writes::LostWrites,
        Step::AppWrites => &app_writes::AppWrites,
        Step::Redeploy => &redeploy::Redeploy,
        Step::RedeployHealth => &health::Health,
        Step::Checks => &checks::Checks,
    }
}

/// `echo 'SQL' | psql …` on `db`: a query as a person types it.
fn psql_line(run: &Run, db: &str, sql: &str) -> String {
    format!("echo {} | {}", crate::exec::quote(sql), run.w.fleet.shown(&run.w.db.query_cmd(db)))
}

/// What a tool command of this run is known by where it runs: its one-off container's label and
/// (migrate) its database sessions' `application_name`, so one that outlives its command can be
/// found and ended.
fn tool_name(run: &Run, label: &str) -> String {
    format!("deploy-guard-{}-{}", label.replace(' ', "-"), run.sha.short())
}

/// The migration tool's command aimed at `copy` instead of the live database: wherever the tool
/// runs (on the target, inside a one-off container), its libpq variables and its `DATABASE_URL`
/// are pointed at the copy first, and where `psql` is there it must confirm the copy is what they
/// reach, else the tool is not run (exit 97). The callers then check that the live database was
/// not touched: a tool whose own config names the database cannot be pointed anywhere else.
fn tool_cmd_on(run: &Run, label: &str, tag: &str, script: &str, copy: &str) -> Cmd {
    let q = crate::exec::quote;
    // A copy at an endpoint of its own (a Neon branch): its host too, and its own name there;
    // the password stays the one the tool has (a branch keeps its parent's roles).
    let endpoint = run.w.db.endpoint_of(copy);
    let copy = endpoint.as_ref().and_then(|e| e.conn.dbname.as_deref()).unwrap_or(copy);
    let encoded: String = copy
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (sed, at) = match endpoint.as_ref().and_then(|e| e.conn.host.clone()) {
        Some(host) => {
            let port = endpoint.as_ref().and_then(|e| e.conn.port);
            let hostport = port.map_or(host.clone(), |p| format!("{host}:{p}"));
            let mut at = format!("export PGHOST={}; ", q(&host));
            at.extend(port.map(|p| format!("export PGPORT={p}; ")));
            at.extend(
                endpoint.as_ref().and_then(|e| e.conn.sslmode).map(|m| format!("export PGSSLMODE={}; ", m.as_str())),
            );
            (format!("s#^([A-Za-z][A-Za-z0-9+.-]*://)([^@/?]*@)?[^/?]*(/[^?]*)?#\\1\\2{hostport}/{encoded}#"), at)
        }
        None => (format!("s#^([A-Za-z][A-Za-z0-9+.-]*://[^/?]*)(/[^?]*)?#\\1/{encoded}#"), String::new()),
    };
    let prelude = format!(
        "{at}export PGDATABASE={copy_q}; \
         if [ -n \"${{DATABASE_URL:-}}\" ]; then DATABASE_URL=$(printf '%s' \"$DATABASE_URL\" | sed -E {sed_q}); export DATABASE_URL; fi; \
         if command -v psql >/dev/null 2>&1; then \
           reached=$(psql \"${{DATABASE_URL:-}}\" -X -A -t -c 'SELECT current_database()' 2>&1) || reached=\"(no connection: $reached)\"; \
           [ \"$reached\" = {copy_q} ] || {{ echo \"deploy-guard: the tool's connection settings reach $reached, not the copy {copy}: it was not run\" >&2; exit 97; }}; \
         fi; ",
        copy_q = q(copy),
        sed_q = q(&sed),
    );
    tool_cmd(run, label, tag, &format!("{prelude}{script}"))
}

/// After a tool run aimed at a copy ([`tool_cmd_on`]): the live database's migration rows must
/// still be `recorded`. Otherwise the tool reached the live database — said loudly, as it is.
async fn live_untouched(run: &Run<'_>, recorded: &[serde_json::Value], what: &str) -> Result<()> {
    let w = run.w;
    let now = w.migration_rows(&w.db.name).await?;
    if now != recorded {
        anyhow::bail!(
            "{what} were meant for a copy but changed the LIVE database {} (its migration rows went from {} to {}): \
             the tool's own config names the database rather than reading PGDATABASE or DATABASE_URL. Check the \
             live database now; restore the pre-deploy backup if it must be undone ({})",
            w.db.name,
            recorded.len(),
            now.len(),
            run.dg(&format!("restore --sha {}", run.sha.short()))
        );
    }
    Ok(())
}

/// The migration tool's command, with the database named in libpq's variables and
/// `DATABASE_URL` where its environment lacks them: on a local target, and on an SSH target with
/// the shell runtime and the database reached from the host (with compose the tool runs in the
/// app's container, whose environment is the app's own).
fn tool_cmd(run: &Run, label: &str, tag: &str, script: &str) -> Cmd {
    let w = run.w;
    let remote_shell = !w.config.is_local() && w.config.app.runtime == crate::config::RuntimeKind::Shell;
    // With database.service the database is reached inside its container, not from the tool's host.
    let script = match remote_shell && w.config.database.service.is_none() {
        true => format!("{}{script}", w.db.conn_defaults_sh()),
        false => script.to_string(),
    };
    let mut cmd = w.runtime.tool_cmd(label, &tool_name(run, label), tag, &script).timeout(w.migrator.timeout);
    if w.config.is_local() {
        cmd.env.extend(w.db.conn_env());
    }
    cmd
}
