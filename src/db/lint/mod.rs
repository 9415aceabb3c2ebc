//! Reads migration SQL before it runs and says what it will do to data, to locks and to the
//! previous release, the way squawk's and Atlas's rules do (docs/LINT.md runs the same cases
//! through squawk). The rules read statements through a lexer ([`lex`]), ALTER TABLE action by
//! action, knowing what the SQL before them did: a table the same SQL created holds no rows
//! anyone depends on, and a column type change is judged from the column's old type (from the
//! SQL, or from the live catalog the classify step reads, [`Catalog`]).

mod catalog;
#[cfg(test)]
mod corpus;
mod lex;
mod rules;
mod schema;
mod shape;
mod types;

use serde::{Deserialize, Serialize};

pub use catalog::{catalog_sql, tables_to_read, Catalog};
pub use lex::Allow;
use lex::{QName, Span, Tok, Token};
use rules::RULES;
use schema::Schema;
use shape::targets;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A revert cannot undo it: rows or values are destroyed or rewritten, or the change is one
    /// no down can take back. A rollback restores the backup.
    Destructive,
    /// Takes a lock that blocks reads or writes for as long as the table is scanned or rewritten.
    LongLock,
    /// The previous release (or the revert) may fail against what it leaves: renames, dropped
    /// defaults, constraints and objects.
    BreaksPrevious,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: Kind,
    /// The rule, e.g. `drop-column`.
    pub rule: String,
    /// What it means, for people.
    pub why: String,
    /// The statement, shortened, its literals left out.
    pub statement: String,
    /// The tables it changes, where it names them (`schema.table` when qualified).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// The author's reason, when an annotation allows it (`-- deploy-guard: allow-destructive
    /// <reason>`, [`lex::Allow`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
}

/// Classifies SQL statement by statement, remembering what earlier statements (and earlier
/// files of the same deploy) did.
#[derive(Debug, Default)]
pub struct Linter {
    db: Schema,
    /// The migration tool's own table: what the tool writes there is its bookkeeping.
    tool_table: Option<String>,
}

impl Linter {
    pub fn new(catalog: Catalog) -> Linter {
        Linter { db: Schema::new(catalog), tool_table: None }
    }

    /// Statements on the table `name` (any schema, any case) are not findings.
    pub fn ignoring_table(self, name: &str) -> Linter {
        Linter { tool_table: Some(name.to_string()), ..self }
    }

    /// Every finding in `sql`, in order.
    pub fn lint(&mut self, sql: &str) -> Vec<Finding> {
        let toks = lex::tokens(sql);
        let file = toks.iter().find_map(|t| match &t.allow {
            Some(Allow::File(why)) => Some(why.clone()),
            _ => None,
        });
        let mut out = Vec::new();
        for stmt in lex::split_statements(toks) {
            self.statement(&stmt, "", &mut out);
        }
        for f in &mut out {
            f.allowed = f.allowed.take().or_else(|| file.clone());
        }
        out
    }

    fn statement(&mut self, toks: &[Token], context: &str, out: &mut Vec<Finding>) {
        let s = Span(toks);
        if s.starts(&["DO"]) {
            self.do_block(s, out);
        }
        // When the same SQL created every table the statement changes, no rows anyone depends
        // on are at stake.
        let targets = targets(s);
        let ours = |t: &QName| {
            self.db.created.contains(t) || self.tool_table.as_deref().is_some_and(|n| t.name.eq_ignore_ascii_case(n))
        };
        if targets.is_empty() || !targets.iter().all(ours) {
            let allowed = toks.iter().find_map(|t| match &t.allow {
                Some(Allow::Statement(why)) => Some(why.clone()),
                _ => None,
            });
            let tables: Vec<String> = targets
                .iter()
                .map(|t| match &t.schema {
                    Some(schema) => format!("{schema}.{}", t.name),
                    None => t.name.clone(),
                })
                .collect();
            for r in RULES.iter().filter(|r| (r.test)(s, &self.db)) {
                out.push(Finding {
                    kind: r.kind,
                    rule: r.name.to_string(),
                    why: r.why.to_string(),
                    statement: shorten(&format!("{context}{}", s.display())),
                    tables: tables.clone(),
                    allowed: allowed.clone(),
                });
            }
        }
        self.db.apply(s);
    }

    /// A DO block runs now: its PL/pgSQL statements, and the SQL it EXECUTEs, are classified
    /// as far as they can be read.
    fn do_block(&mut self, s: Span, out: &mut Vec<Finding>) {
        let text = |t: Option<&Tok>| match t {
            Some(Tok::Str(b)) | Some(Tok::Dollar(b)) => Some(b.clone()),
            _ => None,
        };
        if let Some(i) = s.find(&["LANGUAGE"]) {
            let lang = s.ident(i + 1).or(text(s.tok(i + 1))).unwrap_or_default();
            if !lang.eq_ignore_ascii_case("plpgsql") {
                return;
            }
        }
        let Some(body) = (1..s.len()).find_map(|i| text(s.tok(i))) else { return };
        for piece in plpgsql_statements(lex::tokens(&body)) {
            let p = Span(&piece);
            if p.starts(&["EXECUTE"]) {
                if let Some(sql) = (1..p.len()).find_map(|i| text(p.tok(i))) {
                    for stmt in lex::statements(&sql) {
                        self.statement(&stmt, "in a DO block: ", out);
                    }
                }
            } else {
                self.statement(&piece, "in a DO block: ", out);
            }
        }
    }
}

