//! Every SQL statement a restore, a swap or the ending of a session runs, built in one pure
//! place: the adapter runs them, the plan shows them and the runbook's manual lines are them.

use crate::model::DbNames;

/// A quoted SQL identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A quoted SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Each of `tables`' rows as one JSON object `{"table": {"rows": n, "estimate": bool}}` (null
/// for a table the database does not have): the planner's estimate when it has one, else an
/// exact count (a table never analysed, or estimated empty, is counted).
pub fn row_counts(tables: &[String]) -> String {
    let regclass = |t: &String| {
        let name = match t.split_once('.') {
            Some((schema, table)) => format!("{}.{}", ident(schema), ident(table)),
            None => ident(t),
        };
        format!("({}, {})", literal(t), literal(&name))
    };
    format!(
        "SELECT coalesce(json_object_agg(t.name, CASE WHEN c.oid IS NULL THEN NULL \
         WHEN c.reltuples > 0 THEN json_build_object('rows', c.reltuples::bigint, 'estimate', true) \
         ELSE json_build_object('rows', (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', \
         c.oid::regclass), false, true, '')))[1]::text::bigint, 'estimate', false) END), '{{}}'::json) \
         FROM (VALUES {}) AS t(name, reg) LEFT JOIN pg_class c ON c.oid = to_regclass(t.reg);",
        tables.iter().map(regclass).collect::<Vec<_>>().join(", ")
    )
}

/// Drops `db` if it exists (a scratch database an interrupted restore left).
pub fn drop_if_exists(db: &str) -> String {
    format!("DROP DATABASE IF EXISTS {};", ident(db))
}

/// Prints the `OWNER … ENCODING … LC_COLLATE … LC_CTYPE …` of `live`, for its scratch copy.
pub fn settings_of(live: &str) -> String {
    format!(
        "SELECT format('OWNER %I ENCODING %L LC_COLLATE %L LC_CTYPE %L', pg_get_userbyid(datdba), \
         pg_encoding_to_char(encoding), datcollate, datctype) FROM pg_database WHERE datname = {};",
        literal(live)
    )
}

/// Creates `scratch` empty, with `settings` (what [`settings_of`] printed; empty: the server's).
pub fn create_empty(scratch: &str, settings: &str) -> String {
    let settings = if settings.is_empty() { String::new() } else { format!(" {settings}") };
    format!("CREATE DATABASE {} TEMPLATE template0{settings};", ident(scratch))
}

/// Ends every session on `db`, then drops it (a database in use cannot be dropped, and a restore
/// whose link dropped leaves its psql connected).
pub fn end_sessions_and_drop(db: &str) -> String {
    format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = {}; {}",
        literal(db),
        drop_if_exists(db)
    )
}

/// The swap, in order: new connections to the live database refused, its sessions ended (waited
/// for), both renames in one transaction, the kept copy opened again for forensics.
pub fn swap(names: &DbNames) -> [String; 4] {
    [
        allow_connections(&names.live, false),
        end_sessions_and_wait(&names.live),
        format!("BEGIN; {} {} COMMIT;", rename(&names.live, &names.failed), rename(&names.scratch, &names.live)),
        allow_connections(&names.failed, true),
    ]
}

/// `ALTER DATABASE from RENAME TO to;`
pub fn rename(from: &str, to: &str) -> String {
    format!("ALTER DATABASE {} RENAME TO {};", ident(from), ident(to))
}

/// `ALTER DATABASE db ALLOW_CONNECTIONS true|false;`
pub fn allow_connections(db: &str, allow: bool) -> String {
    format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allow};", ident(db))
}

/// Ends every other session on `db` and waits (10 s at most) until none is left.
/// pg_stat_activity is snapshotted once per transaction (and a DO block is one): it is cleared
/// every round, or the loop keeps seeing the sessions it already ended.
pub fn end_sessions_and_wait(db: &str) -> String {
    format!(
        "DO $$ BEGIN FOR i IN 1..200 LOOP PERFORM pg_stat_clear_snapshot(); \
           PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {0} AND pid <> pg_backend_pid(); \
           EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = {0} AND pid <> pg_backend_pid()); \
           PERFORM pg_sleep(0.05); END LOOP; \
         IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = {0} AND pid <> pg_backend_pid()) THEN \
           RAISE EXCEPTION 'sessions on % did not end within 10 s', {0}; END IF; END $$;",
        literal(db)
    )
}

/// Ends the sessions named `app` (their `application_name`), on `db` only when given (another
/// project on the same server may run a tool of the same name), and prints how many it ended.
pub fn end_sessions_of(app: &str, db: Option<&str>) -> String {
    let on = db.map(|d| format!(" AND datname = {}", literal(d))).unwrap_or_default();
    format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = {}{on};",
        literal(app)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_whatever_they_hold() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        let names = DbNames {
            live: "sh\"op".into(),
            scratch: "sh\"op__restore_abc1234".into(),
            failed: "sh\"op__failed_abc1234".into(),
            rehearse: String::new(),
            apart: String::new(),
        };
        let [close, _, renames, reopen] = swap(&names);
        assert_eq!(close, "ALTER DATABASE \"sh\"\"op\" ALLOW_CONNECTIONS false;");
        assert!(renames.starts_with("BEGIN; ALTER DATABASE \"sh\"\"op\" RENAME TO \"sh\"\"op__failed_abc1234\";"));
        assert!(renames.ends_with("RENAME TO \"sh\"\"op\"; COMMIT;"));
        assert_eq!(reopen, "ALTER DATABASE \"sh\"\"op__failed_abc1234\" ALLOW_CONNECTIONS true;");
        assert_eq!(create_empty("x", ""), "CREATE DATABASE \"x\" TEMPLATE template0;");
    }
}
