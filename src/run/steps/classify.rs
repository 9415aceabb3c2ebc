//! Reads the pending migrations' SQL before anything runs (where the tool keeps it readable)
//! and classifies it (`db::lint`, docs/LINT.md): what a revert cannot undo, long locks, what
//! breaks the previous release. The live column types of the tables it retypes are read first,
//! so a type change is judged from its old type. Destructive SQL plans the safe path up front,
//! or, under `rollback.destructive: refuse`, stops the deploy (exit 4) before the backup unless
//! `--allow-destructive`.

use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{tool_cmd, Done, Run, StepSpec};
use crate::config::Destructive;
use crate::db::lint::{self, Catalog, Finding, Kind, Linter};
use crate::db::Postgres;
use crate::exec::{self, fill, Cmd};
use crate::migrate::{row_name, PendingSql};
use crate::world::World;

pub struct Classify;

/// Marks where each file starts in the command's output.
const MARK: &str = "-- deploy-guard-file: ";

impl Classify {
    fn cmd(run: &Run) -> Option<Cmd> {
        let tag = run.tag.as_deref()?;
        let script = match run.w.migrator.pending_sql.as_ref()? {
            // The glob is left to the shell; `{tag}` is filled in quoted.
            PendingSql::Files(glob) => files_script(glob, tag),
            PendingSql::Command(c) => c.clone(),
        };
        Some(tool_cmd(run, "classify", tag, &script))
    }
}

/// Prints each file `glob` matches, after a line that names it (`{tag}` filled in quoted).
pub fn files_script(glob: &str, tag: &str) -> String {
    // The glob is left to the shell.
    format!(
        "for f in {}; do [ -f \"$f\" ] || continue; printf '\\n{MARK}%s\\n' \"$f\"; cat \"$f\"; done",
        fill(glob, &[("tag", tag)])
    )
}

/// Every value the migration table's rows record (version, name, …): what a file may be named by.
pub fn recorded_names(rows: &[serde_json::Value]) -> Vec<String> {
    rows.iter()
        .flat_map(|r| match r {
            serde_json::Value::Object(o) => {
                o.values().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect()
            }
            other => vec![row_name(other)],
        })
        .collect()
}

/// The tool's own table, unqualified: what it writes there is its bookkeeping.
pub fn tool_table(w: &World) -> Option<&str> {
    w.migrator.table.as_deref().map(|t| t.rsplit('.').next().unwrap_or(t))
}

/// The pending SQL comes as files (each after a line naming it), not as one tool output.
pub fn files(w: &World) -> bool {
    matches!(w.migrator.pending_sql, Some(PendingSql::Files(_)))
}

/// The old types of the columns `sql` retypes, and whether the tables it creates IF NOT EXISTS
/// exist, read from `db` on `pg`.
pub async fn read_catalog(pg: &Postgres, db: &str, sql: &str) -> Result<Catalog> {
    match lint::catalog_sql(&lint::tables_to_read(sql)) {
        Some(q) => {
            Catalog::from_json(pg.query_json(db, &q).await.context("reading the column types the migrations change")?)
        }
        None => Ok(Catalog::default()),
    }
}

/// A down/rollback file, which the deploy does not run.
fn is_down(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p.contains(".down.") || p.ends_with("down.sql") || p.ends_with("rollback.sql")
}

/// A file the migration table already records (its name starts with, or a folder of it is,
/// a recorded version or name).
pub fn is_applied(path: &str, recorded: &[String]) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let base = parts.last().copied().unwrap_or(path);
    recorded.iter().filter(|v| v.len() >= 3).any(|v| base.starts_with(v.as_str()) || parts.contains(&v.as_str()))
}

/// A migration file's up part: files that hold both directions (dbmate, node-pg-migrate's SQL
/// files, goose, sql-migrate) end it at their down marker.
fn up_part(sql: &str) -> &str {
    const DOWN: &[&str] = &["-- migrate:down", "-- down migration", "-- +goose down", "-- +migrate down"];
    let lower = sql.to_ascii_lowercase();
    let end = DOWN.iter().filter_map(|m| lower.find(m)).min().unwrap_or(sql.len());
    &sql[..end]
}

