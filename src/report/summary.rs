//! The markdown summary: outcome first, then what to do, the timeline, the path through the
//! decision tree, the backup, the migration table, the app's last words. A pure function.

use std::collections::HashMap;
use std::fmt::Write;

use super::Report;
use crate::guard::{EntryState, Outcome, Step};

pub fn render(r: &Report) -> String {
    let mut md = String::new();
    let icon = match r.outcome {
        Outcome::Deployed => "✅",
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
        short(&r.sha),
        r.tag.as_deref().unwrap_or("-"),
        r.previous_tag.as_deref().unwrap_or("-"),
        r.path,
        r.duration_secs,
        r.exit_code
    );
    if !r.next_commands.is_empty() {
        md.push_str("### What to do now\n\n```sh\n");
        for c in &r.next_commands {
            md.push_str(c);
            md.push('\n');
        }
        md.push_str("```\n\n");
    }
    timeline(&mut md, r);
    flowchart(&mut md, r);
    if let Some(b) = &r.backup {
        md.push_str("### Backup\n\n| | |\n|---|---|\n");
        let _ = writeln!(md, "| location | `{}` |", b.location);
        let _ = writeln!(
            md,
            "| size | {} ({} of SQL) |",
            crate::backup::human_bytes(b.size),
            crate::backup::human_bytes(b.dump_bytes)
        );
        let _ = writeln!(md, "| sha256 | `{}` |", b.sha256);
        let _ = writeln!(
            md,
            "| verified | {} |\n",
            if b.verified {
                "yes: read back whole, gunzipped, trailer present"
            } else {
                "NO"
            }
        );
    }
    migrations(&mut md, r);
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
        let _ = writeln!(
            md,
            "The broken database is kept as `{k}` for forensics; drop it when done.\n"
        );
    }
    if !r.notes.is_empty() {
        md.push_str("### Notes\n\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push('\n');
    }
    if r.app_status.is_some() || r.app_logs.is_some() {
        md.push_str(
            "<details><summary>App status and last log lines at the failure</summary>\n\n```\n",
        );
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

fn short(sha: &str) -> &str {
    &sha[..7.min(sha.len())]
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
        let dur = e
            .duration_ms()
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
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

/// The decision tree with the path this run took coloured in.
fn flowchart(md: &mut String, r: &Report) {
    let mut state: HashMap<Step, EntryState> = HashMap::new();
    for e in r.own_steps() {
        state.insert(e.step, e.state);
    }
    md.push_str("### Path through the decision tree\n\n```mermaid\nflowchart TD\n");
    md.push_str(concat!(
        "  preflight[Preflight] --> backup[Backup + verify] --> record[Record state] --> migrate[Migrate]\n",
        "  migrate --> deploy[Deploy new tag] --> health{Healthy?}\n",
        "  health -- yes --> deployed([Deployed])\n",
        "  preflight & backup & record -. fails .-> aborted([Aborted: nothing changed])\n",
        "  migrate & deploy -. fails .-> assess\n",
        "  health -- no --> assess{Assess}\n",
        "  assess -- db unchanged --> redeploy\n",
        "  assess -- fast path --> revert[Revert migrations] --> verify-revert{Same as before?}\n",
        "  verify-revert -- yes --> redeploy\n",
        "  assess -- not trusted --> stop-app\n",
        "  revert -. fails .-> stop-app\n",
        "  verify-revert -- drift --> stop-app[Stop app]\n",
        "  stop-app --> restore[Restore into scratch] --> validate-restore{Valid?} --> swap[Swap in]\n",
        "  swap --> redeploy[Redeploy previous tag] --> redeploy-health{Healthy?}\n",
        "  redeploy-health -- yes --> rolled-back([Rolled back])\n",
        "  restore & validate-restore & swap & redeploy & redeploy-health -. fails .-> person([A person must act])\n",
    ));
    md.push_str("  classDef ok fill:#d4edda,stroke:#28a745,color:#000\n");
    md.push_str("  classDef failed fill:#f8d7da,stroke:#dc3545,color:#000\n");
    md.push_str("  classDef warn fill:#fff3cd,stroke:#ffc107,color:#000\n");
    let mut by_class: HashMap<&str, Vec<&str>> = HashMap::new();
    for step in Step::ALL {
        if let Some(s) = state.get(&step) {
            let class = match s {
                EntryState::Ok => "ok",
                EntryState::Warning => "warn",
                EntryState::Failed | EntryState::Running => "failed",
            };
            by_class.entry(class).or_default().push(step.name());
        }
    }
    let end = match r.outcome {
        Outcome::Deployed => ("deployed", "ok"),
        Outcome::RolledBack { .. } => ("rolled-back", "ok"),
        Outcome::RollbackFailed { .. } => ("person", "failed"),
        Outcome::Aborted { .. } => ("aborted", "failed"),
    };
    by_class.entry(end.1).or_default().push(end.0);
    for class in ["ok", "warn", "failed"] {
        if let Some(nodes) = by_class.get(class) {
            let _ = writeln!(md, "  class {} {class}", nodes.join(","));
        }
    }
    md.push_str("```\n\n");
}

fn migrations(md: &mut String, r: &Report) {
    let Some(after) = &r.migrations_after else {
        if !r.migrations_before.is_empty() {
            let _ = writeln!(
                md,
                "Migration table before the deploy: {} rows.\n",
                r.migrations_before.len()
            );
        }
        return;
    };
    let label = |v: &serde_json::Value| match v {
        serde_json::Value::Object(o) => o
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "timestamp" | "applied_at" | "installed_on" | "execution_time"
                )
            })
            .map(|(_, v)| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
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
    let added: Vec<String> = after
        .iter()
        .map(label)
        .filter(|l| !before.contains(l))
        .collect();
    if !added.is_empty() {
        md.push_str("applied by this deploy:\n\n");
        for a in added {
            let _ = writeln!(md, "- `{a}`");
        }
        md.push('\n');
    }
}
