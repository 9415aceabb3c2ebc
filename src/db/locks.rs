//! What a migration holds while it runs on the rehearsal's copy: one `psql` session on the copy
//! samples, every [`INTERVAL`], the committed row count of the migration table and the table
//! locks that the copy's other client sessions (the migration tool's: nobody else uses the copy)
//! hold in a mode that blocks the app's reads or writes. Each sample is stamped when it arrives;
//! [`long_locks`] and [`row_times`] turn the samples into what the rehearsal reports.
//!
//! What it cannot see: a lock held for less than one interval (never longer than
//! `migrations.lock_warn` anyway); the exact moment a lock was taken (it is seen at most one
//! interval late, so durations are lower bounds, within one interval); tables the migration
//! created itself (invisible to other sessions until it commits, and used by no one else); row
//! locks (an `UPDATE`'s), which block only writers of the same rows; and locks on the real
//! server, whose other sessions and load are not on the copy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{literal, Postgres};

/// How often the copy is sampled.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Lock modes that block the app: `SHARE` and stronger block writes; `ACCESS EXCLUSIVE` reads too.
const BLOCKING: &[&str] = &["ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"];

/// One line of the sampler, and when it arrived (seconds since the watch started).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub at: f64,
    pub seen: Seen,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "k")]
pub enum Seen {
    /// The migration table's committed rows (`-1`: it was locked at that moment).
    #[serde(rename = "rows")]
    Rows { n: i64 },
    /// A blocking lock, held by session `pid` in the transaction started at `xact`.
    #[serde(rename = "lock")]
    Lock { pid: i64, xact: String, mode: String, table: String, query: String },
}

/// A lock a migration held longer than `migrations.lock_warn`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldLock {
    /// The migration running when it was first seen (several joined by ` + ` when they committed
    /// together).
    pub migration: String,
    /// While it was being reverted rather than applied.
    pub revert: bool,
    pub table: String,
    /// PostgreSQL's name of the mode (`AccessExclusiveLock`).
    pub mode: String,
    /// `reads and writes` or `writes`.
    pub blocks: String,
    /// Seconds it was seen held: a lower bound, within one sampling interval.
    pub secs: f64,
    /// What the session was running when it was first seen.
    pub statement: String,
}

impl HeldLock {
    /// `AccessExclusiveLock on public.users for ≥ 6.0 s (blocks reads and writes) by AddAge1 (ALTER TABLE …)`.
    pub fn describe(&self) -> String {
        format!(
            "{} on {} for ≥ {:.1} s (blocks {}) by {}{} ({:.80})",
            self.mode,
            self.table,
            self.secs,
            self.blocks,
            if self.revert { "the revert of " } else { "" },
            self.migration,
            self.statement
        )
    }
}

/// The sampler while it runs.
pub struct LockWatch {
    app_name: String,
    reader: tokio::task::JoinHandle<Result<Vec<Sample>>>,
    session: tokio::task::JoinHandle<Result<crate::exec::Exit>>,
}

impl LockWatch {
    /// Ends the sampling session and returns what it saw.
    pub async fn stop(self, pg: &Postgres) -> Result<Vec<Sample>> {
        let ended = pg.query(&pg.maintenance_db, &super::sql::end_sessions_of(&self.app_name, None)).await;
        if ended.is_err() {
            self.session.abort();
        }
        let _ = self.session.await;
        ended.context("ending the lock sampler")?;
        self.reader.await.context("the lock sampler's reader")?
    }
}

