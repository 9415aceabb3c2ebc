//! goose (SQL migrations): `up`, `down` (the newest migration); table `goose_db_version`, one
//! row per applied version in `id` order (`down` deletes it; the row of version 0 is goose's
//! own, written with the table). goose records no failed or dirty state: a failed migration in a
//! transaction leaves nothing, and one marked `-- +goose NO TRANSACTION` keeps what its
//! statements before the failing one did, with no row (a rerun starts it from the top). A deploy
//! sees that as a changed schema with no migration applied, and restores. An empty or missing
//! `-- +goose Down` section is a down goose runs as "EMPTY" (it only deletes the row), so a
//! release with one is forward-only.

use serde_json::Value;

use super::{dir_or, newer_files, MigrationTool, PendingSql};
use crate::config::Migrations;

pub struct Goose;

fn dir(m: &Migrations) -> &str {
    dir_or(m, "migrations")
}

/// The URL through goose's own variables, not its argv.
fn goose(m: &Migrations) -> String {
    format!("GOOSE_DRIVER=postgres GOOSE_DBSTRING=\"$DATABASE_URL\" goose -dir {}", super::q(dir(m)))
}

/// awk that tracks which section of a goose SQL file a line is in (`s`: 1 Up, 2 Down), reading
/// the annotations as goose does (`--` and `+goose` removed, case ignored); annotation lines are
/// skipped.
const SECTIONS: &str = "/^--/ && /\\+goose/ { a = tolower($0); gsub(/--|\\+goose|[ \\t]/, \"\", a); \
                        if (a == \"up\") s = 1; if (a == \"down\") s = 2; next }";

/// The newest applied version (0: none).
fn newest(rows: &[Value]) -> i64 {
    rows.iter().filter(|r| applied(r)).filter_map(|r| r["version_id"].as_i64()).max().unwrap_or(0)
}

/// A row that records an applied migration: not the table's own version 0, nor an
/// `is_applied = false` row (older goose wrote one for a down).
fn applied(row: &Value) -> bool {
    row["version_id"].as_i64().is_some_and(|v| v != 0) && row["is_applied"].as_bool() != Some(false)
}

impl MigrationTool for Goose {
    fn name(&self) -> &'static str {
        "goose"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("{} up", goose(m))
    }
    fn revert(&self, m: &Migrations) -> Option<String> {
        Some(format!("{} down", goose(m)))
    }
    fn table(&self) -> Option<&'static str> {
        Some("goose_db_version")
    }
    fn counts(&self, row: &Value) -> bool {
        applied(row)
    }
    fn revert_target(&self, recorded: &[Value]) -> Option<String> {
        Some(newest(recorded).to_string())
    }
    fn missing_downs(&self, m: &Migrations) -> Option<String> {
        // Named by version, as the table names them.
        Some(newer_files(
            dir(m),
            "*.sql",
            &format!(
                "awk '{SECTIONS} s == 2 && !/^[ \\t]*$/ && !/^[ \\t]*--/ {{ n++ }} END {{ exit !n }}' \"$f\" || echo \"$v\""
            ),
        ))
    }
    fn pending_sql(&self, m: &Migrations) -> Option<PendingSql> {
        // Only the Up sections: the Down ones are not run by the deploy.
        Some(PendingSql::Command(newer_files(
            dir(m),
            "*.sql",
            &format!("printf '\\n-- %s\\n' \"$f\"; awk '{SECTIONS} s == 1' \"$f\""),
        )))
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        vec![("migrations.dir", dir(m).to_string())]
    }
    fn needs(&self) -> &'static str {
        "the `goose` binary (SQL migrations; Go ones need your own build of goose) and the migrations folder, \
         `awk`; DATABASE_URL"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::{Migrations, Tool};
    use crate::migrate::{sh, Migrator, PendingSql};

    #[test]
    fn counts_applied_versions_only() {
        let m = Migrator::from_config(&Migrations { tool: Tool::Goose, ..Default::default() });
        let row = |id: i64, v: i64| json!({"id": id, "version_id": v, "is_applied": true, "tstamp": "2026-01-01"});
        let v1 = vec![row(1, 0), row(2, 1)];
        assert_eq!(m.applied(&[], &v1), Some(1), "version 0 is goose's own row");
        assert_eq!(m.applied(&v1, &[row(1, 0), row(2, 1), row(3, 2)]), Some(1));
        assert!(m.reverted_one(&[row(1, 0), row(2, 1), row(3, 2)], &v1, &v1));
        assert_eq!(crate::migrate::row_name(&row(3, 2)), "2");
        assert!(m.run_script("v2", "x").starts_with("GOOSE_DRIVER=postgres GOOSE_DBSTRING=\"$DATABASE_URL\" goose"));
    }

    /// The Up sections of the files after the recorded version, and those whose Down has no
    /// statement, read as goose reads its annotations.
    #[test]
    fn pending_up_sections_and_missing_downs() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("00001_applied.sql", "-- +goose Up\nDROP TABLE applied;\n-- +goose Down\nSELECT 1;\n"),
            ("00002_commented.sql", "-- +goose up\nALTER TABLE a ADD b int;\n--+goose DOWN\n-- nothing to undo\n\n"),
            ("00010_no_down.sql", "-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f();\n-- +goose StatementEnd\n"),
            ("00011_full.sql", "-- +goose Up\nALTER TABLE a ADD c int;\n-- +goose Down\n  ALTER TABLE a DROP COLUMN c;\n"),
            ("notes.sql", "-- +goose Up\nDROP TABLE notes;\n"),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let m = Migrator::from_config(&Migrations {
            tool: Tool::Goose,
            dir: Some(dir.path().display().to_string()),
            ..Default::default()
        });
        let recorded = [json!({"id": 1, "version_id": 0}), json!({"id": 2, "version_id": 1, "is_applied": true})];
        let downs = m.missing_downs_script("v2", "x", Some(&recorded)).unwrap();
        assert_eq!(sh(&downs), "2\n10\n");
        let Some(PendingSql::Command(pending)) = &m.pending_sql else { panic!("{:?}", m.pending_sql) };
        let sql = sh(&crate::exec::fill(pending, &[("head", "1")]));
        assert!(sql.contains("ALTER TABLE a ADD b int;") && sql.contains("CREATE FUNCTION f();"), "{sql}");
        assert!(sql.contains("ALTER TABLE a ADD c int;") && !sql.contains("DROP"), "{sql}");
    }
}
