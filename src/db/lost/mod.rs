//! The writes a restore loses: after the backup is swapped in, the kept (broken) database still
//! holds every write made after the backup's snapshot. For the pre-existing tables that saw
//! writes, both copies stream each row's key and a hash of the row, ordered by key (byte order,
//! so both sides sort alike), and the two streams are merged as they arrive. Only the rows that
//! differ become statements of the replay file: a delete for a row deleted, an upsert for a row
//! inserted or updated (built by the server from the kept row, read by key in batches). When
//! very many rows differ, the kept rows are streamed again each with its upsert (no lookups).
//! A table with no usable key is compared by whole rows, as a multiset: each distinct row with
//! how many times it appears, and the replay sets each changed row's count.
//!
//! Where the migrations changed rows too, their changes are not the app's: [`apart`] tells them
//! apart against a copy of the backup with the release's migrations run on it.
//! The sequences the restore set back are moved up again, so the next insert takes no id a
//! replayed row (or anyone after the backup) already has.

pub mod apart;
mod merge;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{ident, literal, Postgres, Renames};
use merge::{Merge, Side};

/// How many differing rows are looked up by key at a time.
const BATCH: usize = 5000;

/// Above this many differing rows, reading every kept row's statement is cheaper than looking
/// the differing ones up (measured: ~40 µs a row looked up, ~5 µs a row streamed).
const MAX_KEYED: usize = 20_000;

