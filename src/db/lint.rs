//! Reads migration SQL before it runs and says what it will do to data and locks, the way
//! squawk's and Atlas's rules do: statements that destroy data, and statements that hold long
//! locks on tables that may be big. Text rules over normalised statements: comments and string
//! bodies are blanked first, so a keyword inside a literal is not a finding.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Removes or rewrites data: a revert cannot bring it back.
    Destructive,
    /// Takes a lock that blocks reads or writes for as long as the table is scanned or rewritten.
    LongLock,
    /// The previous release will fail against the new schema (renames).
    BreaksPrevious,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: Kind,
    /// The rule, e.g. `drop-column`.
    pub rule: String,
    /// What it means, for people.
    pub why: String,
    /// The statement, shortened.
    pub statement: String,
}

/// Rules: (name, kind, why, test on the normalised statement).
type Rule = (&'static str, Kind, &'static str, fn(&str) -> bool);

const RULES: &[Rule] = &[
    ("drop-table", Kind::Destructive, "drops a table and its rows", |s| s.starts_with("DROP TABLE")),
    ("drop-schema", Kind::Destructive, "drops a schema and everything in it", |s| s.starts_with("DROP SCHEMA")),
    ("truncate", Kind::Destructive, "deletes every row", |s| s.starts_with("TRUNCATE")),
    ("drop-column", Kind::Destructive, "drops a column and its values", |s| {
        s.starts_with("ALTER TABLE") && (s.contains(" DROP COLUMN ") || has_drop_without_keyword(s))
    }),
    ("delete", Kind::Destructive, "deletes rows", |s| s.starts_with("DELETE FROM") || s.starts_with("DELETE ")),
    ("update", Kind::Destructive, "rewrites values of existing rows", |s| s.starts_with("UPDATE ")),
    (
        "alter-column-type",
        Kind::Destructive,
        "changes a column's type: may narrow or lose values, rewrites the table",
        |s| s.starts_with("ALTER TABLE") && (s.contains(" TYPE ") && s.contains(" ALTER ")),
    ),
    ("alter-column-type-lock", Kind::LongLock, "rewrites the table under an ACCESS EXCLUSIVE lock", |s| {
        s.starts_with("ALTER TABLE") && (s.contains(" TYPE ") && s.contains(" ALTER "))
    }),
    (
        "add-column-not-null-no-default",
        Kind::LongLock,
        "fails on a table with rows, and on servers before 11 a default rewrites the table",
        |s| {
            s.starts_with("ALTER TABLE")
                && s.contains(" ADD ")
                && s.contains(" NOT NULL")
                && !s.contains(" DEFAULT ")
                && !s.contains(" CONSTRAINT ")
        },
    ),
    (
        "create-index-not-concurrently",
        Kind::LongLock,
        "blocks writes to the table while the index builds; use CREATE INDEX CONCURRENTLY",
        |s| (s.starts_with("CREATE INDEX") || s.starts_with("CREATE UNIQUE INDEX")) && !s.contains(" CONCURRENTLY "),
    ),
    (
        "set-not-null",
        Kind::LongLock,
        "scans the whole table under an ACCESS EXCLUSIVE lock; add a CHECK … NOT VALID, VALIDATE it, then SET NOT NULL",
        |s| s.starts_with("ALTER TABLE") && s.contains(" SET NOT NULL"),
    ),
    (
        "add-constraint-validated",
        Kind::LongLock,
        "validates every row under lock; add it NOT VALID, then VALIDATE CONSTRAINT",
        |s| {
            s.starts_with("ALTER TABLE")
                && s.contains(" ADD CONSTRAINT ")
                && (s.contains(" FOREIGN KEY ") || s.contains(" CHECK "))
                && !s.contains(" NOT VALID")
        },
    ),
    (
        "add-unique-or-primary-key",
        Kind::LongLock,
        "builds an index under lock; build it CONCURRENTLY and add the constraint USING INDEX",
        |s| {
            s.starts_with("ALTER TABLE")
                && s.contains(" ADD ")
                && (s.contains(" UNIQUE") || s.contains(" PRIMARY KEY"))
                && !s.contains(" USING INDEX")
        },
    ),
    ("vacuum-full-or-cluster", Kind::LongLock, "rewrites the table under an ACCESS EXCLUSIVE lock", |s| {
        s.starts_with("VACUUM FULL") || s.starts_with("CLUSTER")
    }),
    ("rename", Kind::BreaksPrevious, "renames what the previous release still uses", |s| {
        s.starts_with("ALTER TABLE") && s.contains(" RENAME ")
    }),
];

/// `ALTER TABLE t DROP x` (COLUMN is optional), not `DROP CONSTRAINT` / `DROP DEFAULT` / …
fn has_drop_without_keyword(s: &str) -> bool {
    s.match_indices(" DROP ").any(|(i, _)| {
        let next = s[i + 6..].split_whitespace().next().unwrap_or("");
        !matches!(next, "CONSTRAINT" | "DEFAULT" | "NOT" | "IDENTITY" | "EXPRESSION" | "COLUMN")
    }) && !s.contains(" ALTER ")
}