impl Postgres {
    /// Starts sampling `db` (the rehearsal's copy) in a session named `app_name`, samples stamped
    /// in seconds since `start`; returns once the first sample has arrived, so nothing that
    /// follows is missed.
    pub async fn watch_locks(
        &self,
        db: &str,
        migration_table: Option<&str>,
        app_name: &str,
        start: Instant,
    ) -> Result<LockWatch> {
        let count = match migration_table {
            Some(t) => {
                let quoted = t.split('.').map(super::ident).collect::<Vec<_>>().join(".");
                format!(
                    "IF to_regclass({}) IS NULL THEN RETURN 0; END IF; EXECUTE {} INTO n; RETURN n;",
                    literal(t),
                    literal(&format!("SELECT count(*) FROM {quoted}"))
                )
            }
            None => "RETURN 0;".into(),
        };
        let modes = BLOCKING.iter().map(|m| literal(m)).collect::<Vec<_>>().join(", ");
        // Each \watch round is its own transaction: pg_stat_activity is read afresh every time.
        // The count gives up after 50 ms rather than queue behind the migration's own lock.
        let sql = format!(
            "SET application_name = {name};\n\
             SET lock_timeout = '50ms';\n\
             CREATE FUNCTION pg_temp.dg_rows() RETURNS bigint LANGUAGE plpgsql AS $dg$ DECLARE n bigint; BEGIN {count} \
             EXCEPTION WHEN lock_not_available THEN RETURN -1; END $dg$;\n\
             SELECT json_build_object('k', 'rows', 'n', pg_temp.dg_rows())::text \
             UNION ALL \
             SELECT json_build_object('k', 'lock', 'pid', l.pid, 'xact', a.xact_start::text, 'mode', l.mode, \
                    'table', l.relation::regclass::text, 'query', left(a.query, 200))::text \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid JOIN pg_class c ON c.oid = l.relation \
             WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND a.backend_type = 'client backend' AND c.relkind IN ('r', 'p', 'm') AND l.mode IN ({modes})\n\
             \\watch {}\n",
            INTERVAL.as_secs_f64(),
            name = literal(app_name),
        );
        let cmd = self.query_cmd(db);
        let exec = self.executor_for(db);
        let (mut w, r) = tokio::io::duplex(64 * 1024);
        let session = tokio::spawn(async move {
            let mut input = sql.as_bytes();
            let exit = exec.run(&cmd, Some(&mut input), &mut w).await;
            let _ = w.shutdown().await;
            exit
        });
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(r).lines();
            let mut samples = Vec::new();
            let mut first = Some(first_tx);
            while let Some(line) = lines.next_line().await? {
                let at = start.elapsed().as_secs_f64();
                let Ok(seen) = serde_json::from_str::<Seen>(line.trim()) else { continue };
                samples.push(Sample { at, seen });
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
            }
            Ok(samples)
        });
        match tokio::time::timeout(Duration::from_secs(30), first_rx).await {
            Ok(Ok(())) => Ok(LockWatch { app_name: app_name.to_string(), reader, session }),
            // Its output ended before a sample: psql stopped; say why.
            Ok(Err(_)) => {
                reader.abort();
                let why = match tokio::time::timeout(Duration::from_secs(5), session).await {
                    Ok(Ok(Ok(exit))) => exit.check("psql").err().map_or("psql exited 0".into(), |e| format!("{e:#}")),
                    Ok(Ok(Err(e))) => format!("{e:#}"),
                    _ => "psql did not end".into(),
                };
                bail!("the lock sampler on {db} ended before its first sample: {why}")
            }
            Err(_) => {
                session.abort();
                reader.abort();
                bail!("the lock sampler on {db} did not start within 30 s")
            }
        }
    }
}

/// When the migration table's committed row count first reached each of `from + 1 ..= to`
/// (seconds on the samples' clock); `None` for a count no sample showed (reached after the last).
pub fn row_times(samples: &[Sample], from: i64, to: i64) -> Vec<Option<f64>> {
    (from + 1..=to)
        .map(|want| {
            samples.iter().find_map(|s| match s.seen {
                Seen::Rows { n } if n >= want => Some(s.at),
                _ => None,
            })
        })
        .collect()
}

