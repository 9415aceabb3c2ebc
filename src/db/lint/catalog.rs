//! The live database's column types, read by the classify step for the tables the SQL needs
//! them of: a type change is judged from the column's old type, and a table created IF NOT
//! EXISTS is new only when the database does not have it.

use anyhow::{Context, Result};

use super::lex::{self, QName, Span};
use super::shape::{alter_table, column_op, created_table, new_type};
use super::types::{self, Type};

/// The live database's column types, for the tables the SQL changes column types of or creates
/// only if they do not exist ([`tables_to_read`], [`catalog_sql`]).
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Read from the database: a table it does not list does not exist.
    read: bool,
    /// schema, table, column, type as `format_type` prints it.
    columns: Vec<[String; 4]>,
}

impl Catalog {
    pub fn from_rows(columns: Vec<[String; 4]>) -> Catalog {
        Catalog { read: true, columns }
    }

    /// What [`catalog_sql`] returned.
    pub fn from_json(v: serde_json::Value) -> Result<Catalog> {
        Ok(Catalog::from_rows(
            serde_json::from_value(v).context("the column types query returned an unexpected shape")?,
        ))
    }

    fn of<'a>(&'a self, t: &'a QName) -> impl Iterator<Item = &'a [String; 4]> + 'a {
        self.columns
            .iter()
            .filter(move |[schema, table, _, _]| *table == t.name && t.schema.as_ref().is_none_or(|s| s == schema))
    }

    pub fn table_exists(&self, t: &QName) -> Option<bool> {
        self.read.then(|| self.of(t).next().is_some())
    }

    /// The column's type, when the catalog has it and, unqualified, every schema agrees.
    pub fn column_type(&self, t: &QName, column: &str) -> Option<Type> {
        let mut found = self.of(t).filter(|c| c[2] == column).map(|c| &c[3]);
        let first = found.next()?;
        if found.any(|other| other != first) {
            return None;
        }
        types::parse_str(first)
    }
}

/// The tables whose columns the classification needs from the live database: those whose
/// column types the SQL changes, and those it creates IF NOT EXISTS.
pub fn tables_to_read(sql: &str) -> Vec<String> {
    let mut out: Vec<String> = lex::statements(sql)
        .iter()
        .filter_map(|toks| {
            let s = Span(toks);
            if let Some((t, true)) = created_table(s) {
                return Some(t.name);
            }
            let (t, actions) = alter_table(s)?;
            actions.into_iter().any(|a| column_op(a).is_some_and(|(_, op)| new_type(op).is_some())).then_some(t.name)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The query of `tables`' column types, which [`Catalog::from_json`] reads; None for no tables.
pub fn catalog_sql(tables: &[String]) -> Option<String> {
    if tables.is_empty() {
        return None;
    }
    let names = tables.iter().map(|t| crate::db::sql::literal(t)).collect::<Vec<_>>().join(", ");
    Some(format!(
        "SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, a.attname, \
         format_type(a.atttypid, a.atttypmod))), '[]') \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped AND c.relname IN ({names});"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_query_names_the_tables_the_sql_needs() {
        let sql = "ALTER TABLE a ALTER c TYPE text; ALTER TABLE b ADD d int; CREATE TABLE IF NOT EXISTS \"C\" (x int)";
        assert_eq!(tables_to_read(sql), ["C", "a"]);
        assert!(catalog_sql(&tables_to_read(sql)).unwrap().ends_with("c.relname IN ('C', 'a');"));
        assert!(catalog_sql(&[]).is_none());
        let c = Catalog::from_json(serde_json::json!([["public", "a", "c", "character varying(100)"]])).unwrap();
        assert_eq!(c.column_type(&QName { schema: None, name: "a".into() }, "c").unwrap().base, "varchar");
    }
}
