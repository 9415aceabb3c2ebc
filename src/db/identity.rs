//! Which schema objects are the same object under another name: the catalog's own identities
//! (a table's oid, a column's attribute number within it, an index's or constraint's oid), read
//! before the migrations and again after. A rename keeps them; a drop and an add do not. Only
//! comparable within one database: a restored copy has new oids, and then nothing is a rename.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Names by catalog identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identities {
    /// Table oid → `schema.table` (quoted as the fingerprint quotes it).
    pub tables: BTreeMap<u32, String>,
    /// `oid.attnum` → column name (unquoted).
    pub columns: BTreeMap<String, String>,
    /// Index oid → `schema.index`.
    pub indexes: BTreeMap<u32, String>,
    /// Constraint oid → `schema.table.constraint`.
    pub constraints: BTreeMap<u32, String>,
}

/// One JSON object of the four maps. System schemas and extension members are left out.
pub(super) const SQL: &str = r#"
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema')
    AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp_%'
),
ext AS (SELECT objid FROM pg_depend WHERE deptype = 'e'),
rel AS (
  SELECT c.oid, c.relkind, c.relname, ns.nspname FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
  WHERE c.oid NOT IN (SELECT objid FROM ext)
)
SELECT json_build_object(
  'tables', (SELECT coalesce(json_object_agg(oid::text, format('%I.%I', nspname, relname)), '{}')
             FROM rel WHERE relkind IN ('r', 'p')),
  'columns', (SELECT coalesce(json_object_agg(a.attrelid::text || '.' || a.attnum, a.attname), '{}')
              FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
              WHERE rel.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped),
  'indexes', (SELECT coalesce(json_object_agg(oid::text, format('%I.%I', nspname, relname)), '{}')
              FROM rel WHERE relkind IN ('i', 'I')),
  'constraints', (SELECT coalesce(json_object_agg(con.oid::text, format('%I.%I.%I', rel.nspname, rel.relname,
                                                                       con.conname)), '{}')
                  FROM pg_constraint con JOIN rel ON rel.oid = con.conrelid)
);
"#;

/// What was renamed between two readings of one database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Renames {
    /// `schema.table` then → now.
    pub tables: BTreeMap<String, String>,
    /// (`schema.table` then, column then) → column now.
    pub columns: BTreeMap<(String, String), String>,
    /// Sentences for the report, one per rename of any kind.
    pub said: Vec<String>,
}

impl Renames {
    pub fn between(before: &Identities, now: &Identities) -> Renames {
        let mut r = Renames::default();
        for (oid, then) in &before.tables {
            if let Some(n) = now.tables.get(oid).filter(|n| *n != then) {
                r.tables.insert(then.clone(), n.clone());
                r.said.push(format!("renamed table {then} to {n}"));
            }
        }
        for (id, then) in &before.columns {
            let Some(n) = now.columns.get(id).filter(|n| *n != then) else { continue };
            let oid = id.split('.').next().and_then(|o| o.parse::<u32>().ok());
            let Some(table) = oid.and_then(|o| before.tables.get(&o)) else { continue };
            r.columns.insert((table.clone(), then.clone()), n.clone());
            r.said.push(format!("renamed column {table}.{then} to {n}"));
        }
        for (kind, b, n) in
            [("index", &before.indexes, &now.indexes), ("constraint", &before.constraints, &now.constraints)]
        {
            for (oid, then) in b {
                if let Some(now) = n.get(oid).filter(|n| *n != then) {
                    r.said.push(format!("renamed {kind} {then} to {now}"));
                }
            }
        }
        r
    }

    pub fn is_empty(&self) -> bool {
        self.said.is_empty()
    }

    /// The name `table` (as it was) has now.
    pub fn table<'a>(&'a self, table: &'a str) -> &'a str {
        self.tables.get(table).map_or(table, String::as_str)
    }

    /// The (table, column) that `table.column` (as they were) is now.
    pub fn column(&self, table: &str, column: &str) -> (String, String) {
        let c = self.columns.get(&(table.to_string(), column.to_string())).map_or(column, String::as_str);
        (self.table(table).to_string(), c.to_string())
    }

    /// Where the rows of `table`'s `columns` (as they were, quoted as in a dump) are read now.
    pub fn now_at(&self, table: &str, columns: &[String]) -> (String, Vec<String>) {
        let cols = columns.iter().map(|c| super::ident(&self.column(table, &super::unquote(c)).1)).collect();
        (self.table(table).to_string(), cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(tables: &[(u32, &str)], columns: &[(&str, &str)], indexes: &[(u32, &str)]) -> Identities {
        Identities {
            tables: tables.iter().map(|(o, n)| (*o, n.to_string())).collect(),
            columns: columns.iter().map(|(o, n)| (o.to_string(), n.to_string())).collect(),
            indexes: indexes.iter().map(|(o, n)| (*o, n.to_string())).collect(),
            constraints: BTreeMap::new(),
        }
    }

    #[test]
    fn same_identity_under_a_new_name_is_a_rename_a_new_identity_is_not() {
        let before = ids(
            &[(10, "public.users"), (11, "public.gone")],
            &[("10.1", "id"), ("10.2", "name")],
            &[(20, "public.users_name_idx")],
        );
        let now = ids(
            &[(10, "public.people")],
            &[("10.1", "id"), ("10.2", "full_name"), ("10.3", "name")],
            &[(20, "public.people_full_name_idx")],
        );
        let r = Renames::between(&before, &now);
        assert_eq!(r.table("public.users"), "public.people");
        assert_eq!(r.table("public.gone"), "public.gone");
        assert_eq!(r.column("public.users", "name"), ("public.people".into(), "full_name".into()));
        assert_eq!(r.column("public.users", "id"), ("public.people".into(), "id".into()));
        assert_eq!(
            r.said,
            vec![
                "renamed table public.users to public.people",
                "renamed column public.users.name to full_name",
                "renamed index public.users_name_idx to public.people_full_name_idx",
            ]
        );
        assert!(Renames::between(&before, &before).is_empty());
    }
}
