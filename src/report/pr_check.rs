//! The PR check (`deploy-guard plan`) as people and programs see it: the verdict, the pending
//! migrations' findings with the rows at stake, the path a deploy of this would take. The PR
//! comment is a pure function of [`PrCheck`], found again by its own marker.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::comment::{cell, fenced};
use crate::db::lint::{Finding, Kind};
use crate::db::RowCount;
use crate::guard::plan::Plan;
use crate::model::ExitCode;

/// The label on a pull request that allows its destructive migrations.
pub const ALLOW_LABEL: &str = "allow-destructive";

/// Why destructive findings do not fail the check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allowance {
    /// The pull request carries [`ALLOW_LABEL`].
    Label,
    /// `--allow-destructive` (the action's `allow-destructive` input).
    Flag,
}

#[derive(Clone, Debug, Serialize)]
pub struct PrCheck {
    pub project: String,
    pub sha: String,
    /// The pull request, when the job runs for one.
    pub pull_request: Option<u64>,
    /// The migration files classified (empty when the tool's output was read as a whole).
    pub files: Vec<String>,
    pub findings: Vec<Finding>,
    /// Each table the findings name: its rows in [`PrCheck::database`] (None: not there).
    pub rows: BTreeMap<String, Option<RowCount>>,
    /// The database the rows were read from, or why none was.
    pub database: Result<String, String>,
    pub allowance: Option<Allowance>,
    /// The steps a deploy of this runs, in order.
    pub deploy_path: Vec<&'static str>,
    /// The steps a rollback of it would take, and why that way.
    pub rollback_path: Vec<&'static str>,
    pub rollback_why: String,
    /// `rollback.destructive: refuse`: a deploy stops at classify without `--allow-destructive`.
    pub deploy_refuses: bool,
    pub plan: Plan,
    pub notes: Vec<String>,
}

impl PrCheck {
    /// Destructive findings no annotation allows.
    pub fn unallowed(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind == Kind::Destructive && f.allowed.is_none())
    }

    /// `passed` (nothing destructive), `allowed` (destructive, allowed by label, flag or
    /// annotations) or `destructive`.
    pub fn result(&self) -> &'static str {
        let destructive = self.findings.iter().any(|f| f.kind == Kind::Destructive);
        match (destructive, self.unallowed().next().is_some(), &self.allowance) {
            (false, _, _) => "passed",
            (true, false, _) | (true, true, Some(_)) => "allowed",
            (true, true, None) => "destructive",
        }
    }

    /// 4 when a destructive statement is not allowed: the deploy should not go ahead as it is.
    pub fn exit_code(&self) -> ExitCode {
        if self.result() == "destructive" {
            ExitCode::Aborted
        } else {
            ExitCode::Ok
        }
    }

    pub fn outputs(&self, comment_url: Option<&str>) -> Vec<(&'static str, String)> {
        vec![
            ("result", self.result().to_string()),
            ("destructive", self.unallowed().count().to_string()),
            ("summary-url", super::github::run_url().unwrap_or_default()),
            ("comment-url", comment_url.unwrap_or_default().to_string()),
        ]
    }

    /// The rows at stake in `f`'s tables, for people.
    fn rows_of(&self, f: &Finding) -> String {
        if self.database.is_err() {
            return "not read".into();
        }
        let each: Vec<String> = f
            .tables
            .iter()
            .map(|t| {
                let n = match self.rows.get(t) {
                    Some(Some(RowCount { rows, estimate: true })) => {
                        format!("~{} rows", crate::db::thousands((*rows).max(0) as u64))
                    }
                    Some(Some(RowCount { rows, estimate: false })) => {
                        format!("{} rows", crate::db::thousands((*rows).max(0) as u64))
                    }
                    _ => "table not there".into(),
                };
                if f.tables.len() > 1 {
                    format!("{t}: {n}")
                } else {
                    n
                }
            })
            .collect();
        if each.is_empty() {
            "-".into()
        } else {
            each.join(", ")
        }
    }

    /// The headline: the verdict in words.
    pub fn headline(&self) -> String {
        let n = self.unallowed().count();
        match (self.result(), &self.allowance) {
            ("passed", _) if self.findings.is_empty() => "nothing a revert cannot undo".into(),
            ("passed", _) => format!(
                "nothing a revert cannot undo; {} finding(s) to read (long locks, what breaks the previous release)",
                self.findings.len()
            ),
            ("destructive", _) => format!(
                "{n} destructive statement(s) a revert cannot undo: a reviewer adds the `{ALLOW_LABEL}` label, or the \
                 migration says why with `-- deploy-guard: allow-destructive <reason>`"
            ),
            (_, Some(Allowance::Label)) => format!("destructive statements allowed by the `{ALLOW_LABEL}` label"),
            (_, Some(Allowance::Flag)) => "destructive statements allowed (--allow-destructive)".into(),
            _ => "destructive statements, each allowed by its author's annotation".into(),
        }
    }
}

fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Destructive => "destructive",
        Kind::LongLock => "long lock",
        Kind::BreaksPrevious => "breaks the previous release",
    }
}