/// The findings of the pending files, in order (or of the whole output of a tool's offline
/// command), leaving out down files, the files `skip` says are not pending, and what the tool
/// writes to its own table.
pub fn classify(
    output: &str,
    mut skip: impl FnMut(&str) -> bool,
    files: bool,
    table: Option<&str>,
    catalog: Catalog,
) -> Vec<Finding> {
    let mut linter = Linter::new(catalog);
    if let Some(t) = table {
        linter = linter.ignoring_table(t);
    }
    if !files {
        return linter.lint(output);
    }
    let mut out = Vec::new();
    for chunk in output.split(&format!("\n{MARK}")).skip(1) {
        let (path, sql) = chunk.split_once('\n').unwrap_or((chunk, ""));
        if is_down(path) || skip(path) {
            continue;
        }
        out.extend(linter.lint(up_part(sql)).into_iter().map(|mut f| {
            f.statement = format!("{path}: {}", f.statement);
            f
        }));
    }
    out
}

#[async_trait]
impl StepSpec for Classify {
    fn what(&self, run: &Run) -> String {
        match &run.w.migrator.pending_sql {
            Some(_) => {
                "read the pending migrations' SQL with the new tag's code; flag what a revert cannot undo, long locks \
                 and what breaks the previous release"
                    .into()
            }
            None => {
                "the tool's pending SQL cannot be read before it runs (set migrations.pending_sql): nothing to classify"
                    .into()
            }
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        Self::cmd(run).into_iter().collect()
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        vec![
            "# the pending migrations are destructive and rollback.destructive is refuse:".into(),
            "# review them; to deploy anyway (a rollback will restore the backup, never revert):".into(),
            run.dg(&format!(
                "deploy --sha {} --tag {} --allow-destructive",
                run.sha,
                run.tag.as_deref().unwrap_or("TAG")
            )),
        ]
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        let Some(cmd) = Self::cmd(run) else {
            return Ok(Done::Ok("not classified: the pending migrations' SQL cannot be read before they run".into()));
        };
        let rows = w.migration_rows(&w.db.name).await?;
        let recorded = recorded_names(&rows);
        let cmd = match &w.migrator.pending_sql {
            Some(PendingSql::Command(_)) => {
                let head = w.migrator.tool().revert_target(&rows).unwrap_or_default();
                Cmd { script: fill(&cmd.script, &[("head", &head)]), ..cmd }
            }
            _ => cmd,
        };
        let out = exec::capture(w.exec.as_ref(), &cmd).await?;
        out.exit.check("reading the pending migrations' SQL")?;
        let catalog = read_catalog(&w.db, &w.db.name, &out.stdout).await?;
        let findings = classify(&out.stdout, |p| is_applied(p, &recorded), files(w), tool_table(w), catalog);
        // A statement its author allowed (`-- deploy-guard: allow-destructive <reason>`, as the PR
        // check reads it) is not refused; it still sends a rollback to restore.
        let destructive: Vec<&Finding> =
            findings.iter().filter(|f| f.kind == Kind::Destructive && f.allowed.is_none()).collect();
        run.found.classification = findings.clone();
        if !destructive.is_empty() && w.config.rollback.destructive == Destructive::Refuse && !run.allow_destructive {
            bail!(
                "the pending migrations are destructive ({}); rollback.destructive is refuse: review them, then \
                 deploy with --allow-destructive",
                destructive.iter().map(|f| format!("{}: {}", f.rule, f.statement)).collect::<Vec<_>>().join("; ")
            );
        }
        Ok(Done::Ok(summary(&findings)))
    }
}

/// The step's line: how many of each kind, then the rules.
fn summary(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "nothing a revert cannot undo, no long locks, nothing that breaks the previous release".into();
    }
    let count = |k: Kind| findings.iter().filter(|f| f.kind == k).count();
    let mut parts = Vec::new();
    if count(Kind::Destructive) > 0 {
        parts.push(format!(
            "{} destructive statement(s) (a rollback will restore, never revert)",
            count(Kind::Destructive)
        ));
    }
    if count(Kind::LongLock) > 0 {
        parts.push(format!("{} long lock(s)", count(Kind::LongLock)));
    }
    if count(Kind::BreaksPrevious) > 0 {
        parts.push(format!("{} that may break the previous release", count(Kind::BreaksPrevious)));
    }
    let mut rules: Vec<&str> = Vec::new();
    for f in findings {
        if !rules.contains(&f.rule.as_str()) {
            rules.push(&f.rule);
        }
    }
    format!("{}: {}", parts.join(", "), rules.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none_applied(_: &str) -> bool {
        false
    }

    #[test]
    fn down_sections_and_the_tools_own_table_are_left_out() {
        let dbmate = "-- migrate:up\nALTER TABLE t ADD COLUMN c int;\n-- migrate:down\nALTER TABLE t DROP COLUMN c;\n";
        let none = Catalog::default;
        assert!(
            classify(&format!("\n{MARK}db/migrations/2_c.sql\n{dbmate}"), none_applied, true, None, none()).is_empty()
        );
        let alembic = "UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001';";
        assert!(classify(alembic, none_applied, false, Some("alembic_version"), none()).is_empty());
        let quoted = r#"UPDATE "Alembic_Version" SET version_num='0002';"#;
        assert!(classify(quoted, none_applied, false, Some("alembic_version"), none()).is_empty());
        assert_eq!(classify("UPDATE users SET x = 1;", none_applied, false, Some("alembic_version"), none()).len(), 1);
        // Only that table: another whose name merely contains it is the app's.
        assert_eq!(
            classify("DELETE FROM old_migrations_log;", none_applied, false, Some("migrations"), none()).len(),
            1
        );
    }

    #[test]
    fn only_pending_up_files_are_classified() {
        let out = format!(
            "\n{MARK}releases/v2/migrations/001_create.up.sql\nDROP TABLE old;\n\
             \n{MARK}releases/v2/migrations/003_drop_note.up.sql\nALTER TABLE orders DROP COLUMN note;\n\
             \n{MARK}releases/v2/migrations/003_drop_note.down.sql\nDROP TABLE x;\n"
        );
        let recorded = ["001".to_string(), "create".to_string()];
        let f = classify(&out, |p| is_applied(p, &recorded), true, Some("schema_migrations"), Catalog::default());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "drop-column");
        assert!(f[0].statement.starts_with("releases/v2/migrations/003_drop_note.up.sql: "));
    }

