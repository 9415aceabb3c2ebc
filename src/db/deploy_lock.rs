//! The deploy lock: one run at a time per project and database, a PostgreSQL session advisory
//! lock held by a `psql` kept open for the run. Who holds it (the run, its SHA, since when) travels
//! with the lock itself, as a comment on every query of that session: `pg_stat_activity` shows
//! it beside the lock in `pg_locks`, and it vanishes with the lock when the session ends (a
//! killed runner leaves no stale record behind, and nothing is written in the user's database).

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{exec, Cmd, Postgres};

/// Who holds the deploy lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The command: `deploy`, `rollback`, `backup`, `check`…
    pub command: String,
    pub sha: Option<String>,
    /// The Actions run (`$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`).
    pub run_url: Option<String>,
    /// `$GITHUB_ACTOR`, else `$USER@host`.
    pub by: Option<String>,
    pub since: DateTime<Utc>,
}

const MARK: &str = "deploy-guard-holder ";

impl Holder {
    /// This process, running `command` for `sha`.
    pub fn here(command: &str, sha: Option<&str>) -> Holder {
        Holder {
            command: command.to_string(),
            sha: sha.map(str::to_string),
            run_url: run_url(),
            by: who(),
            since: Utc::now(),
        }
    }

    /// `/* deploy-guard-holder {json} */`: JSON escapes every `*/` a value could hold.
    fn comment(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default().replace("*/", "*\\/");
        format!("/* {MARK}{json} */")
    }

    /// The holder written in a session's query text.
    fn from_query(query: &str) -> Option<Holder> {
        let json = query.split(MARK).nth(1)?.split(" */").next()?;
        serde_json::from_str(json).ok()
    }
}

/// The Actions run this process belongs to, if any.
pub fn run_url() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(format!("{}/{}/actions/runs/{}", var("GITHUB_SERVER_URL")?, var("GITHUB_REPOSITORY")?, var("GITHUB_RUN_ID")?))
}

/// Who runs this process: the Actions actor, else `user@host`.
pub fn who() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    var("GITHUB_ACTOR").or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string());
        Some(format!("{}@{}", var("USER")?, host.unwrap_or_else(|| "localhost".into())))
    })
}

/// The session holding a deploy lock, as the server sees it.
#[derive(Clone, Debug, Serialize)]
pub struct HeldBy {
    pub pid: i64,
    /// When its connection started: the lock was taken then or just after.
    pub connected: DateTime<Utc>,
    pub client: Option<String>,
    /// What the holder wrote about itself; None when the session is not deploy-guard's (or its
    /// query text is hidden from this database user).
    pub holder: Option<Holder>,
}

impl std::fmt::Display for HeldBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.holder {
            Some(h) => {
                write!(f, "{}", h.command)?;
                if let Some(sha) = &h.sha {
                    write!(f, " of {sha}")?;
                }
                if let Some(by) = &h.by {
                    write!(f, " by {by}")?;
                }
                write!(f, ", since {}", h.since.format("%Y-%m-%d %H:%M:%S UTC"))?;
                if let Some(url) = &h.run_url {
                    write!(f, ", run {url}")?;
                }
                write!(f, "; server session pid {}", self.pid)
            }
            None => write!(
                f,
                "server session pid {}, connected since {}",
                self.pid,
                self.connected.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        }
    }
}

