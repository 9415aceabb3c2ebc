//! What deploy-guard posts on GitHub, as pure functions of the report: the comment on the pull
//! request or commit (found again by its hidden marker) and the incident issue. Text from the run
//! is redacted (row values), fenced so nothing in it can close the fence, and capped.

use std::fmt::Write;

use super::Report;
use crate::guard::{EntryState, Outcome};

pub(super) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// Longest text of one detail, log or command block in a body.
const PART_MAX: usize = 4000;
/// GitHub refuses bodies over 65,536 characters; stay well below.
const BODY_MAX: usize = 60_000;
/// App log lines an incident may carry (with `github.incident_logs`).
const LOG_LINES: usize = 30;

/// Text from the run (errors, tool output, log lines) made fit for a possibly public issue:
/// PostgreSQL `DETAIL:` lines carry row values ("Key (email)=(ana@example.org) already
/// exists", "Failing row contains (…)"), so everything after `DETAIL:` is withheld; then cut
/// to [`PART_MAX`] characters.
pub fn redact(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.find("DETAIL:") {
            Some(at) => format!("{}DETAIL: [withheld: may carry row values; see the run's log]", &l[..at]),
            None => l.to_string(),
        })
        .collect();
    truncate(&lines.join("\n"), PART_MAX)
}

/// `text` in a code fence that nothing inside it can close: the fence is one backtick longer
/// than the longest run of backticks in the text (CommonMark closes a fence only with a run at
/// least as long).
pub fn fenced(text: &str, lang: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{lang}\n{}\n{fence}\n", text.trim_end())
}

/// A table cell: redacted, on one line, pipes escaped, short.
pub(super) fn cell(text: &str) -> String {
    truncate(&redact(text).replace('|', "\\|").replace('\n', " "), 160)
}

/// Cuts a whole body to what GitHub accepts, saying so.
pub(super) fn cap(mut md: String) -> String {
    if md.chars().count() > BODY_MAX {
        md = truncate(&md, BODY_MAX);
        md.push_str("\n\n(truncated: the full report is in the run's step summary)\n");
    }
    md
}

/// The next commands, fenced.
fn next_commands(r: &Report) -> String {
    fenced(&r.next_commands.join("\n"), "sh")
}

/// The hidden marker that finds our comment again.
pub fn marker(project: &str) -> String {
    format!("<!-- deploy-guard:{project} -->")
}

/// The PR check's marker: its comment is not the deploy's.
pub fn pr_check_marker(project: &str) -> String {
    format!("<!-- deploy-guard:{project}:pr-check -->")
}

/// The PR/commit comment: short, outcome first.
pub fn comment_body(r: &Report) -> String {
    let mut md = format!("### deploy-guard {}: **{}**\n\n{}\n\n", r.command, r.result, redact(&r.headline));
    let _ = writeln!(
        md,
        "| sha | tag | previous tag | database path | duration |\n|---|---|---|---|---|\n| `{}` | `{}` | `{}` | {} | {:.0} s |",
        r.sha.short(),
        r.tag.as_deref().unwrap_or("-"),
        r.previous_tag.as_deref().unwrap_or("-"),
        r.path,
        r.duration_secs
    );
    if let Some(b) = &r.backup {
        let _ = writeln!(md, "\nBackup: `{}` ({})", b.key, crate::model::human_bytes(b.size));
    }
    if !r.next_commands.is_empty() {
        md.push_str("\n**A person must act:**\n\n");
        md.push_str(&next_commands(r));
    }
    cap(md)
}

pub fn incident_title(r: &Report) -> String {
    let what = match &r.outcome {
        Outcome::RollbackFailed { stuck_at, .. } => format!("rollback stuck at {stuck_at}"),
        Outcome::RolledBack { failed_step, .. } => {
            format!("deploy failed at {}, rolled back", failed_step.map(|s| s.name()).unwrap_or("?"))
        }
        _ => r.result.to_string(),
    };
    format!("Incident: {} {} — {what}", r.project, r.tag.as_deref().unwrap_or(r.sha.as_str()))
}