/// (pid, transaction start, table, mode) → first seen, last seen, statement at first sight.
type Held<'a> = BTreeMap<(i64, &'a str, &'a str, &'a str), (f64, f64, &'a str)>;

/// The blocking locks held at least `warn`, each with the migration running when it was first
/// seen (`during(at)`: its name, and whether it was being reverted); the longest first, one per
/// table, mode and migration.
pub fn long_locks(samples: &[Sample], warn: Duration, during: impl Fn(f64) -> (String, bool)) -> Vec<HeldLock> {
    let mut held: Held = BTreeMap::new();
    for s in samples {
        if let Seen::Lock { pid, xact, mode, table, query } = &s.seen {
            held.entry((*pid, xact, table, mode)).and_modify(|e| e.1 = s.at).or_insert((s.at, s.at, query));
        }
    }
    let mut out: BTreeMap<(String, String, String, bool), HeldLock> = BTreeMap::new();
    for ((_, _, table, mode), (first, last, query)) in held {
        let secs = last - first;
        if secs < warn.as_secs_f64() {
            continue;
        }
        let (migration, revert) = during(first);
        let lock = HeldLock {
            migration,
            revert,
            table: table.to_string(),
            mode: mode.to_string(),
            blocks: if mode == "AccessExclusiveLock" { "reads and writes" } else { "writes" }.into(),
            secs,
            statement: query.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let key = (lock.table.clone(), lock.mode.clone(), lock.migration.clone(), lock.revert);
        if out.get(&key).is_none_or(|l| l.secs < secs) {
            out.insert(key, lock);
        }
    }
    let mut locks: Vec<HeldLock> = out.into_values().collect();
    locks.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    locks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(at: f64, n: i64) -> Sample {
        Sample { at, seen: Seen::Rows { n } }
    }

    fn lock(at: f64, pid: i64, mode: &str, table: &str) -> Sample {
        Sample {
            at,
            seen: Seen::Lock {
                pid,
                xact: "t1".into(),
                mode: mode.into(),
                table: table.into(),
                query: format!("ALTER TABLE {table}\n  ADD x int"),
            },
        }
    }

    #[test]
    fn samples_parse_from_the_sampler_json() {
        let s: Seen = serde_json::from_str(r#"{"k" : "rows", "n" : 3}"#).unwrap();
        assert_eq!(s, Seen::Rows { n: 3 });
        let s: Seen = serde_json::from_str(
            r#"{"k" : "lock", "pid" : 7, "xact" : "2026-01-01 00:00:00+00", "mode" : "ShareLock", "table" : "users", "query" : "CREATE INDEX"}"#,
        )
        .unwrap();
        assert!(matches!(s, Seen::Lock { pid: 7, .. }));
    }

    #[test]
    fn row_times_are_when_each_count_is_first_seen() {
        let s = vec![rows(0.0, 2), rows(0.1, 2), rows(0.2, -1), rows(0.3, 3), rows(0.4, 5)];
        assert_eq!(row_times(&s, 2, 6), vec![Some(0.3), Some(0.4), Some(0.4), None]);
    }

    #[test]
    fn long_locks_keep_those_over_the_threshold_longest_first() {
        let mut s = Vec::new();
        for i in 0..=60 {
            s.push(lock(i as f64 * 0.1, 10, "AccessExclusiveLock", "public.users"));
        }
        for i in 0..=20 {
            s.push(lock(7.0 + i as f64 * 0.1, 11, "ShareLock", "public.orders"));
        }
        // Short: under the threshold.
        s.push(lock(9.0, 12, "ExclusiveLock", "public.items"));
        let found = long_locks(&s, Duration::from_secs(1), |at| (if at < 6.5 { "A" } else { "B" }.into(), false));
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].table.as_str(), found[0].blocks.as_str(), found[0].migration.as_str()),
            ("public.users", "reads and writes", "A")
        );
        assert!((found[0].secs - 6.0).abs() < 1e-9);
        assert_eq!((found[1].table.as_str(), found[1].blocks.as_str()), ("public.orders", "writes"));
        assert_eq!(found[0].statement, "ALTER TABLE public.users ADD x int");
    }
}