impl Postgres {
    /// Takes the deploy lock: a session advisory lock held by a `psql` kept open until the
    /// returned guard is dropped (or this process dies, which releases it too).
    /// `holder` is written beside it (see [`Holder`]).
    pub async fn lock(&self, key: &str, holder: &Holder) -> Result<LockGuard> {
        let id = lock_id(key);
        let comment = holder.comment();
        // The session lives as long as the run: longer than any one stream, still bounded.
        let cmd = Cmd { label: "deploy lock".into(), lasts_the_run: true, ..self.query_cmd(&self.maintenance_db) }
            .timeout((self.stream_timeout * 3).max(std::time::Duration::from_secs(24 * 60 * 60)));
        let (mut to_psql, psql_in) = tokio::io::duplex(4096);
        let (psql_out, from_psql) = tokio::io::duplex(4096);
        let exec = self.exec.clone();
        let task = tokio::spawn(async move {
            let mut psql_in = psql_in;
            let mut psql_out = psql_out;
            exec.run(&cmd, Some(&mut psql_in), &mut psql_out).await
        });
        to_psql
            .write_all(format!("{comment} SELECT pg_try_advisory_lock({id});\n").as_bytes())
            .await
            .context("deploy lock: psql did not start")?;
        let mut lines = BufReader::new(from_psql).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line()).await;
        match line {
            Ok(Ok(Some(l))) if l.trim() == "t" => {
                Ok(LockGuard { stdin: Some(to_psql), lines: Some(lines), id, comment, task: Some(task) })
            }
            Ok(Ok(Some(l))) if l.trim() == "f" => {
                let by = match self.lock_holder(key).await {
                    Ok(Some(h)) => format!(" ({h})"),
                    _ => String::new(),
                };
                bail!(
                    "another deploy-guard run holds the deploy lock for {key}{by}; wait for it to finish \
                     (deploy-guard lock status shows who holds it)"
                )
            }
            _ => {
                drop(to_psql);
                let exit = task.await.context("deploy lock task")??;
                exit.check("taking the deploy lock")?;
                bail!("taking the deploy lock: psql gave no answer")
            }
        }
    }

    /// The session holding the deploy lock of `key`, if any.
    pub async fn lock_holder(&self, key: &str) -> Result<Option<HeldBy>> {
        let id = lock_id(key);
        // A bigint advisory lock is (classid, objid) = (high, low) 32 bits, objsubid 1.
        let (high, low) = ((id as u64 >> 32) as u32, id as u64 as u32);
        let sql = format!(
            "SELECT coalesce(json_agg(json_build_object('pid', a.pid, 'connected', a.backend_start, \
             'client', a.client_addr::text, 'query', a.query)), '[]') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {high} AND l.objid = {low} AND l.objsubid = 1;"
        );
        let rows = self.query_json(&self.maintenance_db, &sql).await.context("reading who holds the deploy lock")?;
        let Some(row) = rows.as_array().and_then(|r| r.first()) else { return Ok(None) };
        let connected = row["connected"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        Ok(Some(HeldBy {
            pid: row["pid"].as_i64().unwrap_or_default(),
            connected: connected.map(|t| t.with_timezone(&Utc)).unwrap_or_default(),
            client: row["client"].as_str().map(str::to_string),
            holder: row["query"].as_str().and_then(Holder::from_query),
        }))
    }
}

/// Holds the deploy lock until dropped.
pub struct LockGuard {
    stdin: Option<tokio::io::DuplexStream>,
    lines: Option<tokio::io::Lines<BufReader<tokio::io::DuplexStream>>>,
    id: i64,
    /// Who holds it: sent with every query of the session, as `pg_stat_activity` shows the last.
    comment: String,
    task: Option<tokio::task::JoinHandle<Result<exec::Exit>>>,
}

impl LockGuard {
    /// Whether the session still holds the lock (its connection can drop: a restarted server,
    /// a lost SSH channel, a terminated backend).
    pub async fn held(&mut self) -> bool {
        let (Some(stdin), Some(lines)) = (self.stdin.as_mut(), self.lines.as_mut()) else { return false };
        let ask = format!(
            "{} SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted;\n",
            self.comment
        );
        if stdin.write_all(ask.as_bytes()).await.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line()).await,
            Ok(Ok(Some(l))) if l.trim() == "1"
        )
    }

    /// Releases the lock and waits for the holding session to end. The lock is unlocked
    /// explicitly first: a session's locks go only when its backend has exited, which can lag
    /// behind psql's exit, and the next run (a `backup` right after another) would find it held.
    pub async fn release(mut self) {
        if let (Some(mut stdin), Some(mut lines)) = (self.stdin.take(), self.lines.take()) {
            if stdin.write_all(format!("SELECT pg_advisory_unlock({});\n", self.id).as_bytes()).await.is_ok() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line()).await;
            }
        }
        let task = self.task.take();
        drop(self);
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

fn lock_id(key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("deploy-guard:{key}").as_bytes());
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}
