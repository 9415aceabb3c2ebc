//! The report of a run, from its journal and what its steps found.

use super::{BackupInfo, Report};
use crate::guard::Outcome;
use crate::run::{spec, Run};

/// The run's notes, and for a tool that cannot revert, that plainly.
fn notes(run: &Run) -> Vec<String> {
    let mut notes = run.notes.clone();
    let m = &run.w.migrator;
    if !m.can_revert() && matches!(run.mode, crate::guard::Mode::Deploy | crate::guard::Mode::Rollback) {
        let why = match m.tool {
            crate::config::Tool::Command => "no migrations.revert (and migrations.table) is configured".to_string(),
            _ => format!("migrations.tool {} cannot revert (forward-only)", m.tool().name()),
        };
        notes.push(format!("{why}: restoring the pre-deploy backup is the only way back"));
    }
    notes
}

/// The hosts of the deploy a rollback left as they were (taken out of `target.hosts`), for the
/// headline: "rolled back" must not read as if they were.
fn abandoned(run: &Run) -> String {
    let gone: Vec<&str> = run.journal.hosts.iter().filter(|h| h.abandoned.is_some()).map(|h| h.host.as_str()).collect();
    match gone.is_empty() {
        true => String::new(),
        false => format!(
            " NOT rolled back: {}, no longer in target.hosts, left as last known and not verified (see the notes).",
            gone.join(", ")
        ),
    }
}

pub fn build(run: &Run, outcome: Outcome) -> Report {
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
        Outcome::RollbackFailed { stuck_at, .. } => {
            let mut c = vec![format!("# the full manual runbook for this deployment: {}", run.dg("runbook"))];
            let by_hand = spec(*stuck_at).by_hand(run);
            if by_hand.is_empty() {
                // Stopped between steps (a signal): the rollback picks up from the journal.
                c.push(format!("# `{stuck_at}` did not run; roll back from where the journal stopped:"));
                c.push(run.dg(&format!("rollback --sha {}", run.sha.short())));
            }
            c.extend(by_hand);
            c
        }
        _ => Vec::new(),
    };
    let headline = outcome.headline() + &abandoned(run);
    let assessed = run.found.assessed.as_ref();
    super::actions::error_for(&outcome, &headline);
    Report {
        command: run.mode,
        project: w.config.project.clone(),
        result: outcome.result(),
        path: outcome.path().name(),
        exit_code: outcome.exit_code(run.mode),
        headline,
        sha: run.sha.clone(),
        tag: run.tag.clone(),
        previous_tag: run.previous_tag.clone(),
        previous_tag_source: run.previous_tag_source,
        started_at: run.started_at,
        duration_secs: run.started.elapsed().as_secs_f64(),
        recovery_secs,
        steps,
        hosts: run.journal.hosts.clone(),
        backup: run.manifest.as_ref().map(|m| BackupInfo {
            location: w.store.location(&m.key),
            key: m.key.clone(),
            size: m.size,
            dump_bytes: m.dump_bytes,
            sha256: m.sha256.clone(),
            verified: m.verified,
            copy: m.copy.clone(),
        }),
        migrations_before: run.manifest.as_ref().map(|m| m.migrations.rows.clone()).unwrap_or_default(),
        migrations_after: assessed.map(|a| a.rows_after.clone()),
        drift: run.found.drift_after_revert.clone().or_else(|| assessed.map(|a| a.drift.clone())).unwrap_or_default(),
        destroyed: assessed.map(|a| a.destroyed.clone()).unwrap_or_default(),
        lost_writes: run.found.lost_writes.clone(),
        classification: run.found.classification.clone(),
        rehearsal: run.manifest.as_ref().and_then(|m| m.rehearsal.clone()),
        discarded: match assessed {
            Some(a) if outcome.path() == crate::guard::DbPath::Revert => a.discarded.clone(),
            _ => Vec::new(),
        },
        kept_additions: match &outcome {
            Outcome::RolledBack { path: crate::guard::DbPath::None, .. } => {
                assessed.map(|a| a.added.clone()).unwrap_or_default()
            }
            _ => Vec::new(),
        },
        app_status: assessed.map(|a| a.app_status.clone()),
        app_logs: assessed.and_then(|a| a.app_logs.clone()),
        kept_database: run.kept_database().map(str::to_string),
        notes: notes(run),
        links: Default::default(),
        can_revert: w.migrator.can_revert(),
        next_commands,
        outcome,
    }
}
