//! Migration tools: each tool is one file behind [`MigrationTool`] (its commands, its state
//! table and how its rows read, whether it can revert, its failed or dirty state, where its
//! pending SQL can be read). [`Migrator`] is a tool resolved for one config, overrides applied.
//!
//! A new tool: a file here implementing [`MigrationTool`], its variant in `config::Tool`, and
//! its line in [`preset`].

mod alembic;
mod command;
mod dbmate;
mod drizzle;
mod golang_migrate;
mod goose;
mod knex;
mod node_pg_migrate;
mod prisma;
mod quote;
mod sqlx;
mod typeorm;

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::config::{Migrations, Tool};
use crate::exec::{fill, quote as q};

pub use quote::{failure_quote, strip_control};

/// The table: one line per tool.
pub fn preset(tool: Tool) -> &'static dyn MigrationTool {
    match tool {
        Tool::Typeorm => &typeorm::Typeorm,
        Tool::NodePgMigrate => &node_pg_migrate::NodePgMigrate,
        Tool::Knex => &knex::Knex,
        Tool::Drizzle => &drizzle::Drizzle,
        Tool::Sqlx => &sqlx::Sqlx,
        Tool::Alembic => &alembic::Alembic,
        Tool::Dbmate => &dbmate::Dbmate,
        Tool::Prisma => &prisma::Prisma,
        Tool::GolangMigrate => &golang_migrate::GolangMigrate,
        Tool::Goose => &goose::Goose,
        Tool::Command => &command::Command,
    }
}

/// What one migration tool is, for a config.
pub trait MigrationTool: Sync {
    /// The preset's name in `migrations.tool`.
    fn name(&self) -> &'static str;
    /// The command that applies every pending migration (`migrations.run` overrides it).
    fn run(&self, m: &Migrations) -> String;
    /// The command that reverts the newest migration (`migrations.revert` overrides it); `None`:
    /// the tool is forward-only, and restoring the backup is the only way back. `{head}` is
    /// replaced by [`MigrationTool::revert_target`].
    fn revert(&self, m: &Migrations) -> Option<String>;
    /// Where the tool records applied migrations (`migrations.table` overrides it).
    fn table(&self) -> Option<&'static str>;
    /// The column that orders that table (`migrations.order_by` overrides it).
    fn order_by(&self) -> &'static str {
        "id"
    }
    /// Whether the table grows by one row per migration, or holds only the head.
    fn history(&self) -> History {
        History::Appends
    }
    /// Whether a row counts as an applied migration (Prisma keeps failed and rolled-back ones).
    fn counts(&self, _row: &Value) -> bool {
        true
    }
    /// For a tool whose migrations each may or may not have a down (Prisma's `rollback.sql`): a
    /// script, run with the release's code, that prints the name of each migration that has none,
    /// one per line (a head-only tool: each one after `{head}`). `None`: every migration of the
    /// tool has one whenever it can revert.
    fn missing_downs(&self, _m: &Migrations) -> Option<String> {
        None
    }
    /// `{head}` in the revert, the pending SQL and the missing downs: the recorded state as the
    /// tool names it (head-only tools: the head to go back to; goose: its newest version).
    fn revert_target(&self, _recorded: &[Value]) -> Option<String> {
        None
    }
    /// How the tool marks a migration that failed or crashed half-way.
    fn failed_state(&self, _m: &Migrations) -> Option<FailedState> {
        None
    }
    /// Where the pending migrations' SQL can be read before they run.
    fn pending_sql(&self, _m: &Migrations) -> Option<PendingSql> {
        None
    }
    /// Files the tool needs in the app's directory: (the setting that names it, its path).
    fn files(&self, _m: &Migrations) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// What the app's image needs for this tool (README, `check`).
    fn needs(&self) -> &'static str;
}

/// How the migration table holds history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum History {
    /// One row per applied migration, in order (most tools).
    Appends,
    /// One row, the current head, rewritten by every migration (Alembic).
    HeadOnly,
}

