//! The markdown summary: outcome first, then what to do, the timeline, the path through the
//! decision tree, the backup, the migration table, the app's last words. A pure function.

use std::collections::HashMap;
use std::fmt::Write;

use super::Report;
use crate::guard::tree::End;
use crate::guard::{EntryState, Outcome, Step};

pub fn render(r: &Report) -> String {
    let mut md = String::new();
    let icon = match r.outcome {
        Outcome::Deployed | Outcome::BackedUp | Outcome::Restored | Outcome::Rehearsed => "✅",
        Outcome::RolledBack { .. } => "↩️",
        Outcome::RollbackFailed { .. } => "🚨",
        Outcome::Aborted { .. } => "⛔",
    };
    let _ = writeln!(md, "## {icon} deploy-guard {}: {}\n", r.command, r.result);
    let _ = writeln!(md, "**{}**\n", r.headline);
    let _ = writeln!(
        md,
        "`{}` · sha `{}` · tag `{}` · previous tag `{}` · database path `{}` · {:.1} s · exit {}\n",
        r.project,
        r.sha.short(),
        r.tag.as_deref().unwrap_or("-"),
        r.previous_tag.as_deref().unwrap_or("-"),
        r.path,
        r.duration_secs,
        r.exit_code
    );
    if let Some(secs) = r.recovery_secs {
        let split: Vec<String> = r
            .own_steps()
            .filter(|e| e.step.is_rollback())
            .filter_map(|e| Some(format!("{} {:.1} s", e.step.name(), e.duration_ms()? as f64 / 1000.0)))
            .collect();
        let _ = writeln!(
            md,
            "Recovery took {secs:.1} s, from the failure to the end of the rollback: {}.\n",
            split.join(", ")
        );
    }
    if let (Some(tag), Some(source)) = (&r.previous_tag, r.previous_tag_source) {
        let _ = writeln!(md, "Previous tag `{tag}` read from {}.\n", source.describe());
    }
    if !r.next_commands.is_empty() {
        md.push_str("### What to do now\n\n");
        md.push_str(&r.next_commands_block());
        md.push('\n');
    }
    hosts(&mut md, r);
    timeline(&mut md, r);
    flowchart(&mut md, r);
    if let Some(b) = &r.backup {
        md.push_str("### Backup\n\n| | |\n|---|---|\n");
        let _ = writeln!(md, "| location | `{}` |", b.location);
        let _ = writeln!(
            md,
            "| size | {} ({} of SQL) |",
            crate::model::human_bytes(b.size),
            crate::model::human_bytes(b.dump_bytes)
        );
        let _ = writeln!(md, "| sha256 | `{}` |", b.sha256);
        if let Some(copy) = &b.copy {
            let _ = writeln!(md, "| offsite copy | `{copy}` (verified) |");
        }
        let _ = writeln!(
            md,
            "| verified | {} |\n",
            if b.verified { "yes: read back whole, decompressed, trailer present" } else { "NO" }
        );
    }
    migrations(&mut md, r);
    if !r.classification.is_empty() {
        md.push_str("### What the migrations' SQL does (read before the deploy)\n\n| kind | rule | why | statement |\n|---|---|---|---|\n");
        for f in &r.classification {
            let kind = match f.kind {
                crate::db::lint::Kind::Destructive => "destructive",
                crate::db::lint::Kind::LongLock => "long lock",
                crate::db::lint::Kind::BreaksPrevious => "breaks the previous release",
            };
            let _ = writeln!(
                md,
                "| {kind} | `{}` | {} | `{}` |",
                f.rule,
                f.why,
                f.statement.replace('|', "\\|").replace('`', "'")
            );
        }
        md.push('\n');
    }
    rehearsal(&mut md, r);
    if !r.destroyed.is_empty() {
        md.push_str("### Data the migrations destroyed\n\nA revert cannot bring these back, so the backup was the way back:\n\n");
        for d in &r.destroyed {
            let _ = writeln!(md, "- {d}");
        }
        md.push('\n');
    }
    lost_writes(&mut md, r);
    if !r.discarded.is_empty() {
        md.push_str("### What the revert discarded\n\nThe new release had already written into what its migrations added; the revert dropped it (it was never in the backup):\n\n");
        for d in &r.discarded {
            let _ = writeln!(md, "- {d}");
        }
        md.push('\n');
    }
    if !r.kept_additions.is_empty() {
        md.push_str("### Kept: the migrations only added\n\nThe previous tag runs on the new schema, a superset of its own (`rollback.additive: keep`); nothing written into the additions was dropped. What stays:\n\n```\n");
        for a in &r.kept_additions {
            let _ = writeln!(md, "{a}");
        }
        md.push_str("```\n\nTo schedule: redeploy the fixed release (its migrations are already applied), or a cleanup migration that drops these once the release is abandoned.\n\n");
    }
    if !r.drift.is_empty() {
        md.push_str("### Schema changes seen (vs the pre-deploy fingerprint)\n\n```diff\n");
        for d in r.drift.iter().take(50) {
            md.push_str(d);
            md.push('\n');
        }
        if r.drift.len() > 50 {
            let _ = writeln!(md, "… and {} more", r.drift.len() - 50);
        }
        md.push_str("```\n\n");
    }
    if let Some(k) = &r.kept_database {
        let _ = writeln!(md, "The broken database is kept as `{k}` for forensics; drop it when done.\n");
    }
    if !r.notes.is_empty() {
        md.push_str("### Notes\n\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push('\n');
    }
    if r.app_status.is_some() || r.app_logs.is_some() {
        md.push_str("<details><summary>App status and last log lines at the failure</summary>\n\n```\n");
        if let Some(s) = &r.app_status {
            let _ = writeln!(md, "status: {s}");
        }
        if let Some(l) = &r.app_logs {
            md.push_str(l.trim_end());
            md.push('\n');
        }
        md.push_str("```\n\n</details>\n");
    }
    md
}

/// With several hosts: a row per host, the tag it ran before the deploy and the one it runs now.
fn hosts(md: &mut String, r: &Report) {
    if r.hosts.is_empty() {
        return;
    }
    md.push_str("### Hosts\n\n| host | before | now |\n|---|---|---|\n");
    for h in &r.hosts {
        let now = match (&h.running, h.as_before()) {
            _ if h.abandoned.is_some() => format!(
                "⚠️ abandoned: no longer in `target.hosts`, not rolled back; last known: {} (not verified)",
                h.last_known(r.tag.as_deref())
            ),
            (Some(t), true) => format!("{t} (as before)"),
            (Some(t), false) => t.clone(),
            (None, _) => "⚠️ unknown: a command there was cut off, or it was stopped; see the next commands".into(),
        };
        let _ = writeln!(md, "| {} | {} | {now} |", h.host, h.previous.as_deref().unwrap_or("?"));
    }
    md.push('\n');
}

fn timeline(md: &mut String, r: &Report) {
    md.push_str("### Timeline\n\n| step | result | duration | detail |\n|---|---|---:|---|\n");
    for e in r.own_steps() {
        let result = match e.state {
            EntryState::Ok => "✅ ok",
            EntryState::Warning => "⚠️ warning",
            EntryState::Failed => "❌ failed",
            EntryState::Running => "⏸ interrupted",
        };
        let dur = e.duration_ms().map(|ms| format!("{:.1} s", ms as f64 / 1000.0)).unwrap_or_else(|| "-".into());
        let detail = e.detail.replace('|', "\\|").replace('\n', " ");
        let detail = if detail.chars().count() > 300 {
            format!("{}…", detail.chars().take(300).collect::<String>())
        } else {
            detail
        };
        let _ = writeln!(md, "| {} | {result} | {dur} | {detail} |", e.step.name());
    }
    md.push('\n');
}

/// The decision tree of the run's mode, drawn from its edges, with the path this run took
/// coloured in.
fn flowchart(md: &mut String, r: &Report) {
    let id = super::flowchart::node_id;
    md.push_str("### Path through the decision tree\n\n```mermaid\n");
    md.push_str(&super::flowchart::mermaid(r.command, r.can_revert));
    md.push_str("  classDef ok fill:#d4edda,stroke:#28a745,color:#000\n");
    md.push_str("  classDef failed fill:#f8d7da,stroke:#dc3545,color:#000\n");
    md.push_str("  classDef warn fill:#fff3cd,stroke:#ffc107,color:#000\n");
    let mut state: HashMap<Step, EntryState> = HashMap::new();
    for e in r.own_steps() {
        state.insert(e.step, e.state);
    }
    let mut by_class: HashMap<&str, Vec<String>> = HashMap::new();
    for step in Step::ALL {
        if let Some(s) = state.get(step) {
            let class = match s {
                EntryState::Ok => "ok",
                EntryState::Warning => "warn",
                EntryState::Failed | EntryState::Running => "failed",
            };
            by_class.entry(class).or_default().push(id(*step));
        }
    }
    let end = match r.outcome {
        Outcome::Deployed => (End::Deployed, "ok"),
        Outcome::RolledBack { .. } => (End::RolledBack, "ok"),
        Outcome::RollbackFailed { .. } => (End::Stuck, "failed"),
        Outcome::Aborted { .. } => (End::Aborted, "failed"),
        Outcome::BackedUp => (End::BackedUp, "ok"),
        Outcome::Restored => (End::Restored, "ok"),
        Outcome::Rehearsed => (End::Rehearsed, "ok"),
    };
    by_class.entry(end.1).or_default().push(end.0.name().to_string());
    for class in ["ok", "warn", "failed"] {
        if let Some(nodes) = by_class.get(class) {
            let _ = writeln!(md, "  class {} {class}", nodes.join(","));
        }
    }
    md.push_str("```\n\n");
}

/// The rehearsal on a copy: each migration's times, and the locks held past `lock_warn`.
fn rehearsal(md: &mut String, r: &Report) {
    let Some(h) = &r.rehearsal else { return };
    md.push_str("### Rehearsal on a copy of the backup\n\n");
    if !h.migrations.is_empty() {
        md.push_str(
            "| migration | applied (s) | reverted (s) | locks held over the threshold |\n|---|---:|---:|---|\n",
        );
        for m in &h.migrations {
            let up = if m.committed_with > 1 {
                format!(
                    "{:.1} (committed together with {} migrations: one transaction, or each under 0.1 s)",
                    m.up_secs,
                    m.committed_with - 1
                )
            } else {
                format!("{:.1}", m.up_secs)
            };
            let down = m.down_secs.map(|d| format!("{d:.1}")).unwrap_or_else(|| "-".into());
            let locks: Vec<String> = h
                .long_locks
                .iter()
                .filter(|l| l.migration.split(" + ").any(|n| n == m.name))
                .map(|l| {
                    format!(
                        "{}`{}` {} ≥ {:.1} s, blocks {}",
                        if l.revert { "revert: " } else { "" },
                        l.table,
                        l.mode,
                        l.secs,
                        l.blocks
                    )
                })
                .collect();
            let locks = if locks.is_empty() { "none".to_string() } else { locks.join("; ") };
            let _ = writeln!(md, "| `{}` | {up} | {down} | {} |", m.name, locks.replace('|', "\\|"));
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "Applied in {:.1} s, reverted in {:.1} s. The revert brings back the schema and migration rows: {}; every row \
         of the tables that existed before: {}. Locks reported: table locks that block reads or writes, held over \
         {:.1} s on the copy (sampled every {:.1} s; a lower bound).\n",
        h.up_secs,
        h.down_secs,
        if h.revert_restores_schema { "yes" } else { "**no**" },
        if h.revert_restores_data { "yes" } else { "**no**" },
        h.lock_warn_secs,
        crate::db::locks::INTERVAL.as_secs_f64(),
    );
    for l in &h.long_locks {
        let _ = writeln!(md, "- {}", l.describe());
    }
    for n in h.differences.iter().chain(&h.notes) {
        let _ = writeln!(md, "- {n}");
    }
    md.push('\n');
}

/// The writes the restore took away: counts per table, and how to put them back.
pub fn lost_writes(md: &mut String, r: &Report) {
    let Some(l) = &r.lost_writes else { return };
    md.push_str("### Writes the restore took away\n\n");
    if l.tables.is_empty() && l.held.is_empty() && l.not_compared.is_empty() {
        md.push_str("None: every table that existed before the deploy was compared, and none lost a write.\n\n");
    } else if l.tables.is_empty() {
        md.push_str("None found in the tables compared.\n\n");
    } else {
        md.push_str(
            "| table | inserted | updated | deleted | rows matched by | the migrations' own, left out |\n\
             |---|---:|---:|---:|---|---:|\n",
        );
        for t in &l.tables {
            let by = if t.by.is_empty() { "primary key" } else { t.by.as_str() };
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {by} | {} |",
                t.table, t.inserted, t.updated, t.deleted, t.migrations_own
            );
        }
        let _ = writeln!(
            md,
            "\nThey are in `{}` beside the backup (idempotent SQL, one transaction). Review it with \
             `deploy-guard replay --sha {} --dry-run`, then apply it without `--dry-run`. Nothing was replayed \
             by itself.\n",
            l.key,
            r.sha.short()
        );
        if !l.touched_by_migrations.is_empty() {
            let _ = writeln!(
                md,
                "The migrations changed {} too: their rows there include the migrations' own changes — replay \
                 only what the app wrote.\n",
                l.touched_by_migrations.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            );
        }
    }
    if !l.held.is_empty() {
        let _ = writeln!(
            md,
            "Not yet told apart: the migrations changed rows of {} too, and the run ended before the app's writes \
             there were told from theirs (`app-writes`). Nothing of them is in the replay file.\n",
            l.held.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
        );
    }
    if !l.not_compared.is_empty() {
        md.push_str(
            "**Not compared** — writes made there after the backup may be lost and are not in the replay file:\n\n",
        );
        for (t, why) in &l.not_compared {
            let _ = writeln!(md, "- `{t}`: {why}");
        }
        md.push('\n');
    }
}

fn migrations(md: &mut String, r: &Report) {
    let Some(after) = &r.migrations_after else {
        if !r.migrations_before.is_empty() {
            let _ = writeln!(md, "Migration table before the deploy: {} rows.\n", r.migrations_before.len());
        }
        return;
    };
    let label = |v: &serde_json::Value| match v {
        serde_json::Value::Object(o) => o
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "timestamp" | "applied_at" | "installed_on" | "execution_time"))
            .map(|(_, v)| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    let _ = writeln!(
        md,
        "### Migration table\n\nbefore the deploy: {} rows · at the failure: {} rows\n",
        r.migrations_before.len(),
        after.len()
    );
    let before: std::collections::HashSet<String> = r.migrations_before.iter().map(label).collect();
    let added: Vec<String> = after.iter().map(label).filter(|l| !before.contains(l)).collect();
    if !added.is_empty() {
        md.push_str("applied by this deploy:\n\n");
        for a in added {
            let _ = writeln!(md, "- `{a}`");
        }
        md.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::DbPath;
    use crate::report::fixture::{entry, report};

    #[test]
    fn several_hosts_get_a_row_each() {
        let mut r = report(Outcome::Deployed, vec![], vec![]);
        assert!(!render(&r).contains("### Hosts"), "one host: no table");
        let h = |host: &str, previous: &str, running: Option<&str>| crate::guard::HostTag {
            host: host.into(),
            previous: Some(previous.into()),
            running: running.map(Into::into),
            abandoned: None,
        };
        r.hosts = vec![h("web1", "v1", Some("v1")), h("web2", "v1", None), h("web3", "v1", Some("v2"))];
        let md = render(&r);
        assert!(md.contains("| web1 | v1 | v1 (as before) |"), "{md}");
        assert!(md.contains("| web2 | v1 | ⚠️ unknown"), "{md}");
        assert!(md.contains("| web3 | v1 | v2 |"), "{md}");
        // A host taken out of the config is never shown as back.
        r.hosts[1].abandoned = Some(crate::guard::Abandoned { at: crate::report::fixture::at(0) });
        let md = render(&r);
        assert!(
            md.contains("| web2 | v1 | ⚠️ abandoned: no longer in `target.hosts`, not rolled back; last known: unknown, a command there was cut off: it may still run v2.4.0, or be stopped (not verified) |"),
            "{md}"
        );
    }

    #[test]
    fn a_forward_only_tool_has_no_revert_branch() {
        let mut r = report(Outcome::Deployed, vec![], vec![]);
        assert!(render(&r).contains("  revert["), "the fast path is drawn for a tool that reverts");
        r.can_revert = false;
        let md = render(&r);
        let chart = &md[md.find("flowchart TD").unwrap()..];
        let chart = &chart[..chart.find("```").unwrap()];
        assert!(!chart.contains("revert"), "{chart}");
        assert!(chart.contains("restore"), "{chart}");
    }

    #[test]
    fn restored_after_drift() {
        use EntryState::*;
        let steps = vec![
            entry(Step::Preflight, Ok, 0, 1, "store ok; PostgreSQL 16.4 ok; deploy lock taken; running tag v2.3.1"),
            entry(Step::Backup, Ok, 1, 4, "3.0 MiB (17.0 MiB of SQL), sha256 9f2c9f2c9f2c9f2c, verified"),
            entry(Step::Record, Ok, 4, 5, "1 migration rows; schema fingerprint 1a2b3c4d5e6f (120 objects)"),
            entry(Step::Migrate, Ok, 5, 8, "Migration AddTier2 has been executed successfully."),
            entry(Step::Deploy, Ok, 8, 9, "v2.4.0 started"),
            entry(
                Step::Health,
                Failed,
                9,
                12,
                "not healthy within 3s (12 checks); last: https://api/health answered 502",
            ),
            entry(Step::Assess, Ok, 12, 13, "1 migration(s) applied by this deploy; schema changed in 1 place(s)"),
            entry(Step::Revert, Ok, 13, 15, "1 migration(s) reverted with the code of v2.4.0"),
            entry(Step::VerifyRevert, Failed, 15, 16, "schema drift after revert: + column public.users.tier integer"),
            entry(Step::StopApp, Ok, 16, 17, "app stopped"),
            entry(Step::Restore, Ok, 17, 30, "restored into station__restore_abc1234 (17.0 MiB of SQL)"),
            entry(
                Step::ValidateRestore,
                Ok,
                30,
                31,
                "fingerprint 1a2b3c4d5e6f and migration rows equal the recorded pre-deploy state",
            ),
            entry(
                Step::Swap,
                Ok,
                31,
                32,
                "station is now the restored backup; the broken one is kept as station__failed_abc1234",
            ),
            entry(Step::Redeploy, Ok, 32, 33, "v2.3.1 started"),
            entry(Step::RedeployHealth, Ok, 33, 35, "healthy after 2 check(s)"),
        ];
        let r = report(Outcome::RolledBack { failed_step: Some(Step::Health), path: DbPath::Restore }, steps, vec![]);
        insta::assert_snapshot!(render(&r));
    }

    #[test]
    fn stuck_with_next_commands() {
        use EntryState::*;
        let steps = vec![
            entry(Step::Preflight, Ok, 0, 1, "ok"),
            entry(Step::Backup, Ok, 1, 4, "verified"),
            entry(Step::Record, Ok, 4, 5, "recorded"),
            entry(
                Step::Migrate,
                Failed,
                5,
                8,
                "the migration command failed (exit 1): column \"tier\" contains null values",
            ),
            entry(Step::Assess, Ok, 8, 9, "fast path not trusted: the migration tool reports a dirty or failed state"),
            entry(Step::StopApp, Ok, 9, 10, "app stopped"),
            entry(
                Step::Restore,
                Failed,
                10,
                11,
                "station is untouched: could not create the scratch database: disk full",
            ),
        ];
        let outcome = Outcome::RollbackFailed {
            failed_step: Some(Step::Migrate),
            stuck_at: Step::Restore,
            path: DbPath::Restore,
            reason: "station is untouched: could not create the scratch database: disk full".into(),
        };
        let next = vec![
            "# the live database station was NOT touched".into(),
            "deploy-guard rollback --sha abc1234 --path restore".into(),
        ];
        let md = render(&report(outcome, steps, next));
        // What to do comes before the details.
        assert!(md.find("What to do now").unwrap() < md.find("Timeline").unwrap());
        insta::assert_snapshot!(md);
    }
}
