//! The rules: each names a kind of harm, says why for people, and tests one statement (read
//! through [`shape`](super::shape), knowing what the SQL before it did, [`Schema`]). docs/LINT.md
//! sets them beside squawk's.

use super::lex::Span;
use super::schema::Schema;
use super::shape::{
    added_column, added_constraint, alter_table, any_action, column_op, column_op_is, default_expr, dml_verbs,
    lock_blocks_writes, new_type, targets, volatile,
};
use super::types::{self, Change};
use super::Kind;

/// A rule: its name, what kind of harm, why (for people), and its test of one statement.
pub struct Rule {
    pub name: &'static str,
    pub kind: Kind,
    pub why: &'static str,
    pub test: fn(Span, &Schema) -> bool,
}

use Kind::{BreaksPrevious, Destructive, LongLock};

pub const RULES: &[Rule] = &[
    // What a revert cannot bring back.
    Rule {
        name: "drop-table",
        kind: Destructive,
        why: "drops a table and its rows",
        test: |s, _| s.starts(&["DROP", "TABLE"]),
    },
    Rule {
        name: "drop-schema",
        kind: Destructive,
        why: "drops a schema and everything in it",
        test: |s, _| s.starts(&["DROP", "SCHEMA"]),
    },
    Rule {
        name: "drop-database",
        kind: Destructive,
        why: "drops a database and everything in it",
        test: |s, _| s.starts(&["DROP", "DATABASE"]),
    },
    Rule {
        name: "drop-column",
        kind: Destructive,
        why: "drops a column and its values",
        test: |s, _| any_action(s, |a| a.starts(&["DROP"]) && !a.kw(1, "CONSTRAINT")),
    },
    Rule {
        name: "drop-cascade",
        kind: Destructive,
        why: "CASCADE also drops every column of this type, domain or extension (or computed by this function), with its values",
        test: |s, _| {
            s.starts(&["DROP"])
                && ["TYPE", "DOMAIN", "EXTENSION", "FUNCTION", "COLLATION"].iter().any(|o| s.kw(1, o))
                && s.has(&["CASCADE"])
        },
    },
    Rule {
        name: "drop-sequence",
        kind: Destructive,
        why: "drops a sequence and where it stood: made again it starts over, and new ids collide with existing rows",
        test: |s, _| s.starts(&["DROP", "SEQUENCE"]),
    },
    Rule {
        name: "drop-owned",
        kind: Destructive,
        why: "drops every object the role owns, with their rows",
        test: |s, _| s.starts(&["DROP", "OWNED"]),
    },
    Rule { name: "truncate", kind: Destructive, why: "deletes every row", test: |s, _| s.starts(&["TRUNCATE"]) },
    Rule { name: "delete", kind: Destructive, why: "deletes rows", test: |s, _| dml_verbs(s).iter().any(|v| v == "DELETE") },
    Rule {
        name: "update",
        kind: Destructive,
        why: "overwrites values of existing rows",
        test: |s, db| dml_verbs(s).iter().any(|v| v == "UPDATE") && !sets_only_added_columns(s, db),
    },
    Rule {
        name: "upsert",
        kind: Destructive,
        why: "ON CONFLICT DO UPDATE overwrites values of existing rows",
        test: |s, _| {
            dml_verbs(s).iter().any(|v| v == "INSERT") && s.has(&["ON", "CONFLICT"]) && s.has(&["DO", "UPDATE"])
        },
    },
    Rule {
        name: "merge",
        kind: Destructive,
        why: "MERGE updates or deletes existing rows",
        test: |s, _| {
            dml_verbs(s).iter().any(|v| v == "MERGE") && (s.has(&["THEN", "UPDATE"]) || s.has(&["THEN", "DELETE"]))
        },
    },
    Rule {
        name: "alter-column-type",
        kind: Destructive,
        why: "changes a column's type so that values can be rounded, cut or converted (USING): a down cannot bring them back",
        test: |s, db| type_changes(s, db).contains(&Change::Lossy),
    },
    Rule {
        name: "enum-add-value",
        kind: Destructive,
        why: "adds an enum value: PostgreSQL cannot drop one, so no down undoes it",
        test: |s, _| s.starts(&["ALTER", "TYPE"]) && s.has(&["ADD", "VALUE"]),
    },
    Rule {
        name: "sequence-restart",
        kind: Destructive,
        why: "moves a sequence: a down cannot know where it stood, and new ids may collide with existing rows",
        test: |s, _| s.starts(&["ALTER", "SEQUENCE"]) && s.has(&["RESTART"]),
    },
    // Locks held for as long as a table is rewritten or scanned.
    Rule {
        name: "alter-column-type-rewrite",
        kind: LongLock,
        why: "rewrites the table and its indexes under an ACCESS EXCLUSIVE lock (a longer varchar, or more numeric precision, would not)",
        test: |s, db| type_changes(s, db).iter().any(|c| *c >= Change::Rewrite),
    },
    Rule {
        name: "add-column-rewrite",
        kind: LongLock,
        why: "a volatile default or a stored generated, identity or serial column is written into every row under an ACCESS EXCLUSIVE lock; add it nullable, backfill in batches, then set the default",
        test: |s, _| {
            any_action(s, |a| {
                added_column(a).is_some_and(|(_, ty, rest)| {
                    ty.serial
                        || rest.has(&["AS", "IDENTITY"])
                        || (rest.has(&["GENERATED"]) && rest.has(&["STORED"]))
                        || default_expr(rest).is_some_and(volatile)
                })
            })
        },
    },
    Rule {
        name: "table-rewrite",
        kind: LongLock,
        why: "rewrites the table under an ACCESS EXCLUSIVE lock",
        test: |s, _| {
            any_action(s, |a| {
                a.starts(&["SET", "TABLESPACE"])
                    || a.starts(&["SET", "LOGGED"])
                    || a.starts(&["SET", "UNLOGGED"])
                    || a.starts(&["SET", "ACCESS", "METHOD"])
                    || column_op(a).is_some_and(|(_, op)| op.starts(&["SET", "EXPRESSION"]))
            })
        },
    },
    Rule {
        name: "create-index-not-concurrently",
        kind: LongLock,
        why: "blocks writes to the table while the index builds; use CREATE INDEX CONCURRENTLY",
        test: |s, _| {
            (s.starts(&["CREATE", "INDEX"]) || s.starts(&["CREATE", "UNIQUE", "INDEX"]))
                && !s.has(&["CONCURRENTLY"])
                // ON ONLY a partitioned table: an empty, invalid index, catalog-only.
                && !s.find(&["ON"]).is_some_and(|i| s.kw(i + 1, "ONLY"))
        },
    },
    Rule {
        name: "drop-index-not-concurrently",
        kind: LongLock,
        why: "takes an ACCESS EXCLUSIVE lock on the table, queued behind every running query; use DROP INDEX CONCURRENTLY",
        test: |s, _| s.starts(&["DROP", "INDEX"]) && !s.has(&["CONCURRENTLY"]),
    },
    Rule {
        name: "reindex-not-concurrently",
        kind: LongLock,
        why: "blocks writes, and reads through the index, while it rebuilds; use REINDEX … CONCURRENTLY",
        test: |s, _| s.starts(&["REINDEX"]) && !s.has_anywhere("CONCURRENTLY"),
    },
    Rule {
        name: "refresh-materialized-view-not-concurrently",
        kind: LongLock,
        why: "blocks every read of the view while it is computed again; use REFRESH … CONCURRENTLY (it needs a unique index)",
        test: |s, _| s.starts(&["REFRESH", "MATERIALIZED", "VIEW"]) && !s.has(&["CONCURRENTLY"]),
    },
    Rule {
        name: "detach-partition-not-concurrently",
        kind: LongLock,
        why: "takes an ACCESS EXCLUSIVE lock on the partitioned table; use DETACH PARTITION … CONCURRENTLY",
        test: |s, _| {
            any_action(s, |a| a.starts(&["DETACH", "PARTITION"]) && !a.has(&["CONCURRENTLY"]) && !a.has(&["FINALIZE"]))
        },
    },
    Rule {
        name: "attach-partition",
        kind: LongLock,
        why: "scans the partition (and the default partition, locked) to check its bound; add a CHECK constraint matching the bound first",
        test: |s, _| any_action(s, |a| a.starts(&["ATTACH", "PARTITION"])),
    },
    Rule {
        name: "set-not-null",
        kind: LongLock,
        why: "scans the whole table under an ACCESS EXCLUSIVE lock; add a CHECK (c IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL",
        test: |s, db| {
            alter_table(s).is_some_and(|(t, actions)| {
                actions.into_iter().any(|a| {
                    column_op(a).is_some_and(|(c, op)| {
                        op.starts(&["SET", "NOT", "NULL"]) && !db.proven_not_null.contains(&(t.clone(), c))
                    })
                })
            })
        },
    },
    Rule {
        name: "add-constraint-validated",
        kind: LongLock,
        why: "checks every row under lock; add it NOT VALID, then VALIDATE CONSTRAINT (for a new column: add the column, then the constraint)",
        test: |s, _| {
            any_action(s, |a| match added_constraint(a) {
                Some((_, c)) => (c.starts(&["CHECK"]) || c.starts(&["FOREIGN"])) && !c.has(&["NOT", "VALID"]),
                None => added_column(a).is_some_and(|(_, _, rest)| rest.has(&["REFERENCES"]) || rest.has(&["CHECK"])),
            })
        },
    },
    Rule {
        name: "add-unique-or-primary-key",
        kind: LongLock,
        why: "builds an index under lock; build it CONCURRENTLY and add the constraint USING INDEX",
        test: |s, _| {
            any_action(s, |a| match added_constraint(a) {
                Some((_, c)) if c.starts(&["UNIQUE"]) => !c.seq(1, &["USING", "INDEX"]),
                Some((_, c)) if c.starts(&["PRIMARY", "KEY"]) => !c.seq(2, &["USING", "INDEX"]),
                Some(_) => false,
                None => added_column(a).is_some_and(|(_, _, rest)| rest.has(&["UNIQUE"]) || rest.has(&["PRIMARY", "KEY"])),
            })
        },
    },
    Rule {
        name: "add-exclude-constraint",
        kind: LongLock,
        why: "builds an index and checks every row under an ACCESS EXCLUSIVE lock; an exclusion constraint has no NOT VALID or USING INDEX form",
        test: |s, _| any_action(s, |a| added_constraint(a).is_some_and(|(_, c)| c.starts(&["EXCLUDE"]))),
    },
    Rule {
        name: "alter-domain-add-constraint",
        kind: LongLock,
        why: "checks every column that uses the domain, table by table, under lock; add it NOT VALID, then VALIDATE",
        test: |s, _| {
            s.starts(&["ALTER", "DOMAIN"])
                && ((s.has(&["ADD"]) && !s.has(&["NOT", "VALID"])) || s.has(&["SET", "NOT", "NULL"]))
        },
    },
    Rule {
        name: "vacuum-full-or-cluster",
        kind: LongLock,
        why: "rewrites the table under an ACCESS EXCLUSIVE lock",
        test: |s, _| (s.starts(&["VACUUM"]) && s.has_anywhere("FULL")) || s.starts(&["CLUSTER"]),
    },
    Rule {
        name: "lock-table",
        kind: LongLock,
        why: "holds a lock that blocks writes (ACCESS EXCLUSIVE, the default, reads too) until the transaction ends",
        test: |s, _| s.starts(&["LOCK"]) && lock_blocks_writes(s),
    },
    // What the previous release, or the revert, may fail against.
    Rule {
        name: "rename",
        kind: BreaksPrevious,
        why: "renames what the previous release still uses",
        test: |s, _| {
            const OBJECTS: &[&[&str]] = &[
                &["TABLE"],
                &["FOREIGN", "TABLE"],
                &["VIEW"],
                &["MATERIALIZED", "VIEW"],
                &["SEQUENCE"],
                &["FUNCTION"],
                &["PROCEDURE"],
                &["ROUTINE"],
                &["AGGREGATE"],
                &["TYPE"],
                &["DOMAIN"],
                &["SCHEMA"],
                &["DATABASE"],
                &["ROLE"],
                &["USER"],
            ];
            // Constraint and index names are the database's own, not the application's.
            s.starts(&["ALTER"])
                && OBJECTS.iter().any(|o| s.seq(1, o))
                && s.find(&["RENAME"]).is_some_and(|i| !s.kw(i + 1, "CONSTRAINT"))
        },
    },
    Rule {
        name: "set-schema",
        kind: BreaksPrevious,
        why: "moves it to another schema: the previous release's names no longer find it",
        test: |s, _| s.starts(&["ALTER"]) && s.has(&["SET", "SCHEMA"]),
    },
    Rule {
        name: "add-column-not-null-no-default",
        kind: BreaksPrevious,
        why: "the previous release's inserts leave the column out and fail (on a table with rows, the statement itself fails)",
        test: |s, _| {
            any_action(s, |a| {
                added_column(a).is_some_and(|(_, ty, rest)| {
                    (rest.has(&["NOT", "NULL"]) || rest.has(&["PRIMARY", "KEY"]))
                        && !rest.has(&["DEFAULT"])
                        && !rest.has(&["GENERATED"])
                        && !ty.serial
                })
            })
        },
    },
    Rule {
        name: "drop-not-null",
        kind: BreaksPrevious,
        why: "the new release can write NULLs the previous one does not expect, and the down's SET NOT NULL then fails",
        test: |s, _| column_op_is(s, &["DROP", "NOT", "NULL"]),
    },
    Rule {
        name: "drop-default",
        kind: BreaksPrevious,
        why: "the previous release's inserts that leave the column out get NULL, or fail",
        test: |s, _| column_op_is(s, &["DROP", "DEFAULT"]),
    },
    Rule {
        name: "drop-constraint",
        kind: BreaksPrevious,
        why: "rows the constraint refused can come in, and the down's adding it back then fails",
        test: |s, _| {
            any_action(s, |a| a.starts(&["DROP", "CONSTRAINT"]))
                || (s.starts(&["ALTER", "DOMAIN"]) && s.has(&["DROP", "CONSTRAINT"]))
        },
    },
    Rule {
        name: "drop-identity",
        kind: BreaksPrevious,
        why: "the previous release's inserts that leave the column out fail",
        test: |s, _| column_op_is(s, &["DROP", "IDENTITY"]),
    },
    Rule {
        name: "drop-expression",
        kind: BreaksPrevious,
        why: "the column is no longer computed: what the new release writes goes stale for the previous one",
        test: |s, _| column_op_is(s, &["DROP", "EXPRESSION"]),
    },
    Rule {
        name: "drop-view",
        kind: BreaksPrevious,
        why: "the previous release's queries of the view fail",
        test: |s, _| s.starts(&["DROP", "VIEW"]) || s.starts(&["DROP", "MATERIALIZED", "VIEW"]),
    },
    Rule {
        name: "drop-function",
        kind: BreaksPrevious,
        why: "the previous release's calls fail, and so do triggers and defaults that call it",
        test: |s, _| s.starts(&["DROP"]) && ["FUNCTION", "PROCEDURE", "ROUTINE", "AGGREGATE"].iter().any(|o| s.kw(1, o)),
    },
    Rule {
        name: "drop-type",
        kind: BreaksPrevious,
        why: "the previous release's casts to the type or domain fail",
        test: |s, _| s.starts(&["DROP", "TYPE"]) || s.starts(&["DROP", "DOMAIN"]),
    },
    Rule {
        name: "drop-extension",
        kind: BreaksPrevious,
        why: "the previous release's uses of the extension's functions and types fail",
        test: |s, _| s.starts(&["DROP", "EXTENSION"]),
    },
    Rule {
        name: "drop-trigger",
        kind: BreaksPrevious,
        why: "writes stop running a trigger the previous release relies on",
        test: |s, _| s.starts(&["DROP", "TRIGGER"]),
    },
    Rule {
        name: "disable-trigger",
        kind: BreaksPrevious,
        why: "writes skip the trigger until it is enabled again",
        test: |s, _| any_action(s, |a| a.starts(&["DISABLE", "TRIGGER"])),
    },
    Rule {
        name: "revoke",
        kind: BreaksPrevious,
        why: "the previous release may use the privilege it takes away",
        test: |s, _| s.starts(&["REVOKE"]),
    },
    Rule {
        name: "enable-row-level-security",
        kind: BreaksPrevious,
        why: "roles no policy lets in see no rows",
        test: |s, _| {
            any_action(s, |a| a.starts(&["ENABLE", "ROW", "LEVEL", "SECURITY"]) || a.starts(&["FORCE", "ROW", "LEVEL", "SECURITY"]))
        },
    },
];