/// A tool's failed or dirty state: the SQL that finds it and the tool's own commands to look at
/// it and to clear it once the schema has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedState {
    /// The table the SQL reads (none there: the state is clean).
    pub table: String,
    /// One line per failed or dirty migration; no rows when clean.
    pub sql: String,
    pub inspect: Vec<String>,
    pub clear: Vec<String>,
}

/// Where the pending migrations' SQL is, for a classification before running them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PendingSql {
    /// SQL files matching this glob (relative to the app's directory).
    Files(String),
    /// A command that prints the SQL without running it (`{head}`: the recorded state).
    Command(String),
}

/// The migration commands and table for this config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrator {
    pub tool: Tool,
    /// Applies all pending migrations.
    pub run: String,
    /// Reverts the most recent migration (None: forward-only).
    pub revert: Option<String>,
    /// Where applied migrations are recorded (None: only the fingerprint tells).
    pub table: Option<String>,
    pub order_by: String,
    pub timeout: Duration,
    pub history: History,
    pub failed: Option<FailedState>,
    pub pending_sql: Option<PendingSql>,
    /// Files the tool needs: (setting, path relative to the app's directory).
    pub files: Vec<(&'static str, String)>,
    /// Prints the migrations that have no down ([`MigrationTool::missing_downs`]).
    pub missing_downs: Option<String>,
}

impl Migrator {
    pub fn from_config(m: &Migrations) -> Migrator {
        let t = preset(m.tool);
        let revert = match &m.revert {
            Some(r) => Some(r.clone()),
            None => t.revert(m),
        };
        Migrator {
            tool: m.tool,
            run: m.run.clone().unwrap_or_else(|| t.run(m)),
            revert,
            table: m.table.clone().or_else(|| t.table().map(str::to_string)),
            order_by: m.order_by.clone().unwrap_or_else(|| t.order_by().into()),
            timeout: m.timeout,
            history: t.history(),
            failed: failed_state(t, m),
            pending_sql: m.pending_sql.clone().map(PendingSql::Files).or_else(|| t.pending_sql(m)),
            files: t.files(m),
            // A revert of one's own (`migrations.revert`) is the user's: the preset's check of
            // its own downs does not apply to it.
            missing_downs: m.no_down.clone().or_else(|| if m.revert.is_some() { None } else { t.missing_downs(m) }),
        }
    }