/// A postmortem draft: what happened, the impact, the resolution, what would prevent it. Run
/// output is redacted and fenced; the app's log lines only with `logs` (`github.incident_logs`).
pub fn incident_body(r: &Report, logs: bool) -> String {
    let mut md = format!("## Summary\n\n{}\n\n", redact(&r.headline));
    md.push_str("## Timeline (UTC)\n\n| time | step | result | detail |\n|---|---|---|---|\n");
    for e in r.own_steps() {
        let state = match e.state {
            EntryState::Ok => "ok",
            EntryState::Warning => "warning",
            EntryState::Failed => "FAILED",
            EntryState::Running => "interrupted",
        };
        let _ =
            writeln!(md, "| {} | {} | {state} | {} |", e.started_at.format("%H:%M:%S"), e.step.name(), cell(&e.detail));
    }
    md.push_str("\n## What failed\n\n");
    match r.own_steps().find(|e| e.state == EntryState::Failed) {
        Some(e) => {
            let _ = write!(md, "`{}`:\n\n{}", e.step.name(), fenced(&redact(&e.detail), "text"));
        }
        None => md.push_str("(see the timeline)\n"),
    }
    match (&r.app_logs, logs) {
        (Some(l), true) => {
            let lines: Vec<&str> = l.trim_end().lines().collect();
            let last = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
            let _ = write!(md, "\nLast app log lines:\n\n{}", fenced(&redact(&last), "text"));
        }
        (Some(_), false) => md.push_str(
            "\nThe app's last log lines are in the run's step summary (set `github.incident_logs: true` to copy them here).\n",
        ),
        (None, _) => {}
    }
    md.push_str("\n## Impact\n\n");
    if !r.destroyed.is_empty() {
        md.push_str("The migrations destroyed data that existed before the deploy (the backup brought it back):\n\n");
        for d in &r.destroyed {
            let _ = writeln!(md, "- {d}");
        }
        md.push('\n');
    }
    super::summary::lost_writes(&mut md, r);
    let failed_at = r.own_steps().find(|e| e.state == EntryState::Failed).map(|e| e.started_at);
    // pg_dump reads one snapshot taken when it starts: later writes are not in the backup.
    let backup_at = r
        .steps
        .iter()
        .find(|e| e.step == crate::guard::Step::Backup && e.state == EntryState::Ok)
        .map(|e| e.started_at);
    let swap_at = r
        .own_steps()
        .find(|e| e.step == crate::guard::Step::Swap && e.state == EntryState::Ok)
        .and_then(|e| e.finished_at);
    if let (Some(b), Some(s)) = (backup_at, swap_at) {
        let _ = writeln!(
            md,
            "- The database was restored from the pre-deploy backup: **writes between {} and {} UTC ({:.0} s) are not in the live database**. They are in the kept copy `{}`: decide what to replay.",
            b.format("%H:%M:%S"),
            s.format("%H:%M:%S"),
            (s - b).num_milliseconds() as f64 / 1000.0,
            r.kept_database.as_deref().unwrap_or("(see the report)")
        );
    } else {
        md.push_str("- No data was lost: the database was not restored from the backup.\n");
    }
    if let (Some(f), Some(end)) = (failed_at, r.own_steps().last().and_then(|e| e.finished_at)) {
        let _ = writeln!(
            md,
            "- Degraded from {} to {} UTC (recovery {:.0} s).",
            f.format("%H:%M:%S"),
            end.format("%H:%M:%S"),
            (end - f).num_milliseconds() as f64 / 1000.0
        );
    }
    md.push_str("\n## Resolution\n\n");
    let _ = writeln!(md, "{} (database path: {}).", redact(&r.headline), r.path);
    if !r.next_commands.is_empty() {
        md.push_str("\n**Still open — a person must act:**\n\n");
        md.push_str(&next_commands(r));
    }
    md.push_str("\n## Prevention\n\n");
    md.push_str("- [ ] Why did the migration (or release) fail here and not in CI? Add the missing check.\n");
    md.push_str("- [ ] Is the migration safe on a table with rows (NOT NULL without default, long locks)?\n");
    md.push_str("- [ ] Does its down() really undo it? Rehearse: `deploy-guard simulate`.\n");
    md.push_str("- [ ] Was the health check enough to catch this before users did?\n");
    md.push_str("- [ ] Drop the kept `*__failed_*` database once nothing more is needed from it.\n");
    cap(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{DbPath, Step};
    use crate::report::fixture::{entry, report};

    fn restored() -> Report {
        use EntryState::*;
        let steps = vec![
            entry(Step::Preflight, Ok, 0, 1, "ok"),
            entry(Step::Backup, Ok, 1, 4, "3.0 MiB, verified"),
            entry(Step::Record, Ok, 4, 5, "recorded"),
            entry(Step::Migrate, Ok, 5, 8, "applied AddTier2"),
            entry(Step::Deploy, Ok, 8, 9, "v2.4.0 started"),
            entry(Step::Health, Failed, 9, 12, "not healthy within 3s; last: 502"),
            entry(Step::Assess, Ok, 12, 13, "1 migration applied"),
            entry(Step::StopApp, Ok, 13, 14, "app stopped"),
            entry(Step::Restore, Ok, 14, 30, "restored"),
            entry(Step::ValidateRestore, Ok, 30, 31, "valid"),
            entry(Step::Swap, Ok, 31, 32, "swapped"),
            entry(Step::Redeploy, Ok, 32, 33, "v2.3.1 started"),
            entry(Step::RedeployHealth, Ok, 33, 35, "healthy"),
        ];
        report(Outcome::RolledBack { failed_step: Some(Step::Health), path: DbPath::Restore }, steps, vec![])
    }

    #[test]
    fn comment() {
        insta::assert_snapshot!(comment_body(&restored()));
    }

    #[test]
    fn incident() {
        let r = restored();
        assert_eq!(incident_title(&r), "Incident: station v2.4.0 — deploy failed at health, rolled back");
        let body = incident_body(&r, true);
        // The restore lost the writes between the backup and the swap: say so, with times.
        assert!(body.contains("writes between 15:00:01 and 15:00:32 UTC (31 s)"), "{body}");
        insta::assert_snapshot!(body);
    }

    /// A failure whose error carries row values and backticks, and app logs that try to close
    /// the fence and issue workflow commands.
    fn hostile() -> Report {
        use EntryState::*;
        let detail = "migration 003 failed: psql:003.up.sql:1: ERROR:  duplicate key value violates unique constraint \"customers_email_key\"\n\
                      DETAIL:  Key (email)=(ana.secret@example.org) already exists.\n\
                      psql: DETAIL: Failing row contains (7, Ana Secret, null).\n```\n# escaped the fence";
        let steps = vec![
            entry(Step::Preflight, Ok, 0, 1, "ok"),
            entry(Step::Backup, Ok, 1, 4, "3.0 MiB, verified"),
            entry(Step::Migrate, Failed, 5, 8, detail),
            entry(Step::Assess, Ok, 8, 9, "unchanged"),
            entry(Step::Redeploy, Ok, 9, 10, "v2.3.1 started"),
        ];
        let mut r = report(Outcome::RolledBack { failed_step: Some(Step::Migrate), path: DbPath::None }, steps, vec![]);
        let mut logs: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        logs.push("````\n::add-mask::x\nDETAIL:  Key (id)=(4242) is still referenced".into());
        r.app_logs = Some(logs.join("\n"));
        r.headline = format!("{} {}", r.headline, "x".repeat(100_000));
        r
    }

    /// Every fence in `md` opened is closed by the same run of backticks, and no text line inside
    /// one is a run of backticks at least as long (which would close it early).
    fn fences_hold(md: &str) {
        let mut open: Option<usize> = None;
        for line in md.lines() {
            let ticks = line.len() - line.trim_start_matches('`').len();
            match open {
                None if ticks >= 3 => open = Some(ticks),
                Some(n) if ticks >= n => {
                    assert!(line.trim_start_matches('`').is_empty(), "fence of {n} closed by {line:?}:\n{md}");
                    open = None;
                }
                _ => {}
            }
        }
        assert!(open.is_none(), "a fence was never closed:\n{md}");
    }

    #[test]
    fn bodies_withhold_row_values_are_fenced_and_capped_and_logs_are_opt_in() {
        let r = hostile();
        for (what, md) in [
            ("comment", comment_body(&r)),
            ("incident", incident_body(&r, false)),
            ("incident with logs", incident_body(&r, true)),
        ] {
            assert!(!md.contains("ana.secret@example.org") && !md.contains("Ana Secret"), "{what}: row values:\n{md}");
            assert!(!md.contains("4242"), "{what}: row values from the logs");
            assert!(md.chars().count() < 61_000, "{what}: {} chars", md.chars().count());
            fences_hold(&md);
        }
        let without = incident_body(&r, false);
        assert!(!without.contains("line 99") && !without.contains("add-mask"), "logs without incident_logs");
        assert!(without.contains("github.incident_logs: true"), "{without}");
        assert!(without.contains("DETAIL: [withheld"), "{without}");
        let with = incident_body(&r, true);
        assert!(with.contains("line 99") && !with.contains("line 72\n"), "the last 30 lines only");
        // The log's ```` run is inside a fence of five.
        assert!(with.contains("`````text\nline 73\n"), "{with}");
        let failed = with.split("## What failed").nth(1).unwrap();
        assert!(failed.contains("````text\nmigration 003 failed"), "{failed}");
    }
}
