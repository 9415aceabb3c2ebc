//! golang-migrate (the `migrate` CLI, built with its postgres driver): `up`; `schema_migrations`
//! holds only the head (`version`, `dirty`), so what a deploy applied is "from the recorded
//! version to the new one", and the revert is `goto <recorded version>`. migrate marks a version
//! `dirty` before running it and clears the mark after: a migration that failed (even one
//! PostgreSQL rolled back) leaves it, and migrate refuses to run until `force`. A missing or
//! empty `.down.sql` is an empty down to migrate (it moves the version and runs nothing), so a
//! release with one is forward-only.

use serde_json::Value;

use super::{dir_or, newer_files, psql, FailedState, History, MigrationTool, PendingSql};
use crate::config::Migrations;

pub struct GolangMigrate;

const TABLE: &str = "schema_migrations";

fn dir(m: &Migrations) -> &str {
    dir_or(m, "db/migrations")
}

/// migrate as a person runs it (printed, never run).
fn migrate(m: &Migrations) -> String {
    format!("migrate -path {} -database \"$DATABASE_URL\"", super::q(dir(m)))
}

/// migrate as deploy-guard runs it. migrate takes the database URL from its argv only, where
/// anyone on the host can read it: the password moves to `PGPASSWORD` (percent-decoded; its
/// postgres driver reads it) and the URL on argv has none.
fn migrate_run(m: &Migrations) -> String {
    format!("{URL_WITHOUT_PASSWORD}\nmigrate -path {} -database \"$dg_url\"", super::q(dir(m)))
}