/// What each `ALTER COLUMN … TYPE` of the statement does.
fn type_changes(s: Span, db: &Schema) -> Vec<Change> {
    let Some((table, actions)) = alter_table(s) else { return Vec::new() };
    actions
        .into_iter()
        .filter_map(|a| {
            let (col, op) = column_op(a)?;
            let (new, _) = new_type(op)?;
            Some(types::change(db.column_type(&table, &col).as_ref(), &new, op.has(&["USING"])))
        })
        .collect()
}

/// `UPDATE t SET …` sets only columns the same SQL added: a backfill, which overwrites nothing
/// that existed.
fn sets_only_added_columns(s: Span, db: &Schema) -> bool {
    let (Some(table), Some(set)) = (targets(s).pop(), s.find(&["SET"])) else { return false };
    if !s.starts(&["UPDATE"]) {
        return false;
    }
    let end = ["FROM", "WHERE", "RETURNING"].iter().filter_map(|k| s.find(&[k])).filter(|&i| i > set).min();
    let assignments = Span(&s.0[set + 1..end.unwrap_or(s.len())]).split_commas();
    let mut columns = Vec::new();
    for a in &assignments {
        if a.punct(0, '(') {
            // (a, b) = (…)
            let inner = Span(&a.0[1..a.group_end(0) - 1]);
            columns.extend(inner.split_commas().iter().map(|c| c.ident(0)));
        } else if a.punct(1, '=') || a.punct(1, '[') || a.punct(1, '.') {
            columns.push(a.ident(0));
        }
    }
    !columns.is_empty()
        && columns.iter().all(|c| c.as_ref().is_some_and(|c| db.added.contains(&(table.clone(), c.clone()))))
}