/// Every finding in `sql`, in order.
pub fn lint(sql: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for stmt in statements(sql) {
        for (rule, kind, why, test) in RULES {
            if test(&stmt) {
                out.push(Finding {
                    kind: *kind,
                    rule: rule.to_string(),
                    why: why.to_string(),
                    statement: shorten(&stmt),
                });
            }
        }
    }
    out
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Statements with comments removed, string and dollar-quoted bodies blanked, whitespace
/// folded, upper-cased; split at top-level semicolons.
pub fn statements(sql: &str) -> Vec<String> {
    let b: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '-' && b.get(i + 1) == Some(&'-') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            cur.push(' ');
            continue;
        }
        if c == '/' && b.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            cur.push(' ');
            continue;
        }
        if c == '\'' || c == '"' {
            // A literal or a quoted identifier: kept as a placeholder.
            i += 1;
            while i < b.len() {
                if b[i] == c && b.get(i + 1) == Some(&c) {
                    i += 2;
                } else if b[i] == c {
                    break;
                } else {
                    i += 1;
                }
            }
            i += 1;
            cur.push_str(if c == '\'' { " 'S' " } else { " \"I\" " });
            continue;
        }
        if c == '$' {
            // $tag$ … $tag$
            let mut j = i + 1;
            while j < b.len() && (b[j].is_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            if j < b.len() && b[j] == '$' {
                let tag: String = b[i..=j].iter().collect();
                let rest: String = b[j + 1..].iter().collect();
                match rest.find(&tag) {
                    Some(end) => {
                        i = j + 1 + rest[..end].chars().count() + tag.chars().count();
                        cur.push_str(" $BODY$ ");
                        continue;
                    }
                    None => {
                        i = b.len();
                        continue;
                    }
                }
            }
        }
        if c == ';' {
            push(&mut out, &cur);
            cur.clear();
        } else {
            cur.push(c);
        }
        i += 1;
    }
    push(&mut out, &cur);
    out
}

fn push(out: &mut Vec<String>, s: &str) {
    let folded = s.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase();
    if !folded.is_empty() {
        out.push(format!(" {folded} ").trim().to_string() + " ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &str) -> Vec<String> {
        lint(sql).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn destructive_statements() {
        assert_eq!(rules("ALTER TABLE profiles DROP COLUMN bio;"), vec!["drop-column"]);
        assert_eq!(rules("alter table profiles drop bio"), vec!["drop-column"]);
        assert_eq!(rules("DROP TABLE users;"), vec!["drop-table"]);
        assert_eq!(rules("UPDATE users SET email = lower(email);"), vec!["update"]);
        assert_eq!(rules("delete from sessions where true"), vec!["delete"]);
        assert_eq!(rules("TRUNCATE audit"), vec!["truncate"]);
        assert_eq!(rules("ALTER TABLE t ALTER COLUMN c TYPE int"), vec!["alter-column-type", "alter-column-type-lock"]);
    }

    #[test]
    fn long_locks() {
        assert_eq!(rules("CREATE INDEX i ON t (c)"), vec!["create-index-not-concurrently"]);
        assert!(rules("CREATE INDEX CONCURRENTLY i ON t (c)").is_empty());
        assert_eq!(rules("ALTER TABLE t ALTER COLUMN c SET NOT NULL"), vec!["set-not-null"]);
        assert_eq!(rules("ALTER TABLE t ADD COLUMN c int NOT NULL"), vec!["add-column-not-null-no-default"]);
        assert!(rules("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0").is_empty());
        assert_eq!(
            rules("ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES u(id)"),
            vec!["add-constraint-validated"]
        );
        assert!(rules("ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES u(id) NOT VALID").is_empty());
        assert_eq!(rules("ALTER TABLE t RENAME COLUMN a TO b"), vec!["rename"]);
    }

    #[test]
    fn additions_and_text_inside_literals_and_comments_are_not_findings() {
        assert!(rules("ALTER TABLE t ADD COLUMN nickname text; -- DROP TABLE t\nCREATE TABLE x (id int)").is_empty());
        assert!(rules("INSERT INTO notes VALUES ('DROP TABLE users; TRUNCATE x')").is_empty());
        assert!(rules("CREATE FUNCTION f() RETURNS void AS $$ BEGIN DELETE FROM t; END $$ LANGUAGE plpgsql").is_empty());
        assert!(rules("ALTER TABLE t ALTER COLUMN c DROP DEFAULT; ALTER TABLE t DROP CONSTRAINT k").is_empty());
        assert_eq!(statements("a; b /* ; */ ; 'x;y'").len(), 3);
    }
}
