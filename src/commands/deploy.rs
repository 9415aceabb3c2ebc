//! `deploy` and `rollback`: drive the decision tree, then report.

use anyhow::Result;

use super::drive::Run;
use super::World;
use crate::config::Strategy;
use crate::exec::quote;
use crate::guard::plan::{Plan, PlannedStep};
use crate::guard::{Engine, Mode, Outcome, Step};
use crate::report::{BackupInfo, Report};

/// Runs the whole guarded deploy.
/// `fallback_previous_tag` is used when the runtime cannot tell what runs (e.g. the last
/// successful GitHub deployment).
pub async fn deploy(
    w: &World,
    sha: &str,
    tag: &str,
    previous_tag: Option<&str>,
    fallback_previous_tag: Option<String>,
    config_arg: &str,
) -> Report {
    let mut run = Run::new(w, sha);
    run.tag = Some(tag.to_string());
    run.previous_tag = previous_tag.map(str::to_string);
    run.fallback_previous_tag = fallback_previous_tag;
    let outcome = run.drive(Engine::new(Mode::Deploy, w.config.rollback.strategy)).await;
    if outcome.result() == "deployed" {
        for line in super::backup::prune_after(w).await {
            run.notes.push(format!("retention: {line}"));
        }
    }
    let code = outcome.deploy_exit_code();
    build_report(&run, "deploy", outcome, code, config_arg)
}

/// Rolls back the deploy of `sha` by hand: finds its manifest, then assess onwards.
pub async fn rollback(
    w: &World,
    sha: &str,
    path: Option<Strategy>,
    to_tag: Option<&str>,
    config_arg: &str,
) -> Result<Report> {
    let manifest = crate::backup::find(w.store.as_ref(), sha).await?;
    let mut run = Run::resume(w, manifest);
    if let Some(t) = to_tag {
        run.previous_tag = Some(t.to_string());
    }
    if run.previous_tag.is_none() {
        anyhow::bail!("the manifest of {} records no previous tag; pass --to-tag TAG", run.sha);
    }
    let strategy = path.unwrap_or(w.config.rollback.strategy);
    let outcome = run.drive(Engine::new(Mode::Rollback, strategy)).await;
    let code = outcome.rollback_exit_code();
    Ok(build_report(&run, "rollback", outcome, code, config_arg))
}

fn build_report(run: &Run, command: &str, outcome: Outcome, exit_code: i32, config_arg: &str) -> Report {
    let w = run.w;
    let steps = run.journal.entries.clone();
    let recovery_secs =
        steps.iter().find(|e| e.step.is_rollback() && e.started_at >= run.started_at).and_then(|first| {
            steps
                .last()
                .and_then(|l| l.finished_at)
                .map(|end| (end - first.started_at).num_milliseconds() as f64 / 1000.0)
        });
    let next_commands = match &outcome {
        Outcome::RollbackFailed { stuck_at, .. } => next_commands(run, *stuck_at, config_arg),
        _ => Vec::new(),
    };
    let headline = outcome.headline();
    crate::report::actions::error_for(&outcome, &headline);
    Report {
        command: command.into(),
        project: w.config.project.clone(),
        result: outcome.result().into(),
        path: outcome.path().name().into(),
        exit_code,
        headline,
        sha: run.sha.clone(),
        tag: run.tag.clone(),
        previous_tag: run.previous_tag.clone(),
        started_at: run.started_at,
        duration_secs: run.started.elapsed().as_secs_f64(),
        recovery_secs,
        steps,
        backup: run.manifest.as_ref().map(|m| BackupInfo {
            location: format!("{}/{}", w.store.describe().trim_end_matches('/'), m.key),
            key: m.key.clone(),
            size: m.size,
            dump_bytes: m.dump_bytes,
            sha256: m.sha256.clone(),
            verified: m.verified,
        }),
        migrations_before: run.manifest.as_ref().map(|m| m.migrations.rows.clone()).unwrap_or_default(),
        migrations_after: run.rows_after.clone(),
        drift: run.drift.clone(),
        app_status: run.app_status.clone(),
        app_logs: run.app_logs.clone(),
        kept_database: run.kept_database().map(str::to_string),
        notes: run.notes.clone(),
        next_commands,
        outcome,
    }
}

