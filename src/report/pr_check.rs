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
use crate::record::Rehearsal;

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

/// The rehearsal on a copy of the job's database (`plan --rehearse`).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum PrRehearsal {
    /// Up and back down on the copy; what the revert brought back is in the record.
    Ran(Rehearsal),
    /// The migrations failed on the copy: a deploy of this fails the same way.
    Failed { reason: String },
    /// It could not run (no database here, the tool missing, the backup failed).
    NotRun { reason: String },
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
    /// `--rehearse`: the migrations up and down on a copy of the job's database.
    pub rehearsal: Option<PrRehearsal>,
}

impl PrCheck {
    /// Destructive findings no annotation allows.
    pub fn unallowed(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind == Kind::Destructive && f.allowed.is_none())
    }

    /// `migrations-fail` (they failed when rehearsed), `destructive` (not allowed),
    /// `not-rehearsed` (asked for, could not run), else `passed` (nothing destructive) or
    /// `allowed` (destructive, allowed by label, flag or annotations).
    pub fn result(&self) -> &'static str {
        let destructive = self.findings.iter().any(|f| f.kind == Kind::Destructive);
        match (&self.rehearsal, destructive, self.unallowed().next().is_some(), &self.allowance) {
            (Some(PrRehearsal::Failed { .. }), ..) => "migrations-fail",
            (_, true, true, None) => "destructive",
            (Some(PrRehearsal::NotRun { .. }), ..) => "not-rehearsed",
            (_, false, _, _) => "passed",
            _ => "allowed",
        }
    }

    /// 4 when the deploy should not go ahead as it is (the migrations fail, or a destructive
    /// statement nobody allowed); 3 when the rehearsal asked for could not run.
    pub fn exit_code(&self) -> ExitCode {
        match self.result() {
            "migrations-fail" | "destructive" => ExitCode::Aborted,
            "not-rehearsed" => ExitCode::Act,
            _ => ExitCode::Ok,
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
            ("migrations-fail", _) => {
                "the migrations fail on a copy of the job's database: a deploy of this would fail at its migrations"
                    .into()
            }
            ("not-rehearsed", _) => "the rehearsal asked for could not run (see below)".into(),
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
    if let Some(r) = &c.rehearsal {
        let _ = writeln!(md, "**Rehearsed** on a copy of the job's database: {}.\n", cell(&rehearsed(r)));
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

/// The rehearsal in a sentence.
fn rehearsed(r: &PrRehearsal) -> String {
    match r {
        PrRehearsal::Ran(r) => {
            let revert = if r.differences.is_empty() {
                "brings back the schema, the migration rows and every row".to_string()
            } else {
                format!(
                    "does NOT bring everything back (a failed deploy of this restores the backup): {}",
                    r.differences.join("; ")
                )
            };
            let locks: Vec<String> = r.long_locks.iter().map(crate::db::locks::HeldLock::describe).collect();
            let locks = if locks.is_empty() { String::new() } else { format!("; long locks: {}", locks.join("; ")) };
            format!(
                "{} migration(s) up in {:.1} s, reverted in {:.1} s{locks}; the revert {revert}",
                r.applied, r.up_secs, r.down_secs
            )
        }
        PrRehearsal::Failed { reason } => format!("the migrations FAILED: {reason}"),
        PrRehearsal::NotRun { reason } => format!("not run: {reason}"),
    }
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
    if let Some(r) = &c.rehearsal {
        let _ = writeln!(out, "rehearsed: {}", rehearsed(r));
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
            rehearsal: None,
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

    #[test]
    fn migrations_that_fail_when_rehearsed_fail_the_check_and_one_that_could_not_run_says_so() {
        let mut c = check("CREATE INDEX i ON orders (note);", Some(Allowance::Label));
        c.rehearsal = Some(PrRehearsal::Failed { reason: "relation \"ordres\" does not exist".into() });
        assert_eq!((c.result(), c.exit_code()), ("migrations-fail", ExitCode::Aborted));
        assert!(body(&c).contains("the migrations FAILED: relation \"ordres\" does not exist"), "{}", body(&c));
        c.rehearsal = Some(PrRehearsal::NotRun { reason: "dbmate: command not found".into() });
        assert_eq!((c.result(), c.exit_code()), ("not-rehearsed", ExitCode::Act));
        c.rehearsal = Some(PrRehearsal::Ran(Rehearsal { applied: 1, ..Default::default() }));
        assert_eq!((c.result(), c.exit_code()), ("passed", ExitCode::Ok));
        assert!(
            body(&c).contains("1 migration(s) up in 0.0 s, reverted in 0.0 s; the revert brings back"),
            "{}",
            body(&c)
        );
    }
}