/// The PR comment.
pub fn body(c: &PrCheck) -> String {
    let mut md = format!("### deploy-guard PR check: **{}**\n\n{}.\n\n", c.result(), c.headline());
    if c.findings.is_empty() {
        let what = if c.files.is_empty() { "The pending migrations".to_string() } else { files(&c.files) };
        let _ =
            writeln!(md, "{what}: no destructive statement, no long lock, nothing that breaks the previous release.\n");
    } else {
        md.push_str("| kind | statement | table | rows at stake | why |\n|---|---|---|---|---|\n");
        for f in &c.findings {
            let k = match &f.allowed {
                Some(why) if f.kind == Kind::Destructive => format!("destructive (allowed: {})", cell(why)),
                _ => kind(f.kind).to_string(),
            };
            let tables = if f.tables.is_empty() { "-".into() } else { format!("`{}`", f.tables.join("`, `")) };
            let _ = writeln!(
                md,
                "| {k} | `{}` | {tables} | {} | {} |",
                cell(&f.statement).replace('`', "'"),
                c.rows_of(f),
                f.why
            );
        }
        md.push('\n');
        match &c.database {
            Ok(db) => {
                let _ = writeln!(md, "Rows read from `{db}` (the planner's estimate `~`, else counted).\n");
            }
            Err(why) => {
                let _ = writeln!(md, "Rows at stake not read: {}.\n", cell(why));
            }
        }
    }
    md.push_str("**If this deploys:** ");
    md.push_str(&c.deploy_path.join(" → "));
    if c.deploy_refuses && c.findings.iter().any(|f| f.kind == Kind::Destructive) {
        md.push_str(
            "\n\n`rollback.destructive: refuse`: the deploy stops at classify (exit 4, nothing changed) unless it is \
             run with `--allow-destructive`.",
        );
    }
    let _ = write!(md, "\n\n**If it fails:** {} ({}).\n", c.rollback_path.join(" → "), c.rollback_why);
    for n in &c.notes {
        let _ = writeln!(md, "\n> {}", cell(n));
    }
    super::comment::cap(md)
}

fn files(files: &[String]) -> String {
    files.iter().map(|f| format!("`{}`", cell(f).replace('`', "'"))).collect::<Vec<_>>().join(", ")
}

/// The step summary: the comment, then the whole plan with its commands.
pub fn summary(c: &PrCheck) -> String {
    format!(
        "{}\n<details><summary>The deploy's plan</summary>\n\n{}\n</details>\n",
        body(c),
        fenced(&c.plan.render(), "text")
    )
}

/// What the command prints.
pub fn render(c: &PrCheck) -> String {
    let mut out = format!("{}: {}\n", c.result(), c.headline().replace('`', ""));
    for f in &c.findings {
        let allowed = f.allowed.as_ref().map(|w| format!(" [allowed: {w}]")).unwrap_or_default();
        let _ = writeln!(out, "  {} {}: {} ({}){allowed}", kind(f.kind), f.rule, f.statement, c.rows_of(f));
    }
    let _ = writeln!(out, "deploy: {}", c.deploy_path.join(" → "));
    let _ = writeln!(out, "on failure: {} ({})", c.rollback_path.join(" → "), c.rollback_why);
    for n in &c.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, allowance: Option<Allowance>) -> PrCheck {
        let plan = Plan {
            sha: "a".repeat(40),
            tag: "v2".into(),
            previous_tag: "what runs now".into(),
            target: "deploy@vps:22".into(),
            store: "file:///b".into(),
            steps: Vec::new(),
            rollback: Vec::new(),
        };
        PrCheck {
            project: "shop".into(),
            sha: "a".repeat(40),
            pull_request: Some(7),
            files: vec!["migrations/003_drop_note.sql".into()],
            findings: crate::db::lint::lint(sql),
            rows: [("orders".to_string(), Some(RowCount { rows: 345, estimate: false }))].into(),
            database: Ok("shop_ci".into()),
            allowance,
            deploy_path: vec!["preflight", "classify", "backup", "record", "migrate", "deploy", "health"],
            rollback_path: vec!["assess", "stop-app", "restore", "validate-restore", "swap", "redeploy"],
            rollback_why: "restore: the migrations are destructive".into(),
            deploy_refuses: false,
            plan,
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_destructive_statement_fails_unless_a_label_flag_or_annotation_allows_it() {
        let c = check("ALTER TABLE orders DROP COLUMN note;", None);
        assert_eq!((c.result(), c.exit_code()), ("destructive", ExitCode::Aborted));
        let md = body(&c);
        assert!(md.contains("| destructive | `ALTER TABLE orders DROP COLUMN note` | `orders` | 345 rows |"), "{md}");
        for a in [Allowance::Label, Allowance::Flag] {
            let c = check("ALTER TABLE orders DROP COLUMN note;", Some(a));
            assert_eq!((c.result(), c.exit_code()), ("allowed", ExitCode::Ok));
        }
        let c = check("-- deploy-guard: allow-destructive `note` moved\nALTER TABLE orders DROP COLUMN note;", None);
        assert_eq!((c.result(), c.exit_code()), ("allowed", ExitCode::Ok));
        assert!(body(&c).contains("destructive (allowed: `note` moved)"), "{}", body(&c));
        let c = check("CREATE INDEX i ON orders (note);", None);
        assert_eq!((c.result(), c.exit_code()), ("passed", ExitCode::Ok));
    }
}
