//! The streaming backup: `pg_dump` → gzip → store, with nothing held whole in memory or on disk,
//! then verified by reading the stored object back. Restore streams the other way.

pub use crate::model::human_bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder};
use async_compression::Level;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::io::InspectReader;

use super::{Manifest, MetaGuard};
use crate::db::{DumpTables, Postgres, RowSum};
use crate::exec::Tail;
use crate::store::Store;

/// The line `pg_dump` writes last when (and only when) it finished the dump.
pub const TRAILER: &str = "-- PostgreSQL database dump complete";

const BUF: usize = 256 * 1024;

/// Counts, hashes and keeps the tail of a byte stream as it passes.
struct Meter {
    bytes: u64,
    sha: Sha256,
    tail: Tail,
}

impl Meter {
    fn shared() -> Arc<Mutex<Meter>> {
        Arc::new(Mutex::new(Meter { bytes: 0, sha: Sha256::new(), tail: Tail::new(4096) }))
    }

    fn feed(&mut self, b: &[u8]) {
        self.bytes += b.len() as u64;
        self.sha.update(b);
        self.tail.push(b);
    }

    fn has_trailer(&self) -> bool {
        self.tail.text().contains(TRAILER)
    }

    fn sha256(&self) -> String {
        hex::encode(self.sha.clone().finalize())
    }
}

fn metered<R: AsyncRead>(r: R, m: &Arc<Mutex<Meter>>) -> InspectReader<R, impl FnMut(&[u8])> {
    let m = m.clone();
    InspectReader::new(r, move |b| m.lock().expect("meter").feed(b))
}

/// Logs progress every 10 s while a long stream runs.
fn progress(what: &'static str, m: &Arc<Mutex<Meter>>) -> tokio::task::JoinHandle<()> {
    let m = m.clone();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tick.tick().await;
            let n = m.lock().expect("meter").bytes;
            let secs = start.elapsed().as_secs_f64().max(0.001);
            tracing::info!("{what}: {} so far ({:.1} MiB/s)", human_bytes(n), n as f64 / secs / 1048576.0);
        }
    })
}

/// A stored, not yet verified, backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub key: String,
    /// Plain SQL bytes pg_dump wrote.
    pub dump_bytes: u64,
    /// Compressed bytes stored.
    pub size: u64,
    pub sha256: String,
    /// Each table's rows as an order-independent sum, from reading the backup back.
    pub tables: BTreeMap<String, RowSum>,
}

/// Streams a dump of the live database into `key`. Fails (and deletes what it stored) unless
/// pg_dump exited 0 and wrote its completion trailer.
pub async fn take(db: &Postgres, store: &dyn Store, key: &str, level: u32) -> Result<Taken> {
    let (mut dump_w, dump_r) = tokio::io::duplex(BUF);
    let raw = Meter::shared();
    let gz = Meter::shared();
    let encoder =
        GzipEncoder::with_quality(BufReader::with_capacity(BUF, metered(dump_r, &raw)), Level::Precise(level as i32));
    let body = metered(encoder, &gz);
    let ticker = progress("backup", &raw);
    let dump = async move {
        let r = db.executor().run(&db.dump_cmd(), None, &mut dump_w).await;
        let _ = dump_w.shutdown().await;
        r
    };
    // The body is dropped as soon as the store stops reading it (a failed upload), so pg_dump
    // sees a broken pipe and ends instead of blocking on a pipe nobody reads.
    let put = async move {
        let mut body = body;
        store.put(key, &mut body).await
    };
    let (exit, put) = tokio::join!(dump, put);
    ticker.abort();
    let checked = (|| {
        // A failed upload also breaks pg_dump's pipe: report the cause, not the symptom.
        let stored = put.with_context(|| format!("storing the backup in {} failed", store.describe()))?;
        exit.context("pg_dump could not be run to the end")?.check("pg_dump")?;
        let raw = raw.lock().expect("meter");
        if !raw.has_trailer() {
            bail!("pg_dump exited 0 but the dump lacks its completion trailer ({TRAILER:?}): it is incomplete");
        }
        let gz = gz.lock().expect("meter");
        if stored != gz.bytes {
            bail!("the store took {stored} bytes of {}", gz.bytes);
        }
        Ok(Taken {
            key: key.to_string(),
            dump_bytes: raw.bytes,
            size: gz.bytes,
            sha256: gz.sha256(),
            tables: BTreeMap::new(),
        })
    })();
    if checked.is_err() {
        if let Err(e) = store.delete(key).await {
            tracing::warn!("could not delete the failed backup {key}: {e:#}");
        }
    }
    checked
}

/// [`take`], then [`verify`]; a backup that does not verify is deleted.
pub async fn take_verified(db: &Postgres, store: &dyn Store, key: &str, level: u32) -> Result<Taken> {
    let mut taken = take(db, store, key, level).await?;
    match verify(store, &taken).await {
        Ok(tables) => taken.tables = tables,
        Err(e) => {
            let _ = store.delete(key).await;
            return Err(e.context("the backup did not verify and was deleted"));
        }
    }
    Ok(taken)
}

/// Copies the verified backup `taken` from `from` into `to`, then reads the copy back whole
/// (size, sha256, gunzip length, trailer); a copy that does not verify is deleted.
pub async fn copy_verified(from: &dyn Store, to: &dyn Store, taken: &Taken) -> Result<()> {
    let mut object =
        from.get(&taken.key).await.with_context(|| format!("cannot read {}", from.location(&taken.key)))?;
    let copied = async {
        let n = to.put(&taken.key, &mut object).await?;
        if n != taken.size {
            bail!("copied {n} bytes of {}", taken.size);
        }
        same_object(to, taken).await
    }
    .await;
    if copied.is_err() {
        let _ = to.delete(&taken.key).await;
    }
    copied.with_context(|| format!("copying {} to {}", taken.key, to.describe()))
}