    #[test]
    fn a_later_file_knows_what_an_earlier_one_did_and_the_catalog_judges_type_changes() {
        let out = format!(
            "\n{MARK}m/004_coupons.sql\nCREATE TABLE coupons (id int, code text);\n\
             \n{MARK}m/005_index.sql\nCREATE INDEX coupons_code ON coupons (code);\n\
             ALTER TABLE accounts ALTER COLUMN nickname TYPE varchar(200);\n"
        );
        let old = |t: &str| Catalog::from_rows(vec![["public".into(), "accounts".into(), "nickname".into(), t.into()]]);
        assert!(classify(&out, none_applied, true, None, old("character varying(100)")).is_empty());
        let f = classify(&out, none_applied, true, None, old("character varying(300)"));
        assert_eq!(f.iter().map(|f| f.rule.as_str()).collect::<Vec<_>>(), ["alter-column-type-rewrite"]);
        assert_eq!(lint::tables_to_read(&out), ["accounts"]);
    }

    #[test]
    fn the_step_line_counts_each_kind() {
        let f =
            Linter::default().lint("DROP TABLE a; DROP TABLE b; CREATE INDEX i ON c (x); ALTER TABLE d RENAME TO e");
        assert_eq!(
            summary(&f),
            "2 destructive statement(s) (a rollback will restore, never revert), 1 long lock(s), \
             1 that may break the previous release: drop-table, create-index-not-concurrently, rename"
        );
        assert!(summary(&[]).starts_with("nothing a revert cannot undo"));
    }
}