    pub fn tool(&self) -> &'static dyn MigrationTool {
        preset(self.tool)
    }

    /// The tool can take the fast path at all (a revert command and a table to check it by).
    pub fn can_revert(&self) -> bool {
        self.revert.is_some() && self.table.is_some()
    }

    pub fn run_script(&self, tag: &str, sha: &str) -> String {
        fill(&self.run, &[("tag", tag), ("sha", sha)])
    }

    /// The command that prints the release's migrations without a down (`None`: the tool's
    /// reverts are all or nothing); `recorded` as for [`Migrator::revert_script`].
    pub fn missing_downs_script(&self, tag: &str, sha: &str, recorded: Option<&[Value]>) -> Option<String> {
        let head = self.head(recorded);
        self.missing_downs.as_ref().map(|s| fill(s, &[("tag", tag), ("sha", sha), ("head", &head)]))
    }

    /// The revert command; `recorded` (the pre-deploy rows) gives head-only tools their target.
    pub fn revert_script(&self, tag: &str, sha: &str, recorded: Option<&[Value]>) -> Option<String> {
        let head = self.head(recorded);
        self.revert.as_ref().map(|r| fill(r, &[("tag", tag), ("sha", sha), ("head", &head)]))
    }

    /// `{head}` for the recorded rows (a plan, before any are recorded, names it).
    fn head(&self, recorded: Option<&[Value]>) -> String {
        match recorded {
            Some(rows) => self.tool().revert_target(rows).unwrap_or_default(),
            None => "RECORDED_HEAD".into(),
        }
    }

    /// How many reverts undo what this deploy applied: `now` against the recorded `before`
    /// (`None`: history was rewritten and cannot be trusted).
    pub fn applied(&self, before: &[Value], now: &[Value]) -> Option<usize> {
        match self.history {
            History::Appends => {
                applied_since(before, now).map(|rows| rows.iter().filter(|r| self.tool().counts(r)).count())
            }
            // One row that changes: a different head is one `downgrade <recorded head>` away.
            History::HeadOnly if before == now => Some(0),
            History::HeadOnly if before.len() <= 1 && now.len() == 1 => Some(1),
            History::HeadOnly => None,
        }
    }

    /// After one revert the table went from `before` to `after`: did it undo exactly one step
    /// (head-only: did it get back to the `recorded` head)?
    pub fn reverted_one(&self, before: &[Value], after: &[Value], recorded: &[Value]) -> bool {
        match self.history {
            History::Appends => after.len() + 1 == before.len() && after[..] == before[..after.len()],
            History::HeadOnly => after == recorded,
        }
    }

    /// The tool's failed or dirty state in `db`, one line per failed migration (`None`: clean).
    pub async fn failed_state(&self, pg: &crate::db::Postgres, db: &str) -> Result<Option<String>> {
        let Some(f) = &self.failed else { return Ok(None) };
        let exists = pg.query(db, &format!("SELECT to_regclass({}) IS NOT NULL;", literal(&f.table))).await?;
        if exists.trim() != "t" {
            return Ok(None);
        }
        let found = strip_control(pg.query(db, &crate::db::read_only("migrations.dirty_sql", &f.sql)?).await?.trim());
        Ok((!found.is_empty()).then_some(found))
    }

    /// Refuses to start a deploy on top of a failed or dirty state, with the tool's commands.
    pub async fn refuse_failed_state(&self, pg: &crate::db::Postgres, db: &str) -> Result<()> {
        let Some(found) = self.failed_state(pg, db).await? else { return Ok(()) };
        let f = self.failed.as_ref().expect("a failed state was found");
        // `command`: the state `migrations.dirty_sql` reads, of a tool deploy-guard has no name for.
        let whose = if self.tool == Tool::Command { String::new() } else { format!("{} ", self.tool().name()) };
        bail!(
            "the {whose}migration state in {db} is failed or dirty ({}): a deploy on top of it would not be \
             trusted. Check the schema, then clear it with the tool.\n  inspect: {}\n  clear:   {}",
            found.lines().collect::<Vec<_>>().join("; "),
            f.inspect.join("\n           "),
            f.clear.join("\n           "),
        )
    }

    /// A shell test that every file the tool needs is there: fails naming the setting.
    pub fn files_script(&self) -> Option<String> {
        if self.files.is_empty() {
            return None;
        }
        let tests: Vec<String> = self
            .files
            .iter()
            .map(|(key, path)| {
                format!(
                    "test -e {p} || {{ echo {msg} >&2; exit 1; }}",
                    p = q(path),
                    msg = q(&format!("{key}: {path}{MISSING}"))
                )
            })
            .collect();
        Some(tests.join("; "))
    }
}

/// The tool's failed or dirty state, with `migrations.dirty_sql` / `dirty_clear` in place of the
/// preset's: any tool whose table marks it (golang-migrate's `dirty`) gets it through `command`.
fn failed_state(t: &dyn MigrationTool, m: &Migrations) -> Option<FailedState> {
    let mut f = match (t.failed_state(m), &m.dirty_sql) {
        (f, None) => f?,
        (Some(f), Some(sql)) => FailedState { sql: sql.clone(), ..f },
        (None, Some(sql)) => {
            let table = m.table.clone().or_else(|| t.table().map(str::to_string))?;
            let order = m.order_by.clone().unwrap_or_else(|| t.order_by().into());
            FailedState {
                inspect: vec![psql(&format!("SELECT * FROM {table} ORDER BY {order};"))],
                table,
                sql: sql.clone(),
                clear: vec!["# with the tool's own command (migrations.dirty_clear names it)".into()],
            }
        }
    };
    if let Some(c) = &m.dirty_clear {
        f.clear = vec!["# once the schema has been checked:".into(), c.clone()];
    }
    Some(f)
}

