//! Two copies of a table streamed in key order and merged as the rows arrive: the rows that
//! differ, with memory flat whatever the table's size.

use std::cmp::Ordering;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{copy_unescape, ident, Postgres, Shape};

/// Which database's names a stream reads under: the live one's, or the kept one's (also those
/// of a copy the migrations ran on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Live,
    Kept,
}

/// One row as streamed. Keyed: `key` is the key as a row's text, `value` a 64-bit hash of the
/// shared columns, `key_columns` the key's values, `statement` the kept row's upsert (when
/// asked). Whole rows: `key` is the row's text, `value` how many times it appears, `statement`
/// its values as typed literals.
#[derive(Clone, Debug)]
pub struct Row {
    pub key: String,
    pub value: String,
    pub key_columns: Vec<String>,
    pub statement: Option<String>,
}

/// A row that differs: in the kept copy only (inserted), in both but changed (updated), in the
/// live copy only (deleted).
pub struct Diff {
    pub kept: Option<Row>,
    pub live: Option<Row>,
}

impl Diff {
    /// Whole rows: how many times the row appears in each copy.
    pub fn kept_count(&self) -> u64 {
        count(self.kept.as_ref())
    }

    pub fn live_count(&self) -> u64 {
        count(self.live.as_ref())
    }

    /// Whole rows: its values as typed literals, from whichever copy has it.
    pub fn values(&self) -> Result<&str> {
        self.kept.iter().chain(&self.live).find_map(|r| r.statement.as_deref()).context("a row without its values")
    }
}

pub fn count(row: Option<&Row>) -> u64 {
    row.and_then(|r| r.value.parse().ok()).unwrap_or(0)
}

/// One side's rows, as they arrive.
pub struct Stream {
    lines: tokio::io::Lines<BufReader<tokio::io::DuplexStream>>,
    task: tokio::task::JoinHandle<Result<crate::exec::Exit>>,
    db: String,
    statement: bool,
    keyed: bool,
}

impl Postgres {
    /// Streams `shape`'s rows of `db` (named as on `side`) in key order, byte order. Keyed:
    /// `key<TAB>hash<TAB>key column…[<TAB>upsert]`; whole rows: `row<TAB>count<TAB>values`.
    pub fn rows_in_order(&self, db: &str, side: Side, shape: &Shape, statement: bool) -> Stream {
        let (table, names) = match side {
            Side::Live => (&shape.table, &shape.columns),
            Side::Kept => (&shape.kept_table, &shape.kept_columns),
        };
        let all: Vec<String> = names.iter().map(|c| ident(c)).collect();
        let sql = if shape.key.is_empty() {
            format!(
                "COPY (SELECT row({cols})::text COLLATE \"C\" AS k, count(*), {values} FROM {table} \
                 GROUP BY 1, 3 ORDER BY 1) TO STDOUT;\n",
                cols = all.join(", "),
                values = shape.typed_values_sql(side),
            )
        } else {
            let keys: Vec<String> = shape
                .key
                .iter()
                .filter_map(|k| shape.columns.iter().position(|c| c == k))
                .map(|i| ident(&names[i]))
                .collect();
            let mut fields: Vec<String> = keys.iter().map(|c| format!("{c}::text")).collect();
            if statement {
                fields.push(shape.upsert_sql());
            }
            format!(
                "COPY (SELECT row({})::text COLLATE \"C\" AS k, hashtextextended(row({})::text, 0), {} FROM {table} ORDER BY 1) TO STDOUT;\n",
                keys.join(", "),
                all.join(", "),
                fields.join(", "),
            )
        };
        let cmd = self.query_cmd(db).own_connection();
        let exec = self.executor_for(db);
        let (mut w, r) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(async move {
            let mut input = sql.as_bytes();
            let exit = exec.run(&cmd, Some(&mut input), &mut w).await;
            let _ = w.shutdown().await;
            exit
        });
        Stream {
            lines: BufReader::new(r).lines(),
            task,
            db: db.to_string(),
            statement: statement || shape.key.is_empty(),
            keyed: !shape.key.is_empty(),
        }
    }
}

impl Stream {
    pub async fn next(&mut self) -> Result<Option<Row>> {
        let Some(line) = self.lines.next_line().await? else { return Ok(None) };
        let bad = || anyhow::anyhow!("unexpected row from COPY in {}: {:.200}", self.db, line);
        let mut f = line.split('\t');
        let (Some(k), Some(v)) = (f.next(), f.next()) else { return Err(bad()) };
        let mut key_columns: Vec<String> = f.map(copy_unescape).collect();
        let statement = if self.statement { key_columns.pop() } else { None };
        if self.keyed && key_columns.is_empty() || statement.is_none() && self.statement {
            return Err(bad());
        }
        Ok(Some(Row { key: copy_unescape(k), value: v.to_string(), key_columns, statement }))
    }

    /// The read ended well.
    pub async fn finish(self, what: &str) -> Result<()> {
        let exit = self.task.await.context("reading rows")??;
        exit.check(&format!("reading {what} in {}", self.db))
    }

    pub fn abort(self) {
        self.task.abort();
    }
}

/// The kept and live copies' rows, merged by key.
pub struct Merge {
    kept: Stream,
    live: Stream,
    k: Option<Row>,
    l: Option<Row>,
    started: bool,
    table: String,
}

impl Merge {
    /// `statement`: the kept rows come with their upsert statements.
    pub fn start(pg: &Postgres, live: (&str, Side), kept: (&str, Side), shape: &Shape, statement: bool) -> Merge {
        Merge {
            kept: pg.rows_in_order(kept.0, kept.1, shape, statement),
            live: pg.rows_in_order(live.0, live.1, shape, false),
            k: None,
            l: None,
            started: false,
            table: shape.table.clone(),
        }
    }

    pub async fn next(&mut self) -> Result<Option<Diff>> {
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
                    return Ok(Some(Diff { kept: row, live: None }));
                }
                Ordering::Greater => {
                    let row = std::mem::replace(&mut self.l, self.live.next().await?);
                    return Ok(Some(Diff { kept: None, live: row }));
                }
                Ordering::Equal => {
                    let a = std::mem::replace(&mut self.k, self.kept.next().await?);
                    let b = std::mem::replace(&mut self.l, self.live.next().await?);
                    if a.as_ref().map(|r| &r.value) != b.as_ref().map(|r| &r.value) {
                        return Ok(Some(Diff { kept: a, live: b }));
                    }
                }
            }
        }
    }

    /// Both reads ended well.
    pub async fn finish(self) -> Result<()> {
        self.kept.finish(&format!("{} (kept)", self.table)).await?;
        self.live.finish(&format!("{} (live)", self.table)).await
    }

    /// Stops both reads (their psql ends).
    pub fn abort(self) {
        self.kept.abort();
        self.live.abort();
    }
}