/// What one table lost.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLoss {
    pub table: String,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// How its rows were matched: its primary key, a unique index, or whole rows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
    /// Rows the migrations themselves changed there, told apart and left out of the replay.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub migrations_own: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TableLoss {
    pub fn total(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

/// How to compare one table between the live (restored) database and the kept one: the columns
/// both have with the same type (under the kept database's names where the migrations renamed
/// them), and the key rows are matched by; no key: whole rows.
#[derive(Clone, Debug)]
pub struct Shape {
    /// `schema.table` in the live database.
    pub table: String,
    /// Its name in the kept database (and in a copy the migrations ran on).
    pub kept_table: String,
    pub columns: Vec<String>,
    pub kept_columns: Vec<String>,
    pub types: Vec<String>,
    /// Key columns (live names), empty when rows are matched whole.
    pub key: Vec<String>,
    pub key_types: Vec<String>,
    /// What the key is, for the report: `primary key`, `unique index NAME`, `whole rows`.
    pub by: String,
}

/// A table's columns with their types, in order (generated columns left out: they are computed),
/// and its candidate keys: the primary key first, then each unique, non-partial index on plain
/// NOT NULL columns; `None` when the table does not exist.
type Columns = (Vec<(String, String)>, Vec<(String, Vec<String>)>);

async fn columns(pg: &Postgres, db: &str, table: &str) -> Result<Option<Columns>> {
    let sql = format!(
        "SELECT json_build_array(\
           (SELECT coalesce(json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum), '[]') \
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), \
           (SELECT coalesce(json_agg(json_build_array(CASE WHEN i.indisprimary THEN 'primary key' \
                                                     ELSE 'unique index ' || i.indexrelid::regclass::text END, \
              (SELECT json_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum)) \
               FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey))) \
              ORDER BY i.indisprimary DESC, i.indexrelid), '[]') \
            FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL \
              AND i.indexprs IS NULL AND i.indisvalid AND NOT (0 = ANY(i.indkey::int2[])) \
              AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid \
                              AND a.attnum = ANY(i.indkey) AND NOT a.attnotnull))) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE quote_ident(n.nspname) || '.' || quote_ident(c.relname) = {};",
        literal(table)
    );
    let text = pg.query(db, &sql).await?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let v: Columns = serde_json::from_str(text.trim())?;
    Ok(Some(v))
}

/// The ascending sequences of `db` (`schema.name` as quoted by `quote_ident`) and their last
/// value (`None`: never used).
async fn sequences(pg: &Postgres, db: &str) -> Result<BTreeMap<String, Option<i64>>> {
    let sql = "SELECT coalesce(json_object_agg(quote_ident(schemaname) || '.' || quote_ident(sequencename), \
               last_value), '{}') FROM pg_sequences WHERE increment_by > 0;";
    let text = pg.query(db, sql).await?;
    serde_json::from_str(text.trim()).with_context(|| format!("reading the sequences of {db}"))
}

impl Postgres {
    /// How to compare `table` (as named in `live`) between `live` and `kept`, where the
    /// migrations made `renames`; `Err` says why it cannot be compared at all.
    pub async fn loss_shape(&self, live: &str, kept: &str, table: &str, renames: &Renames) -> Result<Shape> {
        let kept_table = renames.table(table).to_string();
        let (Some((live_cols, live_keys)), Some((kept_cols, kept_keys))) =
            (columns(self, live, table).await?, columns(self, kept, &kept_table).await?)
        else {
            bail!("not in both databases");
        };
        // The columns both have with the same type, the kept one under its new name if renamed.
        let kept_name = |c: &str| renames.column(table, c).1;
        let shared: Vec<(String, String, String)> = live_cols
            .iter()
            .filter_map(|(c, ty)| {
                let k = kept_name(c);
                kept_cols.iter().any(|(kc, kt)| *kc == k && kt == ty).then(|| (c.clone(), k, ty.clone()))
            })
            .collect();
        if shared.is_empty() {
            bail!("no column kept its name and type");
        }
        // The first key of the live table that the kept one has too, on shared columns.
        let key = live_keys.iter().find(|(_, cols)| {
            let renamed: Vec<String> = cols.iter().map(|c| kept_name(c)).collect();
            cols.iter().all(|c| shared.iter().any(|(s, _, _)| s == c)) && kept_keys.iter().any(|(_, k)| *k == renamed)
        });
        let (by, key) = match key {
            Some((by, cols)) => (by.clone(), cols.clone()),
            None => ("whole rows (no usable key)".to_string(), Vec::new()),
        };
        let type_of =
            |c: &String| shared.iter().find(|(s, _, _)| s == c).map(|(_, _, t)| t.clone()).unwrap_or_default();
        Ok(Shape {
            table: table.to_string(),
            kept_table,
            key_types: key.iter().map(type_of).collect(),
            key,
            columns: shared.iter().map(|(c, _, _)| c.clone()).collect(),
            kept_columns: shared.iter().map(|(_, k, _)| k.clone()).collect(),
            types: shared.into_iter().map(|(_, _, t)| t).collect(),
            by,
        })
    }

    /// Statements that move each ascending sequence of `live` up to where it stood in `kept`,
    /// where the restore set it back; idempotent, and never moving a sequence down.
    pub async fn sequence_catchup(&self, live: &str, kept: &str) -> Result<Vec<String>> {
        let (now, was) = (sequences(self, live).await?, sequences(self, kept).await?);
        Ok(was
            .into_iter()
            .filter_map(|(seq, v)| {
                let v = v?;
                let behind = now.get(&seq)?.is_none_or(|n| n < v);
                behind.then(|| {
                    format!("SELECT setval({}, {v}) FROM {seq} WHERE NOT is_called OR last_value < {v};", literal(&seq))
                })
            })
            .collect())
    }

    /// Statements that move each sequence owned by a column of `table` (serial or identity) past
    /// the largest value the table holds once replayed: a replayed row keeps the id it was given,
    /// whatever the sequence says, and the next insert must not take it.
    pub async fn sequences_past_rows(&self, live: &str, table: &str) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT coalesce(json_agg(json_build_array(quote_ident(sn.nspname) || '.' || quote_ident(s.relname), \
             a.attname)), '[]') FROM pg_depend d \
             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace \
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
             WHERE d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
               AND quote_ident(tn.nspname) || '.' || quote_ident(t.relname) = {};",
            literal(table)
        );
        let owned: Vec<(String, String)> = serde_json::from_str(self.query(live, &sql).await?.trim())
            .with_context(|| format!("reading the sequences of {table}"))?;
        Ok(owned
            .into_iter()
            .map(|(seq, col)| {
                format!(
                    "SELECT setval({}, m) FROM (SELECT max({})::bigint AS m FROM {table}) x, {seq} s \
                     WHERE m IS NOT NULL AND (NOT s.is_called OR s.last_value < m);",
                    literal(&seq),
                    ident(&col)
                )
            })
            .collect())
    }

    /// Compares `shape` between `live` (restored) and `kept` (the broken database); writes the
    /// statements that bring the live table to the kept one's rows into `out`.
    pub async fn table_loss(
        &self,
        live: &str,
        kept: &str,
        shape: &Shape,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<TableLoss> {
        if shape.key.is_empty() {
            return self.table_loss_whole_rows(live, kept, shape, out).await;
        }
        let mut merge = Merge::start(self, (live, Side::Live), (kept, Side::Kept), shape, false);
        let mut loss = shape.loss();
        let (mut upsert, mut delete) = (Vec::new(), Vec::new());
        while let Some(diff) = merge.next().await? {
            match (diff.kept, diff.live) {
                (Some(k), None) => {
                    loss.inserted += 1;
                    upsert.push(k.key_columns);
                }
                (Some(k), Some(_)) => {
                    loss.updated += 1;
                    upsert.push(k.key_columns);
                }
                (None, Some(l)) => {
                    loss.deleted += 1;
                    delete.push(l.key_columns);
                }
                (None, None) => {}
            }
            if loss.total() > MAX_KEYED as u64 {
                // Looking so many rows up one by one costs more than reading every statement.
                merge.abort();
                return self.table_loss_streamed(live, kept, shape, out).await;
            }
        }
        merge.finish().await?;
        // Deletes first: a unique value they free can then be taken by an upsert.
        for key in &delete {
            out.write_all(format!("{};\n", shape.delete_sql(key)).as_bytes()).await?;
        }
        for keys in upsert.chunks(BATCH) {
            self.write_upserts(kept, shape, keys, out).await?;
        }
        Ok(loss)
    }

    /// [`Self::table_loss`] for many differences: the kept copy's rows stream each with its
    /// upsert statement built by the server, and the statements of the rows that differ are
    /// written as the merge finds them.
    pub async fn table_loss_streamed(
        &self,
        live: &str,
        kept: &str,
        shape: &Shape,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<TableLoss> {
        let mut merge = Merge::start(self, (live, Side::Live), (kept, Side::Kept), shape, true);
        let mut loss = shape.loss();
        while let Some(diff) = merge.next().await? {
            let statement = match (diff.kept, diff.live) {
                (Some(k), live) => {
                    if live.is_some() {
                        loss.updated += 1;
                    } else {
                        loss.inserted += 1;
                    }
                    k.statement.context("a kept row without its statement")?
                }
                (None, Some(l)) => {
                    loss.deleted += 1;
                    shape.delete_sql(&l.key_columns)
                }
                (None, None) => continue,
            };
            out.write_all(format!("{statement};\n").as_bytes()).await?;
        }
        merge.finish().await?;
        Ok(loss)
    }

    /// A table without a usable key: each distinct row's count in both copies; a row whose
    /// count differs gets the statements that set its count to the kept one's.
    async fn table_loss_whole_rows(
        &self,
        live: &str,
        kept: &str,
        shape: &Shape,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<TableLoss> {
        let mut merge = Merge::start(self, (live, Side::Live), (kept, Side::Kept), shape, true);
        let mut loss = shape.loss();
        while let Some(diff) = merge.next().await? {
            let (was, now) = (diff.live_count(), diff.kept_count());
            loss.inserted += now.saturating_sub(was);
            loss.deleted += was.saturating_sub(now);
            out.write_all(shape.set_count_sql(diff.values()?, now).as_bytes()).await?;
        }
        merge.finish().await?;
        Ok(loss)
    }

    /// Writes the upserts of the kept rows with these keys, read by key.
    async fn write_upserts(
        &self,
        kept: &str,
        shape: &Shape,
        keys: &[Vec<String>],
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<()> {
        let values: Vec<String> = keys
            .iter()
            .map(|key| {
                let typed: Vec<String> =
                    key.iter().zip(&shape.key_types).map(|(v, t)| format!("{}::{t}", literal(v))).collect();
                format!("({})", typed.join(", "))
            })
            .collect();
        let key_list = shape.kept_key().iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        // Through the key's index: a batch costs the same whatever the table's size.
        let sql = format!(
            "SET enable_seqscan = off;\nCOPY (SELECT {} FROM {} WHERE ({key_list}) IN (VALUES {}) ORDER BY {key_list}) TO STDOUT;\n",
            shape.upsert_sql(),
            shape.kept_table,
            values.join(", "),
        );
        let text = self
            .query(kept, &sql)
            .await
            .with_context(|| format!("reading the changed rows of {} in {kept}", shape.kept_table))?;
        for line in text.lines() {
            out.write_all(format!("{};\n", copy_unescape(line)).as_bytes()).await?;
        }
        Ok(())
    }
}

impl Shape {
    fn loss(&self) -> TableLoss {
        TableLoss { table: self.table.clone(), by: self.by.clone(), ..Default::default() }
    }

    /// The key columns under the kept database's names.
    fn kept_key(&self) -> Vec<&String> {
        self.key
            .iter()
            .filter_map(|k| self.columns.iter().position(|c| c == k).map(|i| &self.kept_columns[i]))
            .collect()
    }

    /// The server-side expression that turns a kept row into its idempotent upsert into the live
    /// table.
    pub fn upsert_sql(&self) -> String {
        let q = |c: &String| ident(c);
        let values: Vec<String> = self.kept_columns.iter().map(|c| format!("quote_nullable({})", q(c))).collect();
        let updates: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.key.contains(c))
            .map(|c| format!("{0} = EXCLUDED.{0}", q(c)))
            .collect();
        let action =
            if updates.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", updates.join(", ")) };
        // OVERRIDING SYSTEM VALUE: a row keeps its id in a GENERATED ALWAYS identity column.
        format!(
            "format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES (%s) ON CONFLICT (%s) DO {}', {}, {}, \
             concat_ws(', ', {}), {})",
            action.replace('\'', "''"),
            literal(&self.table),
            literal(&self.columns.iter().map(q).collect::<Vec<_>>().join(", ")),
            values.join(", "),
            literal(&self.key.iter().map(q).collect::<Vec<_>>().join(", ")),
        )
    }

    /// The server-side expression that gives a row's values as typed SQL literals
    /// (`'a'::text, NULL::integer`), read from `side`'s column names.
    fn typed_values_sql(&self, side: Side) -> String {
        let names = match side {
            Side::Live => &self.columns,
            Side::Kept => &self.kept_columns,
        };
        let parts: Vec<String> = names
            .iter()
            .zip(&self.types)
            .map(|(c, t)| format!("quote_nullable({}) || {}", ident(c), literal(&format!("::{t}"))))
            .collect();
        format!("concat_ws(', ', {})", parts.join(", "))
    }

    /// Statements that make the live table hold exactly `n` copies of the row with these typed
    /// values: extra copies deleted, missing ones inserted. Idempotent.
    pub fn set_count_sql(&self, typed: &str, n: u64) -> String {
        let cols = self.columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        let t = &self.table;
        let matches = format!("ROW({cols})::text = ROW({typed})::text");
        format!(
            "DELETE FROM {t} WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM {t} WHERE {matches} OFFSET {n});\n\
             INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {typed} \
             FROM generate_series(1, {n} - (SELECT count(*) FROM {t} WHERE {matches}));\n"
        )
    }

    /// The statement that deletes the row with this key (its columns' text).
    fn delete_sql(&self, key: &[String]) -> String {
        let conds: Vec<String> =
            self.key.iter().zip(key).map(|(c, v)| format!("{} = {}", ident(c), literal(v))).collect();
        format!("DELETE FROM {} WHERE {}", self.table, conds.join(" AND "))
    }
}

/// COPY text format's escapes undone.
pub fn copy_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_text_unescapes() {
        assert_eq!(super::copy_unescape(r"a\tb\nc\\d"), "a\tb\nc\\d");
    }
}
