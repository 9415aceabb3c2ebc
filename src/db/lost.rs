//! The writes a restore loses: after the backup is swapped in, the kept (broken) database still
//! holds every write made after the backup's snapshot. For the pre-existing tables that saw
//! writes, both copies stream only each row's key and a hash of the row, ordered by key (byte
//! order, so both sides sort alike), and the two streams are merged as they arrive. Only the rows
//! that differ become statements of the replay file: a delete for a row deleted, an upsert for a
//! row inserted or updated (built by the server from the kept row, read by primary key in
//! batches). When very many rows differ, the kept rows are streamed again each with its upsert
//! (no lookups). Memory stays flat: at most [`MAX_KEYED`] keys are held.
//! The sequences the restore set back are moved up again, so the next insert takes no id a
//! replayed row (or anyone after the backup) already has.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::{ident, literal, Postgres};

/// How many differing rows are looked up by primary key at a time.
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
}

impl TableLoss {
    pub fn total(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

/// A table's primary key (names and types) and the columns both copies share with the same type.
pub struct Shape {
    pub table: String,
    pub key: Vec<String>,
    pub key_types: Vec<String>,
    pub columns: Vec<String>,
}

/// Columns of `table` (`schema.table` as quoted by `quote_ident`) with their types, in order,
/// and its primary key columns; `None` when the table does not exist.
async fn columns(pg: &Postgres, db: &str, table: &str) -> Result<Option<(Vec<(String, String)>, Vec<String>)>> {
    let sql = format!(
        "SELECT json_build_array(\
           (SELECT coalesce(json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum), '[]') \
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
           (SELECT coalesce(json_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum)), '[]') \
            FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
            WHERE i.indrelid = c.oid AND i.indisprimary)) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE quote_ident(n.nspname) || '.' || quote_ident(c.relname) = {};",
        literal(table)
    );
    let text = pg.query(db, &sql).await?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let v: (Vec<(String, String)>, Vec<String>) = serde_json::from_str(text.trim())?;
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
    /// How to compare `table` between `live` and `kept`: its key and shared columns; `Err` says
    /// why it cannot be compared (no primary key, gone, key changed).
    pub async fn loss_shape(&self, live: &str, kept: &str, table: &str) -> Result<Shape> {
        let (Some((live_cols, live_key)), Some((kept_cols, kept_key))) =
            (columns(self, live, table).await?, columns(self, kept, table).await?)
        else {
            bail!("not in both databases");
        };
        if live_key.is_empty() {
            bail!("no primary key");
        }
        if live_key != kept_key {
            bail!("its primary key changed");
        }
        let shared: Vec<&(String, String)> = live_cols.iter().filter(|c| kept_cols.contains(c)).collect();
        let key_types: Vec<String> =
            live_key.iter().filter_map(|k| shared.iter().find(|(n, _)| n == k).map(|(_, t)| t.clone())).collect();
        if key_types.len() != live_key.len() {
            bail!("its key columns changed type");
        }
        let columns = shared.into_iter().map(|(n, _)| n.clone()).collect();
        Ok(Shape { table: table.to_string(), key: live_key, key_types, columns })
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

    /// Compares `shape` between `live` (restored) and `kept` (the broken database); writes the
    /// statements that bring the live table to the kept one's rows into `out`: first from keys
    /// and hashes alone, and when more than [`MAX_KEYED`] rows differ, by [`Self::table_loss_whole`].
    pub async fn table_loss(
        &self,
        live: &str,
        kept: &str,
        shape: &Shape,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<TableLoss> {
        let mut merge = Merge::start(self, live, kept, shape, false);
        let mut loss = TableLoss { table: shape.table.clone(), ..Default::default() };
        let (mut upsert, mut delete) = (Vec::new(), Vec::new());
        while let Some(diff) = merge.next().await? {
            match diff {
                Diff::Inserted(row) => {
                    loss.inserted += 1;
                    upsert.push(row.key_columns);
                }
                Diff::Updated(row) => {
                    loss.updated += 1;
                    upsert.push(row.key_columns);
                }
                Diff::Deleted(row) => {
                    loss.deleted += 1;
                    delete.push(row.key_columns);
                }
            }
            if loss.total() > MAX_KEYED as u64 {
                // Looking so many rows up one by one costs more than reading every statement.
                merge.abort();
                return self.table_loss_whole(live, kept, shape, out).await;
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
    pub async fn table_loss_whole(
        &self,
        live: &str,
        kept: &str,
        shape: &Shape,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<TableLoss> {
        let mut merge = Merge::start(self, live, kept, shape, true);
        let mut loss = TableLoss { table: shape.table.clone(), ..Default::default() };
        while let Some(diff) = merge.next().await? {
            let statement = match diff {
                Diff::Inserted(row) => {
                    loss.inserted += 1;
                    row.statement
                }
                Diff::Updated(row) => {
                    loss.updated += 1;
                    row.statement
                }
                Diff::Deleted(row) => {
                    loss.deleted += 1;
                    Some(shape.delete_sql(&row.key_columns))
                }
            };
            out.write_all(format!("{};\n", statement.context("a kept row without its statement")?).as_bytes()).await?;
        }
        merge.finish().await?;
        Ok(loss)
    }

    /// Streams `key<TAB>hash<TAB>key column…[<TAB>upsert]` lines of `db`'s table, ordered by key
    /// in byte order: `key` is the key as a row's text, `hash` a 64-bit hash of the shared columns.
    fn keyed_hashes(&self, db: &str, shape: &Shape, statement: bool) -> Stream {
        let keys: Vec<String> = shape.key.iter().map(|c| ident(c)).collect();
        let all: Vec<String> = shape.columns.iter().map(|c| ident(c)).collect();
        let mut fields: Vec<String> = keys.iter().map(|c| format!("{c}::text")).collect();
        if statement {
            fields.push(shape.upsert_sql());
        }
        let sql = format!(
            "COPY (SELECT row({})::text COLLATE \"C\" AS k, hashtextextended(row({})::text, 0), {} FROM {} ORDER BY 1) TO STDOUT;\n",
            keys.join(", "),
            all.join(", "),
            fields.join(", "),
            shape.table
        );
        let cmd = self.query_cmd(db);
        let exec = self.executor().clone();
        let (mut w, r) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(async move {
            let mut input = sql.as_bytes();
            let exit = exec.run(&cmd, Some(&mut input), &mut w).await;
            let _ = w.shutdown().await;
            exit
        });
        Stream { lines: BufReader::new(r).lines(), task, db: db.to_string(), statement }
    }

    /// Writes the upserts of the kept rows with these keys, read by primary key.
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
        let key_list = shape.key.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        // Through the primary key's index: a batch costs the same whatever the table's size.
        let sql = format!(
            "SET enable_seqscan = off;\nCOPY (SELECT {} FROM {} WHERE ({key_list}) IN (VALUES {}) ORDER BY {key_list}) TO STDOUT;\n",
            shape.upsert_sql(),
            shape.table,
            values.join(", "),
        );
        let text = self
            .query(kept, &sql)
            .await
            .with_context(|| format!("reading the changed rows of {} in {kept}", shape.table))?;
        for line in text.lines() {
            out.write_all(format!("{};\n", copy_unescape(line)).as_bytes()).await?;
        }
        Ok(())
    }
}

/// One side's rows, as they arrive.
struct Stream {
    lines: tokio::io::Lines<BufReader<tokio::io::DuplexStream>>,
    task: tokio::task::JoinHandle<Result<crate::exec::Exit>>,
    db: String,
    statement: bool,
}

impl Stream {
    async fn next(&mut self) -> Result<Option<Row>> {
        let Some(line) = self.lines.next_line().await? else { return Ok(None) };
        let bad = || anyhow::anyhow!("unexpected row from COPY in {}: {:.200}", self.db, line);
        let mut f = line.split('\t');
        let (Some(k), Some(h)) = (f.next(), f.next()) else { return Err(bad()) };
        let mut key_columns: Vec<String> = f.map(copy_unescape).collect();
        let statement = if self.statement { key_columns.pop() } else { None };
        if key_columns.is_empty() {
            return Err(bad());
        }
        Ok(Some(Row { key: copy_unescape(k), hash: h.to_string(), key_columns, statement }))
    }
}

/// The kept and live copies' rows, merged by key.
struct Merge {
    kept: Stream,
    live: Stream,
    k: Option<Row>,
    l: Option<Row>,
    started: bool,
    table: String,
}

/// A row that differs: in the kept copy only, in both but changed, in the live copy only.
enum Diff {
    Inserted(Row),
    Updated(Row),
    Deleted(Row),
}

impl Merge {
    /// `statement`: the kept rows come with their upsert statements.
    fn start(pg: &Postgres, live: &str, kept: &str, shape: &Shape, statement: bool) -> Merge {
        Merge {
            kept: pg.keyed_hashes(kept, shape, statement),
            live: pg.keyed_hashes(live, shape, false),
            k: None,
            l: None,
            started: false,
            table: shape.table.clone(),
        }
    }

    async fn next(&mut self) -> Result<Option<Diff>> {
        if !self.started {
            self.started = true;
            self.k = self.kept.next().await?;
            self.l = self.live.next().await?;
        }
        loop {
            let ord = match (&self.k, &self.l) {
                (None, None) => return Ok(None),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.key.as_bytes().cmp(b.key.as_bytes()),
            };
            match ord {
                Ordering::Less => {
                    let row = std::mem::replace(&mut self.k, self.kept.next().await?);
                    return Ok(row.map(Diff::Inserted));
                }
                Ordering::Greater => {
                    let row = std::mem::replace(&mut self.l, self.live.next().await?);
                    return Ok(row.map(Diff::Deleted));
                }
                Ordering::Equal => {
                    let a = std::mem::replace(&mut self.k, self.kept.next().await?).expect("a kept row");
                    let b = std::mem::replace(&mut self.l, self.live.next().await?).expect("a live row");
                    if a.hash != b.hash {
                        return Ok(Some(Diff::Updated(a)));
                    }
                }
            }
        }
    }

    /// Both reads ended well.
    async fn finish(self) -> Result<()> {
        for (side, s) in [("kept", self.kept), ("live", self.live)] {
            let exit = s.task.await.context("reading rows")??;
            exit.check(&format!("reading {} in the {side} database", self.table))?;
        }
        Ok(())
    }

    /// Stops both reads (their psql ends).
    fn abort(self) {
        self.kept.task.abort();
        self.live.task.abort();
    }
}

impl Shape {
    /// The server-side expression that turns a row into its idempotent upsert.
    pub fn upsert_sql(&self) -> String {
        let q = |c: &String| ident(c);
        let values: Vec<String> = self.columns.iter().map(|c| format!("quote_nullable({})", q(c))).collect();
        let updates: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.key.contains(c))
            .map(|c| format!("{0} = EXCLUDED.{0}", q(c)))
            .collect();
        let action =
            if updates.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", updates.join(", ")) };
        format!(
            "format('INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO {}', {}, {}, concat_ws(', ', {}), {})",
            action.replace('\'', "''"),
            literal(&self.table),
            literal(&self.columns.iter().map(q).collect::<Vec<_>>().join(", ")),
            values.join(", "),
            literal(&self.key.iter().map(q).collect::<Vec<_>>().join(", ")),
        )
    }

    /// The statement that deletes the row with this key (its columns' text).
    fn delete_sql(&self, key: &[String]) -> String {
        let conds: Vec<String> =
            self.key.iter().zip(key).map(|(c, v)| format!("{} = {}", ident(c), literal(v))).collect();
        format!("DELETE FROM {} WHERE {}", self.table, conds.join(" AND "))
    }
}

struct Row {
    key: String,
    hash: String,
    key_columns: Vec<String>,
    statement: Option<String>,
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