/// PL/pgSQL's statements: split at semicolons and after the words that open a block or a
/// branch, so `IF … THEN DROP TABLE t;` yields `DROP TABLE t`.
fn plpgsql_statements(toks: Vec<Token>) -> Vec<Vec<Token>> {
    const OPENERS: &[&str] = &["BEGIN", "THEN", "ELSE", "LOOP", "DECLARE", "EXCEPTION"];
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for t in toks {
        let ends = match &t.t {
            Tok::Punct(';') => true,
            Tok::Word(w) => OPENERS.iter().any(|o| w.eq_ignore_ascii_case(o)),
            _ => false,
        };
        if ends {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(t);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Every finding in `sql`, in order, knowing nothing of the database.
pub fn lint(sql: &str) -> Vec<Finding> {
    Linter::default().lint(sql)
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &str) -> Vec<String> {
        lint(sql).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn what_the_same_sql_created_or_proved_is_not_a_finding() {
        let sql = "CREATE TABLE c (id int); CREATE INDEX ci ON c (id); ALTER TABLE c ADD u int NOT NULL; \
                   UPDATE c SET id = 1; ALTER TABLE c RENAME TO coupons; DROP TABLE coupons";
        assert!(rules(sql).is_empty(), "{:?}", rules(sql));
        // Not the same table: another schema's, or one that may already exist.
        assert_eq!(rules("CREATE TABLE archive.o (id int); DROP TABLE public.o"), ["drop-table"]);
        assert_eq!(rules("CREATE TABLE IF NOT EXISTS o (id int); DROP TABLE o"), ["drop-table"]);
        let absent =
            Linter::new(Catalog::from_rows(Vec::new())).lint("CREATE TABLE IF NOT EXISTS o (id int); DROP TABLE o");
        assert!(absent.is_empty());
        // A backfill of a column the SQL added overwrites nothing; IF NOT EXISTS may find an old one.
        assert!(rules("ALTER TABLE p ADD COLUMN g int; UPDATE p SET g = kg * 1000").is_empty());
        assert_eq!(rules("ALTER TABLE p ADD COLUMN IF NOT EXISTS g int; UPDATE p SET g = 0"), ["update"]);
        let recipe = "ALTER TABLE o ADD CONSTRAINT nn CHECK (c IS NOT NULL) NOT VALID; \
                      ALTER TABLE o VALIDATE CONSTRAINT nn; ALTER TABLE o ALTER c SET NOT NULL";
        assert!(rules(recipe).is_empty());
    }

    #[test]
    fn text_inside_literals_comments_and_function_bodies_is_not_a_finding() {
        assert!(rules("ALTER TABLE t ADD COLUMN nickname text; -- DROP TABLE t\nCREATE TABLE x (id int)").is_empty());
        assert!(rules("INSERT INTO notes VALUES ('DROP TABLE users; TRUNCATE x')").is_empty());
        assert!(rules("CREATE FUNCTION f() RETURNS void AS $$ BEGIN DELETE FROM t; END $$ LANGUAGE plpgsql").is_empty());
        assert!(rules(r#"ALTER TABLE "drop table" ADD COLUMN "update" text"#).is_empty());
    }

    #[test]
    fn a_do_block_runs_now_and_is_read() {
        let f = lint("DO $$ BEGIN IF true THEN EXECUTE format('DROP TABLE %I', 'old'); END IF; DELETE FROM t; END $$;");
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.rule.as_str(), f.statement.as_str())).collect();
        assert_eq!(got, [("drop-table", "in a DO block: DROP TABLE %I"), ("delete", "in a DO block: DELETE FROM t")]);
        assert!(lint("DO LANGUAGE plpython3u $$ plpy.execute('DROP TABLE t') $$").is_empty());
    }

    #[test]
    fn findings_name_their_tables_and_carry_the_authors_allowance() {
        let f = lint(
            "-- deploy-guard: allow-destructive the column moved to profiles\n\
                      ALTER TABLE Sales.Orders DROP COLUMN note;\nTRUNCATE a, b;",
        );
        let got: Vec<(&str, Vec<String>, Option<&str>)> =
            f.iter().map(|f| (f.rule.as_str(), f.tables.clone(), f.allowed.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("drop-column", vec!["sales.orders".to_string()], Some("the column moved to profiles")),
                ("truncate", vec!["a".to_string(), "b".to_string()], None),
            ]
        );
        let file = lint("DROP TABLE a;\n-- deploy-guard: allow-destructive-file archived in 2023\nDROP TABLE b;");
        assert!(file.iter().all(|f| f.allowed.as_deref() == Some("archived in 2023")), "{file:?}");
    }

    #[test]
    fn statements_are_shown_without_their_literals() {
        let f = lint("UPDATE users SET password = 'hunter2' WHERE id = 7");
        assert_eq!(f[0].statement, "UPDATE users SET password = '…' WHERE id = 7");
    }
}