/// Sets `dg_url` to `$DATABASE_URL` without its password, exported as `PGPASSWORD`. The
/// userinfo ends at the first `@` (one in a password is `%40`).
const URL_WITHOUT_PASSWORD: &str = r#"dg_url=$DATABASE_URL
case $dg_url in *://*@*)
  dg_rest=${dg_url#*://}; dg_auth=${dg_rest%%@*}
  case $dg_auth in *:*)
    dg_pw=${dg_auth#*:}; dg_out=
    while [ -n "$dg_pw" ]; do
      case $dg_pw in
        %[0-9A-Fa-f][0-9A-Fa-f]*)
          dg_h=${dg_pw#%}; dg_h=${dg_h%"${dg_h#??}"}
          dg_out=$dg_out$(printf "\\$(printf %o $((0x$dg_h)))"); dg_pw=${dg_pw#%??} ;;
        *) dg_out=$dg_out${dg_pw%"${dg_pw#?}"}; dg_pw=${dg_pw#?} ;;
      esac
    done
    PGPASSWORD=$dg_out; export PGPASSWORD
    dg_url=${dg_url%%://*}://${dg_auth%%:*}@${dg_rest#*@} ;;
  esac ;;
esac"#;

impl MigrationTool for GolangMigrate {
    fn name(&self) -> &'static str {
        "golang-migrate"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("{} up", migrate_run(m))
    }
    fn revert(&self, m: &Migrations) -> Option<String> {
        Some(format!("{} goto {{head}}", migrate_run(m)))
    }
    fn table(&self) -> Option<&'static str> {
        Some(TABLE)
    }
    fn order_by(&self) -> &'static str {
        "version"
    }
    fn history(&self) -> History {
        History::HeadOnly
    }
    fn revert_target(&self, recorded: &[Value]) -> Option<String> {
        // Nothing recorded: `goto 0` names no migration and migrate refuses it, so the backup is
        // restored (a `down -all` would leave behind an empty table the recorded schema lacked).
        Some(recorded.first().map_or_else(|| "0".into(), |r| r["version"].to_string()))
    }
    fn missing_downs(&self, m: &Migrations) -> Option<String> {
        // The table cannot say which versions a deploy passed through: every one after the
        // recorded head is named, by its up file. A down file with no statement (`migrate
        // create` writes it empty) undoes nothing either.
        Some(newer_files(
            dir(m),
            "*.up.sql",
            "set -- \"${f%%_*}\"_*.down.*; \
             awk '!/^[ \\t]*$/ && !/^[ \\t]*--/ { n++ } END { exit !n }' \"$1\" 2>/dev/null || echo \"${f%.up.sql}\"",
        ))
    }
    fn failed_state(&self, m: &Migrations) -> Option<FailedState> {
        // `migrations.table` is validated as identifiers; the tool's is given in the URL
        // (`x-migrations-table`).
        let table = m.table.clone().unwrap_or_else(|| TABLE.into());
        Some(FailedState {
            sql: format!(
                "SELECT 'version ' || version || ' is dirty: it failed part-way (or is running now)' FROM {table} \
                 WHERE dirty;"
            ),
            inspect: vec![format!("{} version", migrate_run(m)), psql(&format!("SELECT * FROM {table};"))],
            clear: vec![
                "# finish or undo the dirty version's SQL by hand, then `migrate force` the version the schema is \
                 at (the dirty one if finished, the one before it if undone):"
                    .into(),
                format!("{} force VERSION", migrate(m)),
            ],
            table,
        })
    }
    fn pending_sql(&self, m: &Migrations) -> Option<PendingSql> {
        Some(PendingSql::Command(newer_files(dir(m), "*.up.sql", "printf '\\n-- %s\\n' \"$f\"; cat \"$f\"")))
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        vec![("migrations.dir", dir(m).to_string())]
    }
    fn needs(&self) -> &'static str {
        "the `migrate` binary built with its postgres driver (`-tags postgres`), the migrations folder, `awk`; \
         DATABASE_URL (its password is passed in PGPASSWORD, never on migrate's command line)"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::{Migrations, Tool};
    use crate::migrate::{sh, Migrator, PendingSql};

    #[test]
    fn reverts_to_the_recorded_version() {
        let m = Migrator::from_config(&Migrations { tool: Tool::GolangMigrate, ..Default::default() });
        let (v1, v3) = (vec![json!({"version": 1, "dirty": false})], vec![json!({"version": 3, "dirty": false})]);
        assert_eq!(m.applied(&v1, &v3), Some(1), "one goto, however many versions");
        assert!(m.revert_script("v2", "x", Some(&v1)).unwrap().ends_with("-database \"$dg_url\" goto 1"));
        assert!(m.revert_script("v2", "x", Some(&[])).unwrap().ends_with("goto 0"));
        assert!(m.reverted_one(&v3, &v1, &v1));
        let f = m.failed.unwrap();
        assert!(f.sql.contains("FROM schema_migrations WHERE dirty"), "{}", f.sql);
        assert!(f.clear[1].ends_with("-database \"$DATABASE_URL\" force VERSION"), "{:?}", f.clear);
    }

    /// The password leaves the URL migrate sees, decoded into PGPASSWORD.
    #[test]
    fn the_password_is_not_on_migrates_command_line() {
        let script = format!("{}\nprintf '%s|%s' \"$dg_url\" \"$PGPASSWORD\"", super::URL_WITHOUT_PASSWORD);
        let run = |url: &str| {
            let out = std::process::Command::new("sh").args(["-c", &script]).env("DATABASE_URL", url).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(
            run("postgres://app:p%40ss%3Aw%2Frd%25x@db:5432/app?sslmode=disable"),
            "postgres://app@db:5432/app?sslmode=disable|p@ss:w/rd%x"
        );
        assert_eq!(run("postgres://app@db/app"), "postgres://app@db/app|");
        assert_eq!(run("postgres:///app"), "postgres:///app|");
    }

    /// The up files after the recorded version, and the ones of those with no down file.
    #[test]
    fn pending_ups_and_missing_downs() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("000001_applied.up.sql", "DROP TABLE applied;"),
            ("000001_applied.down.sql", "SELECT 1;"),
            ("000002_no_down.up.sql", "ALTER TABLE a ADD b int;"),
            ("000003_empty_down.up.sql", "ALTER TABLE a ADD d int;"),
            ("000003_empty_down.down.sql", "-- nothing to undo\n\n"),
            ("000010_full.up.sql", "ALTER TABLE a ADD c int;"),
            ("000010_full.down.sql", "ALTER TABLE a DROP COLUMN c;"),
            ("README.md", "DROP TABLE readme;"),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let m = Migrator::from_config(&Migrations {
            tool: Tool::GolangMigrate,
            dir: Some(dir.path().display().to_string()),
            ..Default::default()
        });
        let recorded = [json!({"version": 1, "dirty": false})];
        assert_eq!(
            sh(&m.missing_downs_script("v2", "x", Some(&recorded)).unwrap()),
            "000002_no_down\n000003_empty_down\n"
        );
        let Some(PendingSql::Command(pending)) = &m.pending_sql else { panic!("{:?}", m.pending_sql) };
        let sql = sh(&crate::exec::fill(pending, &[("head", "1")]));
        assert!(sql.contains("ADD b int") && sql.contains("ADD c int") && !sql.contains("DROP"), "{sql}");
    }
}
