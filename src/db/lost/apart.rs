//! The app's writes told from the migrations' own, in a table the migrations changed rows of.
//! Each row that differs between the backup (B: the live database right after the restore) and
//! the kept database (K) is looked up in a copy of the backup that the release's migrations ran
//! on (C: what the database would hold had nothing been written after the backup). Keyed rows:
//! K = C is the migrations' change, C = B the app's write, K = B nothing to do; otherwise both
//! changed the row and the table cannot be told apart. Whole rows: the app's change to a row's
//! count is K − C, replayed onto B.

use anyhow::Result;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::merge::{Merge, Row, Side};
use super::{Postgres, Shape, TableLoss, BATCH};

/// A row that differs between the live (restored) and the kept database.
#[derive(Clone, Debug)]
pub struct Differing {
    pub key: String,
    pub key_columns: Vec<String>,
    /// Its hash (keyed) or count (whole rows) in each; `None`: not there.
    pub live: Option<String>,
    pub kept: Option<String>,
    /// Whole rows: its values as typed literals.
    pub values: Option<String>,
}

/// A table whose differing rows wait to be told apart.
#[derive(Clone, Debug)]
pub struct Held {
    pub shape: Shape,
    pub rows: Vec<Differing>,
}

/// What telling a table's rows apart found.
#[derive(Debug, Default)]
pub struct Apart {
    /// The app's writes (written to the replay), and the migrations' own rows left out.
    pub loss: TableLoss,
    /// Keys (as text) of rows both changed: when any, nothing of the table was written.
    pub mixed: Vec<String>,
}

impl Postgres {
    /// The rows of `shape` that differ between `live` and `kept`, in key order; `None` when
    /// there are more than `cap`.
    pub async fn differing(&self, live: &str, kept: &str, shape: &Shape, cap: usize) -> Result<Option<Vec<Differing>>> {
        let mut merge = Merge::start(self, (live, Side::Live), (kept, Side::Kept), shape, false);
        let mut rows = Vec::new();
        while let Some(diff) = merge.next().await? {
            if rows.len() == cap {
                merge.abort();
                return Ok(None);
            }
            let values = diff.values().ok().map(str::to_string);
            let any: &Row = diff.kept.as_ref().or(diff.live.as_ref()).expect("a differing row is somewhere");
            rows.push(Differing {
                key: any.key.clone(),
                key_columns: any.key_columns.clone(),
                live: diff.live.as_ref().map(|r| r.value.clone()),
                kept: diff.kept.as_ref().map(|r| r.value.clone()),
                values,
            });
        }
        merge.finish().await?;
        Ok(Some(rows))
    }

    /// Looks each held row up in `copy` (the backup with the migrations run on it), and writes
    /// the statements of the app's writes into `out`, unless some row was changed by both.
    pub async fn apart(
        &self,
        kept: &str,
        copy: &str,
        held: &Held,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<Apart> {
        let shape = &held.shape;
        let mut stream = self.rows_in_order(copy, Side::Kept, shape, false);
        let mut next = stream.next().await?;
        let mut found = Apart { loss: shape.loss(), mixed: Vec::new() };
        let (mut upsert, mut delete, mut whole) = (Vec::new(), Vec::new(), Vec::new());
        for row in &held.rows {
            // The copy's rows before this one are not among the differing ones.
            while next.as_ref().is_some_and(|c| c.key.as_bytes() < row.key.as_bytes()) {
                next = stream.next().await?;
            }
            let in_copy = next.as_ref().filter(|c| c.key == row.key).map(|c| c.value.clone());
            let (b, c, k) = (row.live.as_ref(), in_copy.as_ref(), row.kept.as_ref());
            if shape.key.is_empty() {
                let n = |v: Option<&String>| v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                let (b, c, k) = (n(b), n(c), n(k));
                found.loss.migrations_own += c.abs_diff(b);
                let target = (b + k - c).max(0);
                if target != b {
                    found.loss.inserted += target.saturating_sub(b) as u64;
                    found.loss.deleted += b.saturating_sub(target) as u64;
                    whole.push((row.values.clone().unwrap_or_default(), target as u64));
                }
            } else if k == c {
                found.loss.migrations_own += 1;
            } else if c == b {
                match (b, k) {
                    (_, None) => {
                        found.loss.deleted += 1;
                        delete.push(row.key_columns.clone());
                    }
                    (None, Some(_)) => {
                        found.loss.inserted += 1;
                        upsert.push(row.key_columns.clone());
                    }
                    (Some(_), Some(_)) => {
                        found.loss.updated += 1;
                        upsert.push(row.key_columns.clone());
                    }
                }
            } else if k != b {
                found.mixed.push(row.key.clone());
            }
        }
        stream.abort();
        if !found.mixed.is_empty() {
            return Ok(found);
        }
        let mut sql: Vec<u8> = Vec::new();
        for key in &delete {
            sql.extend_from_slice(format!("{};\n", shape.delete_sql(key)).as_bytes());
        }
        for keys in upsert.chunks(BATCH) {
            self.write_upserts(kept, shape, keys, &mut sql).await?;
        }
        for (values, n) in &whole {
            sql.extend_from_slice(shape.set_count_sql(values, *n).as_bytes());
        }
        out.write_all(&sql).await?;
        Ok(found)
    }
}