/// Reads the stored backup back whole: same size and sha256, gunzips to the same number of
/// bytes, ends with pg_dump's trailer. Returns each table's row sums, read on the way.
pub async fn verify(store: &dyn Store, taken: &Taken) -> Result<BTreeMap<String, RowSum>> {
    read_back(store, taken).await
}

/// The stored object has the verified backup's length and sha256: the same bytes [`verify`]
/// gunzipped and checked when the backup was taken, so it needs no gunzip again (a restore
/// reads at hashing speed before psql sees a byte, not at gunzip speed).
async fn same_object(store: &dyn Store, taken: &Taken) -> Result<()> {
    let gz = Meter::shared();
    let object = store.get(&taken.key).await.with_context(|| format!("cannot read back {}", taken.key))?;
    let mut reader = metered(BufReader::with_capacity(BUF, object), &gz);
    tokio::io::copy(&mut reader, &mut tokio::io::sink()).await.with_context(|| format!("reading {}", taken.key))?;
    let gz = gz.lock().expect("meter");
    stored_as_taken(&gz, taken)?;
    Ok(())
}

/// The object read back has the length and sha256 it was stored with.
fn stored_as_taken(gz: &Meter, taken: &Taken) -> Result<()> {
    if gz.bytes != taken.size || gz.sha256() != taken.sha256 {
        bail!(
            "{} read back as {} bytes sha256 {}, expected {} bytes sha256 {}",
            taken.key,
            gz.bytes,
            gz.sha256(),
            taken.size,
            taken.sha256
        );
    }
    Ok(())
}

/// [`verify`]'s read-back: the whole object gunzipped, each table's rows summed on the way.
async fn read_back(store: &dyn Store, taken: &Taken) -> Result<BTreeMap<String, RowSum>> {
    let gz = Meter::shared();
    let raw = Meter::shared();
    let object = store.get(&taken.key).await.with_context(|| format!("cannot read back {}", taken.key))?;
    let mut decoder = GzipDecoder::new(BufReader::with_capacity(BUF, metered(object, &gz)));
    decoder.multiple_members(true);
    let mut plain = metered(decoder, &raw);
    // The row sums run on their own thread, fed copies of the plain SQL through a bounded
    // channel: beside gunzip rather than after it, so on two cores they add (almost) no time.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let sums = std::thread::spawn(move || {
        let mut tables = DumpTables::default();
        while let Some(chunk) = rx.blocking_recv() {
            tables.feed(&chunk);
        }
        tables.tables
    });
    let mut buf = vec![0u8; BUF];
    loop {
        let n = plain.read(&mut buf).await.with_context(|| format!("{} does not gunzip", taken.key))?;
        if n == 0 {
            break;
        }
        if tx.send(buf[..n].to_vec()).await.is_err() {
            bail!("the row sums of {} stopped", taken.key);
        }
    }
    drop(tx);
    let gz = gz.lock().expect("meter");
    let raw = raw.lock().expect("meter");
    stored_as_taken(&gz, taken)?;
    if raw.bytes != taken.dump_bytes || !raw.has_trailer() {
        bail!("{} gunzips to {} bytes (expected {}) or lacks the dump trailer", taken.key, raw.bytes, taken.dump_bytes);
    }
    sums.join().map_err(|_| anyhow::anyhow!("the row sums of {} panicked", taken.key))
}

/// Streams the backup of `manifest` into database `into` (which must be a fresh scratch
/// database). The object is first read back whole and checked against the manifest: psql runs
/// whatever it is fed, and plain SQL alone can run programs on the server (`COPY … TO PROGRAM`
/// as a superuser), so nothing unverified reaches it, not even a scratch database. The bytes
/// streamed are checked again against the manifest afterwards.
pub async fn restore_stream(db: &Postgres, store: &dyn Store, manifest: &Manifest, into: &str) -> Result<u64> {
    if !manifest.verified {
        bail!("backup {} was never verified; refusing to restore it", manifest.key);
    }
    same_object(store, &manifest.taken())
        .await
        .with_context(|| format!("{} is not the verified backup; nothing was restored", manifest.key))?;
    let gz = Meter::shared();
    let object = store.get(&manifest.key).await.with_context(|| format!("cannot read {}", manifest.key))?;
    let mut decoder = GzipDecoder::new(BufReader::with_capacity(BUF, metered(object, &gz)));
    decoder.multiple_members(true);
    let sql = Meter::shared();
    // The checksum proves the object is the one the manifest names, not that whoever wrote both
    // meant well: psql meta-commands are refused before psql reads them.
    let mut plain = MetaGuard::new(metered(decoder, &sql));
    let ticker = progress("restore", &sql);
    let restored = db.restore_into(into, &mut plain).await;
    ticker.abort();
    let report = restored.with_context(|| format!("restoring {} into {into} failed", manifest.key))?;
    let gz = gz.lock().expect("meter");
    if gz.bytes != manifest.size || gz.sha256() != manifest.sha256 {
        bail!(
            "{} is not the verified backup: read {} bytes sha256 {}, manifest says {} bytes sha256 {}",
            manifest.key,
            gz.bytes,
            gz.sha256(),
            manifest.size,
            manifest.sha256
        );
    }
    Ok(report.sql_bytes)
}
