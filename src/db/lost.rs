//! The writes a restore loses: after the backup is swapped in, the kept (broken) database still
//! holds every write made after the backup's snapshot. For the pre-existing tables that saw
//! writes, both copies are read ordered by primary key (byte order, so both sides sort alike),
//! compared row by row, and each difference becomes an idempotent statement of a replay file:
//! an upsert for a row inserted or updated, a delete for a row deleted. Memory stays flat: both
//! streams are merged as they arrive. The sequences the restore set back are moved up again, so
//! the next insert takes no id a replayed row (or anyone after the backup) already has.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::{ident, literal, Postgres};

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

/// A table's primary key and the columns both copies share with the same type.
pub struct Shape {
    pub table: String,
    pub key: Vec<String>,
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
        let columns: Vec<String> = live_cols.iter().filter(|c| kept_cols.contains(c)).map(|(n, _)| n.clone()).collect();
        if !live_key.iter().all(|k| columns.contains(k)) {
            bail!("its key columns changed type");
        }
        Ok(Shape { table: table.to_string(), key: live_key, columns })
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
    /// statements that bring the live table to the kept one's rows into `out`.
    pub async fn table_loss(
        &self,
        live: &str,
        kept: &str,
        shape: &Shape,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<TableLoss> {
        let (kept_rows, kept_task) = self.keyed_rows(kept, shape, Side::Kept);
        let (live_rows, live_task) = self.keyed_rows(live, shape, Side::Live);
        let mut kept_lines = BufReader::new(kept_rows).lines();
        let mut live_lines = BufReader::new(live_rows).lines();
        let mut loss = TableLoss { table: shape.table.clone(), ..Default::default() };
        let mut k = next_row(&mut kept_lines).await?;
        let mut l = next_row(&mut live_lines).await?;
        loop {
            let ord = match (&k, &l) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.key.as_bytes().cmp(b.key.as_bytes()),
            };
            match ord {
                Ordering::Less => {
                    let row = k.take().expect("a kept row");
                    out.write_all(format!("{}\n", row.statement).as_bytes()).await?;
                    loss.inserted += 1;
                    k = next_row(&mut kept_lines).await?;
                }
                Ordering::Greater => {
                    let row = l.take().expect("a live row");
                    out.write_all(format!("{}\n", row.statement).as_bytes()).await?;
                    loss.deleted += 1;
                    l = next_row(&mut live_lines).await?;
                }
                Ordering::Equal => {
                    let (a, b) = (k.take().expect("kept"), l.take().expect("live"));
                    if a.hash != b.hash {
                        out.write_all(format!("{}\n", a.statement).as_bytes()).await?;
                        loss.updated += 1;
                    }
                    k = next_row(&mut kept_lines).await?;
                    l = next_row(&mut live_lines).await?;
                }
            }
        }
        for (side, task) in [("kept", kept_task), ("live", live_task)] {
            let exit = task.await.context("reading rows")??;
            exit.check(&format!("reading {} in the {side} database", shape.table))?;
        }
        Ok(loss)
    }

    /// Streams `key<TAB>hash<TAB>statement` lines of `db`'s table, ordered by key in byte order.
    fn keyed_rows(
        &self,
        db: &str,
        shape: &Shape,
        side: Side,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<Result<crate::exec::Exit>>) {
        let q = |c: &String| ident(c);
        let key_row = format!("row({})::text", shape.key.iter().map(q).collect::<Vec<_>>().join(", "));
        let all_row = format!("row({})::text", shape.columns.iter().map(q).collect::<Vec<_>>().join(", "));
        let statement = match side {
            // The kept row, upserted.
            Side::Kept => {
                let values = shape.columns.iter().map(|c| format!("quote_nullable({})", q(c))).collect::<Vec<_>>();
                let updates: Vec<String> = shape
                    .columns
                    .iter()
                    .filter(|c| !shape.key.contains(c))
                    .map(|c| format!("{0} = EXCLUDED.{0}", q(c)))
                    .collect();
                let action = if updates.is_empty() {
                    "NOTHING".to_string()
                } else {
                    format!("UPDATE SET {}", updates.join(", "))
                };
                format!(
                    "format('INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO {}', {}, {}, concat_ws(', ', {}), {})",
                    action.replace('\'', "''"),
                    literal(&shape.table),
                    literal(&shape.columns.iter().map(q).collect::<Vec<_>>().join(", ")),
                    values.join(", "),
                    literal(&shape.key.iter().map(q).collect::<Vec<_>>().join(", ")),
                )
            }
            // The live row, deleted by its key.
            Side::Live => {
                let conds: Vec<String> = shape
                    .key
                    .iter()
                    .map(|c| format!("format('%s = %s', {}, quote_nullable({}))", literal(&q(c)), q(c)))
                    .collect();
                format!(
                    "format('DELETE FROM %s WHERE %s', {}, concat_ws(' AND ', {}))",
                    literal(&shape.table),
                    conds.join(", ")
                )
            }
        };
        let sql = format!(
            "COPY (SELECT {key_row} COLLATE \"C\" AS k, md5({all_row}), {statement} || ';' FROM {} ORDER BY 1) TO STDOUT;\n",
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
        (r, task)
    }
}

#[derive(Clone, Copy)]
enum Side {
    Kept,
    Live,
}

struct Row {
    key: String,
    hash: String,
    statement: String,
}

async fn next_row(lines: &mut tokio::io::Lines<BufReader<tokio::io::DuplexStream>>) -> Result<Option<Row>> {
    let Some(line) = lines.next_line().await? else { return Ok(None) };
    let mut f = line.splitn(3, '\t');
    let (Some(k), Some(h), Some(s)) = (f.next(), f.next(), f.next()) else {
        bail!("unexpected row from COPY: {:.200}", line);
    };
    Ok(Some(Row { key: unescape(k), hash: h.to_string(), statement: unescape(s) }))
}

/// COPY text format's escapes undone.
fn unescape(s: &str) -> String {
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
        assert_eq!(super::unescape(r"a\tb\nc\\d"), "a\tb\nc\\d");
    }
}
