//! `check` and `runbook` against the sample app.

use crate::common;
use common::App;

#[test]
fn check_reports_every_part_and_changes_nothing() {
    let app = App::new("cmd_check", &[]);
    let out = app.run(&["check"]);
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", common::stderr(&out));
    for part in ["target", "database", "pg_dump", "psql", "migrations", "store", "lock", "app", "health"] {
        assert!(text.lines().any(|l| l.starts_with("ok") && l.contains(part)), "{part} not ok in:\n{text}");
    }
    assert!(text.contains("running tag v1") && text.contains("schema_migrations: 2 rows"), "{text}");
}

#[test]
fn check_names_what_is_wrong_and_exits_3() {
    let app = App::new("cmd_check_bad", &[]);
    app.edit_config(|t| t.replace("command: ./app.sh health", "command: ./app.sh health && false"));
    app.edit_config(|t| t.replace(&format!("name: \"{}\"", app.db()), "name: \"missing_db\""));
    let out = app.run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let lines = common::json(&out);
    let failed: Vec<&str> =
        lines.as_array().unwrap().iter().filter(|l| l["ok"] == false).map(|l| l["part"].as_str().unwrap()).collect();
    assert!(failed.contains(&"database") && failed.contains(&"health"), "{lines}");
    assert!(lines.to_string().contains("missing_db"), "{lines}");
}

/// What only the database can tell is "unknown" when it cannot be reached, never "ok"; the
/// client versions are clean (`pg_dump 15.4`, not `pg_dump 15.4-1.pgdg)`).
#[test]
fn check_says_unknown_when_the_database_is_unreachable() {
    let app = App::new("cmd_check_down", &[]);
    app.edit_config(|t| t.replace(&format!("port: {}", app.stage.port), "port: 1"));
    let out = app.run(&["check"]);
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    for part in ["migrations", "tool state"] {
        let line = text.lines().find(|l| l.contains(part)).unwrap_or_default();
        assert!(line.starts_with("?") && line.contains("unknown: the database could not be reached"), "{text}");
    }
    for tool in ["pg_dump", "psql"] {
        let line = text.lines().find(|l| l.starts_with("ok") && l.contains(&format!(" {tool} "))).expect(&text);
        assert!(line.trim_end().ends_with(|c: char| c.is_ascii_digit()), "{line}");
    }
    let lines = common::json(&app.run(&["check", "--json"]));
    let state = lines.as_array().unwrap().iter().find(|l| l["part"] == "tool state").unwrap();
    assert_eq!((state["ok"].as_bool(), state["unknown"].as_bool()), (Some(false), Some(true)), "{state}");
}

#[test]
fn runbook_gives_this_deployments_commands() {
    let app = App::new("cmd_runbook", &["v2"]);
    let out = app.run(&["runbook"]);
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(0));
    for expected in [
        "## 1. Assess",
        "## 3. Fast path",
        "## 4. Safe path",
        "## 5. Redeploy",
        "## 6. After the rollback",
        "## 7. Rehearsal log",
        "./migrate.sh down NEW_TAG",
        "./app.sh deploy PREVIOUS_TAG",
        // The tool's dirty state: how to look at it and clear it.
        "If the migration tool's own state is failed or dirty",
        "./migrate.sh force VERSION",
        // The manual restore decompresses with the codec backups are taken with.
        "zstd -q -d -c < BACKUP.sql.zst | ",
        &format!("PGPORT={}", app.stage.port),
        // No deploy yet: a placeholder SHA, named as such.
        &format!("\"{}__restore_0000000\"", app.db()),
    ] {
        assert!(text.contains(expected), "runbook lacks {expected:?}:\n{text}");
    }
    // After a deploy, the runbook is that deploy's: its SHA names the scratch and kept databases
    // exactly as the driver names them, and its tags fill the commands.
    assert_eq!(app.run(&["deploy", "--sha", common::SHA, "--tag", "v2"]).status.code(), Some(0));
    let text = common::stdout(&app.run(&["runbook"]));
    let sha7 = &common::SHA[..7];
    for expected in [
        format!("\"{}__restore_{sha7}\"", app.db()),
        format!("\"{}__failed_{sha7}\"", app.db()),
        "./migrate.sh down v2".to_string(),
        "./app.sh deploy v1".to_string(),
    ] {
        assert!(text.contains(&expected), "runbook lacks {expected:?}:\n{text}");
    }
}