/// How [`Migrator::files_script`] says a file is missing.
pub const MISSING: &str = " does not exist in the app's directory";

/// The rows a deploy added: `now` minus the recorded `before`, when `before` is still the start
/// of `now` (else `None`: history was rewritten and cannot be trusted).
pub fn applied_since<'a>(before: &[Value], now: &'a [Value]) -> Option<&'a [Value]> {
    (now.len() >= before.len() && now[..before.len()] == *before).then(|| &now[before.len()..])
}

/// A migration row's name, for people: its `name` (TypeORM, knex), else its `version` (goose's
/// `version_id`), else the row as JSON.
pub fn row_name(row: &serde_json::Value) -> String {
    ["name", "migration_name", "version", "version_id"]
        .iter()
        .find_map(|k| row.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .unwrap_or_else(|| row.to_string())
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `psql` on the deploy's database, as a person runs it (libpq variables or DATABASE_URL).
fn psql(sql: &str) -> String {
    format!("psql \"${{DATABASE_URL:-}}\" -X -c {}", q(sql))
}

/// `dir` or the preset's default, for a path inside the app's directory.
fn dir_or<'a>(m: &'a Migrations, default: &'a str) -> &'a str {
    m.dir.as_deref().unwrap_or(default)
}

/// A shell loop, in the migrations directory `dir`, over the files matching `glob` whose version
/// is above `{head}`, running `body` with `$f` (the file) and `$v` (its version: the digits
/// before the first `_`, leading zeros dropped, as golang-migrate and goose read it).
fn newer_files(dir: &str, glob: &str, body: &str) -> String {
    format!(
        "cd {} && for f in {glob}; do v=${{f%%_*}}; case $v in ''|*[!0-9]*) continue ;; esac; \
         v=${{v#\"${{v%%[!0]*}}\"}}; v=${{v:-0}}; [ \"$v\" -gt {{head}} ] || continue; {body}; done",
        q(dir)
    )
}

/// ` FLAG VALUE` when the setting is given.
fn flag(name: &str, value: Option<&str>) -> String {
    value.map(|v| format!(" {name} {}", q(v))).unwrap_or_default()
}

/// Runs a preset's shell script in a test; what it printed.
#[cfg(test)]
fn sh(script: &str) -> String {
    let out = std::process::Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mg(yaml: &str) -> Migrator {
        Migrator::from_config(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn typeorm_preset() {
        let m = mg("tool: typeorm");
        assert_eq!(m.table.as_deref(), Some("migrations"));
        assert_eq!(m.order_by, "id");
        assert_eq!(m.run_script("v2", "abc1234"), "npx --no-install typeorm migration:run -d dist/data-source.js");
        assert!(m.revert_script("v2", "abc", None).unwrap().contains("migration:revert"));
        assert_eq!(m.files, vec![("migrations.data_source", "dist/data-source.js".to_string())]);
    }

    #[test]
    fn command_placeholders_are_quoted() {
        let m = mg("run: ./migrate up {tag} {sha}\nrevert: ./migrate down {tag}");
        assert_eq!(m.run_script("v2;rm", "abc1234"), "./migrate up 'v2;rm' abc1234");
        assert_eq!(m.revert_script("v2", "x", None).unwrap(), "./migrate down v2");
    }

    #[test]
    fn every_preset_has_a_table_and_says_what_it_needs() {
        for t in [
            Tool::Typeorm,
            Tool::NodePgMigrate,
            Tool::Knex,
            Tool::Drizzle,
            Tool::Sqlx,
            Tool::Alembic,
            Tool::Dbmate,
            Tool::Prisma,
            Tool::GolangMigrate,
            Tool::Goose,
        ] {
            let m = Migrator::from_config(&Migrations { tool: t, ..Default::default() });
            assert!(m.table.is_some(), "{t:?}");
            assert!(!m.run.is_empty(), "{t:?}");
            assert!(!preset(t).needs().is_empty(), "{t:?}");
            assert_eq!(serde_yaml::to_string(&t).unwrap().trim(), preset(t).name());
        }
        assert!(!mg("tool: drizzle").can_revert());
        assert!(mg("tool: knex").can_revert());
    }

    #[test]
    fn alembic_reverts_to_the_recorded_head() {
        let m = mg("tool: alembic");
        let a = vec![json!({"version_num": "aaa"})];
        let b = vec![json!({"version_num": "bbb"})];
        assert_eq!(m.applied(&a, &a), Some(0));
        assert_eq!(m.applied(&a, &b), Some(1));
        assert_eq!(m.applied(&[], &b), Some(1));
        assert!(m.revert_script("v2", "x", Some(&a)).unwrap().ends_with("downgrade aaa"));
        assert!(m.revert_script("v2", "x", Some(&[])).unwrap().ends_with("downgrade base"));
        assert!(m.reverted_one(&b, &a, &a));
        assert!(!m.reverted_one(&b, &b, &a));
    }

    #[test]
    fn prisma_counts_only_finished_migrations() {
        let m = mg("tool: prisma");
        let ok = json!({"migration_name": "1_init", "finished_at": "2026-01-01", "rolled_back_at": null});
        let failed = json!({"migration_name": "2_x", "finished_at": null, "rolled_back_at": null});
        assert_eq!(m.order_by, "started_at");
        assert_eq!(m.applied(std::slice::from_ref(&ok), &[ok.clone(), failed]), Some(0));
    }

    #[test]
    fn dirty_sql_gives_any_tool_a_dirty_state() {
        let m = mg(
            "run: ./migrate up\ntable: schema_migrations\norder_by: version\n\
                    dirty_sql: SELECT version FROM schema_migrations WHERE dirty\ndirty_clear: ./migrate force VERSION",
        );
        let f = m.failed.unwrap();
        assert_eq!(
            (f.table.as_str(), f.sql.as_str()),
            ("schema_migrations", "SELECT version FROM schema_migrations WHERE dirty")
        );
        assert!(f.inspect[0].contains("SELECT * FROM schema_migrations ORDER BY version;"), "{:?}", f.inspect);
        assert_eq!(f.clear.last().map(String::as_str), Some("./migrate force VERSION"));
        assert!(mg("run: ./migrate up\ntable: schema_migrations").failed.is_none());
        // A preset keeps its own commands to look at the state.
        let k = mg("tool: knex\ndirty_clear: npx --no-install knex migrate:unlock --env production").failed.unwrap();
        assert!(k.inspect[0].contains("knex migrate:status"), "{:?}", k.inspect);
        assert!(k.sql.contains("knex_migrations_lock"));
    }

    #[test]
    fn applied_rows_are_the_new_suffix() {
        let a = json!({"id": 1});
        let b = json!({"id": 2});
        let (one, two) = (vec![a.clone()], vec![a.clone(), b.clone()]);
        assert_eq!(applied_since(&one, &two).unwrap(), &two[1..]);
        assert_eq!(applied_since(&one, &one).unwrap().len(), 0);
        assert!(applied_since(&one, &two[1..]).is_none());
        assert!(applied_since(&two, &two[1..]).is_none());
    }

    #[test]
    fn missing_files_name_their_setting() {
        let s = mg("tool: knex\nconfig: db/knexfile.js").files_script().unwrap();
        assert!(s.contains("test -e db/knexfile.js"), "{s}");
        assert!(s.contains("migrations.config: db/knexfile.js does not exist"), "{s}");
    }
}
