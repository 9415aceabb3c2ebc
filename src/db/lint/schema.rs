//! What the SQL read so far says about the tables: those it created, the column types it set,
//! the NOT NULL it proved. Statements are judged knowing it.

use std::collections::{HashMap, HashSet};

use super::catalog::Catalog;
use super::lex::{QName, Span};
use super::shape::{added_column, added_constraint, alter_table, column_op, created_table, new_type, targets};
use super::types::Type;

/// What the SQL read so far says about the tables.
#[derive(Debug, Default)]
pub struct Schema {
    pub catalog: Catalog,
    /// Tables this SQL created.
    pub created: HashSet<QName>,
    /// Column types this SQL set (ADD COLUMN, ALTER … TYPE).
    typed: HashMap<(QName, String), Type>,
    /// Columns this SQL added to existing tables.
    pub added: HashSet<(QName, String)>,
    /// `CHECK (c IS NOT NULL) NOT VALID` constraints by name, not validated yet.
    not_null_checks: HashMap<String, (QName, String)>,
    /// Columns a valid `CHECK (c IS NOT NULL)` covers: SET NOT NULL then skips its scan (12+).
    pub proven_not_null: HashSet<(QName, String)>,
}

impl Schema {
    pub fn new(catalog: Catalog) -> Schema {
        Schema { catalog, ..Schema::default() }
    }

    pub fn column_type(&self, table: &QName, column: &str) -> Option<Type> {
        self.typed
            .get(&(table.clone(), column.to_string()))
            .cloned()
            .or_else(|| self.catalog.column_type(table, column))
    }

    /// Learns from a statement that has been classified.
    pub fn apply(&mut self, s: Span) {
        if let Some((t, if_not_exists)) = created_table(s) {
            if !if_not_exists || self.catalog.table_exists(&t) == Some(false) {
                self.created.insert(t);
            }
        }
        if s.starts(&["DROP", "TABLE"]) {
            for t in targets(s) {
                self.created.remove(&t);
            }
        }
        let Some((t, actions)) = alter_table(s) else { return };
        for a in actions {
            if a.starts(&["RENAME", "TO"]) {
                if let Some((to, _)) = a.name(2) {
                    let to = QName { schema: t.schema.clone(), ..to };
                    if self.created.remove(&t) {
                        self.created.insert(to);
                    } else {
                        self.created.remove(&to);
                    }
                }
            } else if let Some((c, ty, _)) = added_column(a) {
                // With IF NOT EXISTS the column may be an old one, holding values of another type.
                if !a.has(&["IF", "NOT", "EXISTS"]) {
                    self.added.insert((t.clone(), c.clone()));
                    self.typed.insert((t.clone(), c), ty);
                }
            } else if let Some((c, op)) = column_op(a) {
                if let Some((ty, _)) = new_type(op) {
                    self.typed.insert((t.clone(), c), ty);
                }
            } else if let Some((name, c)) = added_constraint(a) {
                // CHECK ( c IS NOT NULL )
                if c.starts(&["CHECK"]) && c.punct(1, '(') && c.seq(3, &["IS", "NOT", "NULL"]) && c.punct(6, ')') {
                    if let Some(col) = c.ident(2) {
                        if !c.has(&["NOT", "VALID"]) {
                            self.proven_not_null.insert((t.clone(), col));
                        } else if let Some(n) = name {
                            self.not_null_checks.insert(n, (t.clone(), col));
                        }
                    }
                }
            } else if a.starts(&["VALIDATE", "CONSTRAINT"]) {
                if let Some(checked) = a.ident(2).and_then(|n| self.not_null_checks.remove(&n)) {
                    self.proven_not_null.insert(checked);
                }
            }
        }
    }
}