#[cfg(test)]
mod tests {
    use super::RULES;
    use crate::db::lint::{lint, Catalog, Linter};

    fn rules(sql: &str) -> Vec<String> {
        lint(sql).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn destructive_statements() {
        assert_eq!(rules("ALTER TABLE profiles DROP COLUMN bio;"), ["drop-column"]);
        assert_eq!(rules("alter table profiles drop bio"), ["drop-column"]);
        assert_eq!(rules("ALTER TABLE t ALTER COLUMN s SET DEFAULT 'x', DROP legacy"), ["drop-column"]);
        assert_eq!(rules("DROP TABLE users;"), ["drop-table"]);
        assert_eq!(rules("UPDATE users SET email = lower(email);"), ["update"]);
        assert_eq!(rules("delete from sessions where true"), ["delete"]);
        assert_eq!(rules("WITH d AS (DELETE FROM s RETURNING id) SELECT count(*) FROM d"), ["delete"]);
        assert_eq!(rules("TRUNCATE audit"), ["truncate"]);
        assert_eq!(rules("ALTER TYPE status ADD VALUE 'refunded'"), ["enum-add-value"]);
        assert_eq!(rules("DROP TYPE status CASCADE"), ["drop-cascade", "drop-type"]);
    }

    #[test]
    fn a_type_change_is_judged_from_the_old_type() {
        let sql = "ALTER TABLE accounts ALTER COLUMN nickname TYPE varchar(200)";
        let widen = |old: &str| {
            let c = Catalog::from_rows(vec![["public".into(), "accounts".into(), "nickname".into(), old.into()]]);
            Linter::new(c).lint(sql).into_iter().map(|f| f.rule).collect::<Vec<_>>()
        };
        assert!(widen("character varying(100)").is_empty());
        assert_eq!(widen("character varying(300)"), ["alter-column-type-rewrite"]);
        assert_eq!(widen("integer"), ["alter-column-type-rewrite"]);
        // Not known: a string target is never lossy, but may rewrite.
        assert_eq!(rules(sql), ["alter-column-type-rewrite"]);
        assert_eq!(rules("ALTER TABLE t ALTER c TYPE int"), ["alter-column-type", "alter-column-type-rewrite"]);
        // Known from the SQL itself.
        assert!(rules("ALTER TABLE t ADD c varchar(10); ALTER TABLE t ALTER c TYPE text").is_empty());
    }

    #[test]
    fn long_locks() {
        assert_eq!(rules("CREATE INDEX i ON t (c)"), ["create-index-not-concurrently"]);
        assert!(rules("CREATE INDEX CONCURRENTLY i ON t (c)").is_empty());
        assert_eq!(rules("ALTER TABLE t ALTER COLUMN c SET NOT NULL"), ["set-not-null"]);
        assert_eq!(rules("ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid()"), ["add-column-rewrite"]);
        assert!(rules("ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT now()").is_empty());
        assert!(rules("ALTER TABLE t ADD COLUMN c numeric NOT NULL DEFAULT 0::numeric(10, 2)").is_empty());
        assert_eq!(
            rules("ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES u(id)"),
            ["add-constraint-validated"]
        );
        assert!(rules("ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES u(id) NOT VALID").is_empty());
        assert!(rules("ALTER TABLE a ADD CONSTRAINT k UNIQUE (e) USING INDEX TABLESPACE fast").len() == 1);
        assert_eq!(rules("LOCK orders"), ["lock-table"]);
        assert!(rules("LOCK TABLE orders IN ROW EXCLUSIVE MODE").is_empty());
    }

    #[test]
    fn breaking_the_previous_release() {
        assert_eq!(rules("ALTER TABLE t RENAME COLUMN a TO b"), ["rename"]);
        assert_eq!(rules("ALTER VIEW v RENAME TO w"), ["rename"]);
        assert!(rules("ALTER TABLE t RENAME CONSTRAINT a TO b").is_empty());
        assert_eq!(rules("ALTER TABLE t ADD COLUMN c int CONSTRAINT nn NOT NULL"), ["add-column-not-null-no-default"]);
        assert_eq!(rules("ALTER TABLE t ALTER COLUMN c DROP DEFAULT"), ["drop-default"]);
        assert_eq!(rules("ALTER TABLE t DROP CONSTRAINT k"), ["drop-constraint"]);
    }

    /// Each rule on the shape it names, and not on the safe form next to it.
    #[test]
    fn each_rule_and_its_safe_form() {
        let cases: &[(&str, &[&str])] = &[
            ("DROP SCHEMA legacy CASCADE", &["drop-schema"]),
            ("DROP DATABASE reports", &["drop-database"]),
            ("DROP SEQUENCE invoice_no", &["drop-sequence"]),
            ("DROP OWNED BY etl", &["drop-owned"]),
            ("DROP EXTENSION hstore CASCADE", &["drop-cascade", "drop-extension"]),
            ("DROP EXTENSION hstore", &["drop-extension"]),
            ("INSERT INTO s (k, v) VALUES (1, 2) ON CONFLICT (k) DO UPDATE SET v = excluded.v", &["upsert"]),
            ("INSERT INTO s (k, v) VALUES (1, 2) ON CONFLICT (k) DO NOTHING", &[]),
            ("MERGE INTO s USING i ON s.k = i.k WHEN MATCHED THEN DELETE", &["merge"]),
            ("MERGE INTO s USING i ON s.k = i.k WHEN NOT MATCHED THEN INSERT VALUES (i.k)", &[]),
            ("ALTER SEQUENCE invoice_no RESTART WITH 1", &["sequence-restart"]),
            ("ALTER SEQUENCE invoice_no CACHE 10", &[]),
            ("ALTER TABLE t SET LOGGED", &["table-rewrite"]),
            ("ALTER TABLE t SET TABLESPACE fast", &["table-rewrite"]),
            ("ALTER TABLE t ALTER c SET EXPRESSION AS (a + b)", &["table-rewrite"]),
            ("ALTER TABLE t SET (fillfactor = 70)", &[]),
            ("DROP INDEX i", &["drop-index-not-concurrently"]),
            ("DROP INDEX CONCURRENTLY IF EXISTS i", &[]),
            ("REINDEX TABLE t", &["reindex-not-concurrently"]),
            ("REINDEX (CONCURRENTLY) TABLE t", &[]),
            ("REFRESH MATERIALIZED VIEW v", &["refresh-materialized-view-not-concurrently"]),
            ("REFRESH MATERIALIZED VIEW CONCURRENTLY v", &[]),
            ("ALTER TABLE m DETACH PARTITION m_2020", &["detach-partition-not-concurrently"]),
            ("ALTER TABLE m DETACH PARTITION m_2020 CONCURRENTLY", &[]),
            ("ALTER TABLE m ATTACH PARTITION m_2021 FOR VALUES FROM (1) TO (2)", &["attach-partition"]),
            (
                "ALTER TABLE b ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, span WITH &&)",
                &["add-exclude-constraint"],
            ),
            ("ALTER DOMAIN money_amount ADD CONSTRAINT cap CHECK (VALUE < 100)", &["alter-domain-add-constraint"]),
            ("ALTER DOMAIN money_amount ADD CONSTRAINT cap CHECK (VALUE < 100) NOT VALID", &[]),
            ("VACUUM FULL t", &["vacuum-full-or-cluster"]),
            ("CLUSTER t USING t_pkey", &["vacuum-full-or-cluster"]),
            ("VACUUM (ANALYZE) t", &[]),
            ("ALTER TABLE t SET SCHEMA archive", &["set-schema"]),
            ("ALTER TABLE t ALTER COLUMN c DROP NOT NULL", &["drop-not-null"]),
            ("ALTER TABLE t ALTER COLUMN id DROP IDENTITY IF EXISTS", &["drop-identity"]),
            ("ALTER TABLE t ALTER COLUMN total DROP EXPRESSION", &["drop-expression"]),
            ("DROP VIEW IF EXISTS v", &["drop-view"]),
            ("DROP FUNCTION f(int)", &["drop-function"]),
            ("DROP DOMAIN money_amount", &["drop-type"]),
            ("DROP TRIGGER touch ON t", &["drop-trigger"]),
            ("ALTER TABLE t DISABLE TRIGGER touch", &["disable-trigger"]),
            ("ALTER TABLE t ENABLE TRIGGER touch", &[]),
            ("REVOKE SELECT ON t FROM reporting", &["revoke"]),
            ("GRANT SELECT ON t TO reporting", &[]),
            ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", &["enable-row-level-security"]),
            ("ALTER TABLE t ADD COLUMN id bigserial", &["add-column-rewrite"]),
            ("ALTER TABLE t ADD COLUMN total int GENERATED ALWAYS AS (a + b) STORED", &["add-column-rewrite"]),
            ("ALTER TABLE t ADD COLUMN total int GENERATED ALWAYS AS (a + b) VIRTUAL", &[]),
            ("ALTER TABLE t ADD COLUMN c int CHECK (c > 0)", &["add-constraint-validated"]),
            ("ALTER TABLE t ADD PRIMARY KEY USING INDEX t_id_idx", &[]),
            ("ALTER TABLE t ADD COLUMN c int NOT NULL", &["add-column-not-null-no-default"]),
            ("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0", &[]),
            ("ALTER TABLE t ADD COLUMN c bigint DEFAULT extract(epoch FROM now())::bigint", &[]),
            ("ALTER TABLE t ADD COLUMN c bigint DEFAULT nextval('t_c_seq')", &["add-column-rewrite"]),
            ("CREATE INDEX i ON ONLY measurements (taken_at)", &[]),
            ("LOCK TABLE t IN SHARE UPDATE EXCLUSIVE MODE", &[]),
            ("SELECT id FROM jobs FOR UPDATE SKIP LOCKED", &[]),
        ];
        let mut named = std::collections::BTreeSet::new();
        for (sql, want) in cases {
            assert_eq!(rules(sql), *want, "{sql}");
            named.extend(want.iter().copied());
        }
        // With the tests above, every rule has a case of its own here.
        let above = ["drop-column", "drop-table", "update", "delete", "truncate", "enum-add-value", "drop-cascade"];
        let above2 =
            ["alter-column-type", "alter-column-type-rewrite", "create-index-not-concurrently", "set-not-null"];
        let above3 = ["add-unique-or-primary-key", "lock-table", "rename", "drop-default", "drop-constraint"];
        named.extend(above.iter().chain(&above2).chain(&above3).copied());
        let untested: Vec<&str> = RULES.iter().map(|r| r.name).filter(|r| !named.contains(r)).collect();
        assert!(untested.is_empty(), "no unit case for {untested:?}");
    }
}
