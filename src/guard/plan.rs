//! The whole run as data, computed before anything runs: `deploy --dry-run` prints it.

use serde::Serialize;

use super::Step;

#[derive(Clone, Debug, Serialize)]
pub struct PlannedStep {
    pub step: Step,
    /// What the step does with this config.
    pub what: String,
    /// The exact commands it runs, as a person would type them.
    pub commands: Vec<String>,
    /// The SQL statements it sends to the maintenance database, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub sha: String,
    pub tag: String,
    /// The tag to roll back to, or how it will be found.
    pub previous_tag: String,
    pub target: String,
    pub store: String,
    pub steps: Vec<PlannedStep>,
    /// Steps that run only when a rollback trigger (`tree::rollback_triggers`) fails.
    pub rollback: Vec<PlannedStep>,
}

impl Plan {
    pub fn render(&self) -> String {
        let mut out = format!(
            "Plan for deploying {} (sha {}) on {}; backups in {}; previous tag: {}\n\n",
            self.tag, self.sha, self.target, self.store, self.previous_tag
        );
        let mut n = 0;
        let mut section = |title: &str, steps: &[PlannedStep], out: &mut String| {
            out.push_str(title);
            out.push('\n');
            for s in steps {
                n += 1;
                out.push_str(&format!("{n:>3}. {:<17} {}\n", s.step.name(), s.what));
                for c in &s.commands {
                    out.push_str(&format!("       $ {c}\n"));
                }
                for q in &s.sql {
                    out.push_str(&format!("       sql> {q}\n"));
                }
            }
            out.push('\n');
        };
        section("Deploy:", &self.steps, &mut out);
        let triggers: Vec<&str> =
            super::tree::rollback_triggers(super::Mode::Deploy).iter().map(|s| s.name()).collect();
        let title = format!("On failure of {} (rollback):", or_list(&triggers));
        section(&title, &self.rollback, &mut out);
        out.push_str("Dry run: nothing was run and nothing was changed.\n");
        out
    }
}

/// `a, b or c`.
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
