//! A schema fingerprint read from the catalogs: "the database is exactly as before the deploy"
//! becomes a comparison. Names and definitions only, no OIDs, so a restored copy matches.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One line per schema object, sorted, and the sha256 of them all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub sha256: String,
    pub items: Vec<String>,
}

impl Fingerprint {
    pub fn from_items(mut items: Vec<String>) -> Fingerprint {
        items.sort();
        items.dedup();
        let mut h = Sha256::new();
        for i in &items {
            h.update(i.as_bytes());
            h.update(b"\n");
        }
        Fingerprint { sha256: hex::encode(h.finalize()), items }
    }

    pub(super) fn from_json(v: serde_json::Value) -> Result<Fingerprint> {
        let items: Vec<String> = serde_json::from_value(v).context("fingerprint query returned no list")?;
        Ok(Fingerprint::from_items(items))
    }

    /// What `other` has that `self` lacks (`+ …`) and the reverse (`- …`): "what changed".
    pub fn diff(&self, other: &Fingerprint) -> Vec<String> {
        let mine: std::collections::BTreeSet<&String> = self.items.iter().collect();
        let theirs: std::collections::BTreeSet<&String> = other.items.iter().collect();
        let mut out: Vec<String> = theirs.difference(&mine).map(|i| format!("+ {i}")).collect();
        out.extend(mine.difference(&theirs).map(|i| format!("- {i}")));
        out
    }

    pub fn short(&self) -> &str {
        &self.sha256[..12.min(self.sha256.len())]
    }
}

/// One JSON array of text items. System schemas and extension members are left out.
pub(super) const SQL: &str = r#"
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema')
    AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp_%'
),
ext AS (SELECT objid FROM pg_depend WHERE deptype = 'e'),
items AS (
  SELECT 'schema ' || nspname AS item FROM ns
  UNION ALL
  SELECT 'extension ' || extname FROM pg_extension
  UNION ALL
  SELECT format('relation %I.%I kind=%s', ns.nspname, c.relname, c.relkind::text)
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
  WHERE c.relkind IN ('r','p','v','m','S','f','c') AND c.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT format('column %I.%I.%I %s%s%s%s', ns.nspname, c.relname, a.attname,
                format_type(a.atttypid, a.atttypmod),
                CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                CASE WHEN d.adbin IS NOT NULL THEN ' default ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END,
                CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END)
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m','f','c')
    AND c.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT format('index %I.%I %s', ns.nspname, c.relname, pg_get_indexdef(i.indexrelid))
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('constraint %I.%I.%I %s', ns.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid))
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('sequence %I.%I %s start=%s inc=%s min=%s max=%s cycle=%s', s.schemaname, s.sequencename,
                s.data_type, s.start_value, s.increment_by, s.min_value, s.max_value, s.cycle)
  FROM pg_sequences s WHERE s.schemaname IN (SELECT nspname FROM ns)
  UNION ALL
  SELECT format('view %I.%I md5=%s', ns.nspname, c.relname, md5(pg_get_viewdef(c.oid)))
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v','m')
  UNION ALL
  SELECT format('function %I.%I(%s) md5=%s', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
                md5(pg_get_functiondef(p.oid)))
  FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
  WHERE p.prokind IN ('f','p','w') AND p.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT format('trigger %I.%I %s', ns.nspname, c.relname, pg_get_triggerdef(t.oid))
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
  WHERE NOT t.tgisinternal
  UNION ALL
  SELECT format('enum %I.%I %s', ns.nspname, t.typname,
                (SELECT string_agg(quote_literal(e.enumlabel), ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
  FROM pg_type t JOIN ns ON ns.oid = t.typnamespace WHERE t.typtype = 'e' AND t.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT format('domain %I.%I %s%s', ns.nspname, t.typname, format_type(t.typbasetype, t.typtypmod),
                CASE WHEN t.typnotnull THEN ' not null' ELSE '' END)
  FROM pg_type t JOIN ns ON ns.oid = t.typnamespace WHERE t.typtype = 'd' AND t.oid NOT IN (SELECT objid FROM ext)
  UNION ALL
  SELECT format('domain-constraint %I.%I.%I %s', ns.nspname, t.typname, con.conname, pg_get_constraintdef(con.oid))
  FROM pg_constraint con JOIN pg_type t ON t.oid = con.contypid JOIN ns ON ns.oid = t.typnamespace
)
SELECT coalesce(json_agg(item ORDER BY item), '[]'::json) FROM items;
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_added_and_removed() {
        let a = Fingerprint::from_items(vec!["b".into(), "a".into()]);
        let b = Fingerprint::from_items(vec!["a".into(), "c".into()]);
        assert_eq!(a.diff(&b), vec!["+ c", "- b"]);
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(a, Fingerprint::from_items(vec!["a".into(), "b".into(), "a".into()]));
    }
}