/// The exact commands a person runs when the rollback stopped at `stuck_at`.
fn next_commands(run: &Run, stuck_at: Step, config_arg: &str) -> Vec<String> {
    let w = run.w;
    let sha7 = run.sha7();
    let prev = run.previous_tag.as_deref().unwrap_or("PREVIOUS_TAG");
    let db = &w.db;
    let psql =
        |sql: &str| format!("echo {} | {}", quote(sql), db.shell_text(&db.psql_cmd("psql", &db.maintenance_db, "")));
    let mut c = vec![format!("# the full manual runbook for this deployment: deploy-guard runbook{config_arg}")];
    match stuck_at {
        Step::Preflight => {
            c.push("# the rollback could not start: find what is unreachable".into());
            c.push(format!("deploy-guard check{config_arg}"));
            c.push(format!("deploy-guard rollback --sha {sha7}{config_arg}"));
        }
        Step::Assess | Step::Revert | Step::VerifyRevert => {
            c.push(
                "# the fast path is not possible or did not hold, and restore is not allowed by rollback.strategy"
                    .into(),
            );
            c.push("# restore the verified pre-deploy backup (the broken database is kept):".into());
            c.push(format!("deploy-guard rollback --sha {sha7} --path restore{config_arg}"));
        }
        Step::Restore | Step::ValidateRestore => {
            c.push(format!(
                "# the live database {} was NOT touched; the backup could not be restored or did not validate",
                db.name
            ));
            c.push(format!("deploy-guard backups --sha {sha7}{config_arg}"));
            c.push("# after fixing the cause (disk space, permissions, psql version):".into());
            c.push(format!("deploy-guard rollback --sha {sha7} --path restore{config_arg}"));
        }
        Step::Swap => {
            c.push("# the swap failed: see which databases exist and whether they accept connections".into());
            c.push(psql("SELECT datname, datallowconn FROM pg_database ORDER BY 1;"));
            c.push(format!(
                "# if {} is missing but {}__restore_{sha7} exists, finish the swap by hand:",
                db.name, db.name
            ));
            c.push(psql(&format!("ALTER DATABASE \"{0}__restore_{1}\" RENAME TO \"{0}\";", db.name, sha7)));
            c.push(format!("deploy-guard rollback --sha {sha7} --path restore{config_arg}"));
        }
        Step::Redeploy | Step::RedeployHealth => {
            c.push("# the database is back to its pre-deploy state; the previous tag did not come up".into());
            c.push(w.runtime.describe_deploy(prev));
            c.push(format!("# then check: {}", w.health.describe()));
        }
        _ => {}
    }
    c
}

/// The whole run as data, nothing executed (`deploy --dry-run`).
pub fn plan(w: &World, sha: &str, tag: &str, previous_tag: Option<&str>) -> Plan {
    let db = &w.db;
    let sha7 = &sha[..7.min(sha.len())];
    let prev =
        previous_tag.map(str::to_string).unwrap_or_else(|| "read at run time from app.commands.current_tag".into());
    let prev_for_cmd = previous_tag.unwrap_or("PREVIOUS_TAG");
    let stem = crate::backup::stem(sha, chrono::Utc::now());
    let steps = vec![
        PlannedStep {
            step: Step::Preflight,
            what: "store writable, database reachable, migration table readable, deploy lock, previous tag".into(),
            commands: vec![],
        },
        PlannedStep {
            step: Step::Backup,
            what: format!(
                "stream pg_dump → gzip → {}/{} (…time of the run), then read it back whole to verify",
                w.store.describe(),
                crate::backup::data_key(&stem)
            ),
            commands: vec![db.shell_text(&db.dump_cmd())],
        },
        PlannedStep {
            step: Step::Record,
            what: format!(
                "record migration rows ({}) and the schema fingerprint in the manifest",
                w.migrator.table.as_deref().unwrap_or("no table configured")
            ),
            commands: vec![],
        },
        PlannedStep {
            step: Step::Migrate,
            what: format!("run the migrations (timeout {})", humantime::format_duration(w.migrator.timeout)),
            commands: vec![w.runtime.tool_cmd("migrate", tag, &w.migrator.run_script(tag, sha)).script],
        },
        PlannedStep {
            step: Step::Deploy,
            what: format!("start {tag}"),
            commands: vec![w.runtime.describe_deploy(tag)],
        },
        PlannedStep {
            step: Step::Health,
            what: format!("wait for health (timeout {})", humantime::format_duration(w.config.app.health.timeout)),
            commands: vec![w.health.describe()],
        },
    ];
    let restore_db = format!("{}__restore_{sha7}", db.name);
    let rollback = vec![
        PlannedStep {
            step: Step::Assess,
            what: "app status and logs, migration table and fingerprint vs the recorded ones".into(),
            commands: vec![],
        },
        PlannedStep {
            step: Step::Revert,
            what: "fast path: revert each migration this deploy applied".into(),
            commands: w
                .migrator
                .revert_script(tag, sha)
                .map(|s| vec![w.runtime.tool_cmd("revert", tag, &s).script])
                .unwrap_or_else(|| vec!["(no revert command: the fast path is never taken)".into()]),
        },
        PlannedStep {
            step: Step::VerifyRevert,
            what: "migration rows and fingerprint must equal the recorded ones".into(),
            commands: vec![],
        },
        PlannedStep {
            step: Step::StopApp,
            what: "safe path: stop the app".into(),
            commands: vec![w.runtime.describe_stop()],
        },
        PlannedStep {
            step: Step::Restore,
            what: format!("restore the backup into scratch database {restore_db}"),
            commands: vec![db.shell_text(&db.psql_cmd("psql", &restore_db, "--single-transaction"))],
        },
        PlannedStep {
            step: Step::ValidateRestore,
            what: "fingerprint and migration rows equal the recorded ones".into(),
            commands: vec![],
        },
        PlannedStep {
            step: Step::Swap,
            what: format!("{0} → {0}__failed_{sha7} (kept), {restore_db} → {0}", db.name),
            commands: vec![],
        },
        PlannedStep {
            step: Step::Redeploy,
            what: format!("start the previous tag {prev}"),
            commands: vec![w.runtime.describe_deploy(prev_for_cmd)],
        },
        PlannedStep { step: Step::RedeployHealth, what: "wait for health".into(), commands: vec![w.health.describe()] },
    ];
    Plan {
        sha: sha.into(),
        tag: tag.into(),
        previous_tag: prev,
        target: w.exec.describe(),
        store: w.store.describe(),
        steps,
        rollback,
    }
}
