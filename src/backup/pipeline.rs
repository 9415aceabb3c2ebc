//! The streaming backup: `pg_dump` → compress → store, with nothing held whole in memory or on
//! disk, then verified by reading the stored object back. Restore streams the other way. Over
//! SSH, compression and decompression happen on the target when it has the codec's tool.

use crate::model::human_bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::io::InspectReader;

use super::chunks::{self, Chunks};
use super::listing::Lister;
use super::{codec, PlainView, Stored};
use crate::db::{DumpTables, Postgres, RowSum, Sums};
use crate::exec::Tail;
use crate::model::{Codec, Compression, Format, Verify};
use crate::store::{Put, Store};

/// The line `pg_dump` writes last when (and only when) it finished the dump.
pub const TRAILER: &str = "-- PostgreSQL database dump complete";

pub(super) const BUF: usize = 256 * 1024;

/// Counts, hashes and keeps the tail of a byte stream as it passes.
pub(super) struct Meter {
    pub(super) bytes: u64,
    /// None for the plain SQL, whose length and tail are all that is checked: hashing it would
    /// cost a core-second per GiB.
    sha: Option<Sha256>,
    /// The stored object's SHA-256 piece by piece, when it is read back to be verified.
    pieces: Option<chunks::Hasher>,
    tail: Tail,
}

impl Meter {
    fn new(sha: Option<Sha256>, pieces: Option<chunks::Hasher>) -> Arc<Mutex<Meter>> {
        Arc::new(Mutex::new(Meter { bytes: 0, sha, pieces, tail: Tail::new(4096) }))
    }

    /// Counts and hashes (the stored object).
    pub(super) fn hashed() -> Arc<Mutex<Meter>> {
        Meter::new(Some(Sha256::new()), None)
    }

    /// Counts and hashes, whole and piece by piece (the stored object of `size` bytes, read back).
    fn hashed_in_pieces(size: u64) -> Arc<Mutex<Meter>> {
        Meter::new(Some(Sha256::new()), Some(chunks::Hasher::new(size)))
    }

    /// Counts and keeps the tail (the plain SQL).
    pub(super) fn counted() -> Arc<Mutex<Meter>> {
        Meter::new(None, None)
    }

    fn feed(&mut self, b: &[u8]) {
        self.bytes += b.len() as u64;
        if let Some(sha) = &mut self.sha {
            sha.update(b);
        }
        if let Some(pieces) = &mut self.pieces {
            pieces.feed(b);
        }
        self.tail.push(b);
    }

    fn has_trailer(&self) -> bool {
        self.tail.text().contains(TRAILER)
    }

    pub(super) fn sha256(&self) -> String {
        hex::encode(self.sha.clone().expect("a hashed meter").finalize())
    }
}

pub(super) fn metered<R: AsyncRead>(r: R, m: &Arc<Mutex<Meter>>) -> InspectReader<R, impl FnMut(&[u8])> {
    let m = m.clone();
    InspectReader::new(r, move |b| m.lock().expect("meter").feed(b))
}

/// Logs progress every 10 s while a long stream runs.
pub(super) fn progress(what: &'static str, m: &Arc<Mutex<Meter>>) -> tokio::task::JoinHandle<()> {
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

/// How a backup is laid out and compressed, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packing {
    pub format: Format,
    pub codec: Codec,
    pub level: u32,
    /// On the target, by the codec's tool (else here, in this process).
    pub on_target: bool,
}

impl Packing {
    /// `wanted`, compressed on the target when commands run across a link and the target has
    /// the codec's tool; a remote target without `zstd` compresses with `gzip` (which every
    /// target has) rather than send the plain SQL across the link. Locally, in this process:
    /// `pg_dump | zstd -1` as a separate process measured slower here (docs/PERFORMANCE.md).
    pub async fn choose(exec: &dyn crate::exec::Executor, format: Format, wanted: Compression) -> Result<Packing> {
        let here = Packing { format, codec: wanted.codec, level: wanted.level(), on_target: false };
        if !exec.remote() {
            return Ok(here);
        }
        if codec::on_target(wanted.codec, exec).await? {
            return Ok(Packing { on_target: true, ..here });
        }
        if codec::on_target(Codec::Gzip, exec).await? {
            tracing::warn!(
                "the target has no {} tool: compressing with gzip there instead (install {} on the target for faster backups)",
                wanted.codec,
                wanted.codec
            );
            return Ok(Packing { codec: Codec::Gzip, level: Codec::Gzip.default_level(), on_target: true, ..here });
        }
        tracing::warn!("the target has neither {} nor gzip: the dump crosses the link uncompressed", wanted.codec);
        Ok(here)
    }

    pub fn describe(&self) -> String {
        let at = if self.on_target { "on the target" } else { "here" };
        let format = if self.format == Format::Plain { String::new() } else { format!("{} format, ", self.format) };
        format!("{format}{} -{} {at}", self.codec, self.level)
    }

    /// The data key of this backup named `name`.
    pub fn key(&self, name: &crate::model::BackupName) -> String {
        name.data_key(self.format, self.codec)
    }
}

/// A stored, not yet verified, backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub key: String,
    /// Bytes pg_dump wrote (plain SQL, or the directory format's tar); known once read back when
    /// the target compressed them.
    pub dump_bytes: Option<u64>,
    /// Compressed bytes stored.
    pub size: u64,
    pub sha256: String,
    /// Each table the dump holds rows for, with its columns as dumped, from reading it back.
    pub columns: BTreeMap<String, Vec<String>>,
    /// The object's SHA-256 piece by piece, from reading the backup back.
    pub chunks: Option<Chunks>,
    /// What the dump holds was checked on its way to the store (meta-commands, trailer,
    /// columns): verifying it is then reading back the stored bytes alone.
    pub checked: bool,
}

/// Streams a dump of the live database into `key` (whose suffix names `packing`'s format and
/// codec). Fails (and deletes what it stored) unless pg_dump exited 0 and — when plain SQL
/// passes here — wrote its completion trailer ([`verify`] checks the trailer otherwise).
pub async fn take(db: &Postgres, store: &dyn Store, key: &str, packing: Packing) -> Result<Taken> {
    let taken = take_unchecked(db, store, key, packing).await;
    if taken.is_err() && packing.format == Format::Directory {
        db.remove_work_dirs().await;
    }
    taken
}

async fn take_unchecked(db: &Postgres, store: &dyn Store, key: &str, packing: Packing) -> Result<Taken> {
    if Format::of_key(key) != Some((packing.format, packing.codec)) {
        bail!("{key} does not name a {} {} backup", packing.format, packing.codec);
    }
    if packing.format == Format::Directory {
        let need = db.table_bytes().await.context("sizing the directory-format dump")?;
        room_for(db, need, "the directory-format dump").await?;
    }
    let packed_cmd =
        || db.dump_cmd_packed(packing.format, packing.codec.name(), &packing.codec.compress_sh(packing.level));
    // A store on the target is written there, the compressed bytes crossing the link once, as
    // they are written, to be checked here.
    let in_place = packing.on_target && store.path_on_target(key).is_some();
    let (mut dump_w, dump_r) = tokio::io::duplex(BUF);
    let raw = Meter::counted();
    // Pieces of the smallest size as they are stored: right for any object under 32 GiB.
    let packed = Meter::new(Some(Sha256::new()), Some(chunks::Hasher::new(0)));
    // The dump is checked on its way to the store, on a thread of its own: the SQL beside the
    // compressor here, or what the target compressed, decompressed on that thread.
    let (cmd, body, ticker, lister) = if packing.on_target {
        let (lister, feed) = Lister::start_packed(packing.format, packing.codec);
        let body = InspectReader::new(metered(dump_r, &packed), move |b| {
            feed.feed(b);
        });
        (packed_cmd(), Box::pin(body) as super::codec::Reader, progress("backup (compressed bytes)", &packed), lister)
    } else {
        let (lister, feed) = Lister::start(packing.format);
        let raw_side = InspectReader::new(metered(dump_r, &raw), move |b| {
            feed.feed(b);
        });
        let encoder = codec::encoder(packing.codec, raw_side, packing.level);
        let body = Box::pin(metered(encoder, &packed)) as super::codec::Reader;
        (db.dump_cmd_for(packing.format), body, progress("backup", &raw), lister)
    };
    let (dumped, stored) = if in_place {
        let write = async move {
            let r = store.put_from_target(key, &cmd, &mut dump_w).await;
            let _ = dump_w.shutdown().await;
            r.unwrap_or_else(|| Err(anyhow::anyhow!("{} writes nothing on the target", store.describe())))
        };
        let drain = async move {
            let mut body = body;
            tokio::io::copy(&mut body, &mut tokio::io::sink()).await
        };
        let (written, drained) = tokio::join!(write, drain);
        (written, drained.context("reading the backup as the target wrote it"))
    } else {
        let dump = async move {
            let r = db.executor().run(&cmd, None, &mut dump_w).await;
            let _ = dump_w.shutdown().await;
            r.context("pg_dump could not be run to the end").and_then(|exit| exit.check("pg_dump"))
        };
        // The body is dropped as soon as the store stops reading it (a failed upload), so
        // pg_dump sees a broken pipe and ends instead of blocking on a pipe nobody reads.
        let put = async move {
            let mut body = body;
            store.put(key, &mut body, Put::New).await
        };
        tokio::join!(dump, put)
    };
    ticker.abort();
    // The feed went with the body: the lister has seen the whole dump, or as much as was sent.
    let listed = lister.finish();
    let checked = (|| {
        // A failed upload also breaks pg_dump's pipe: report the cause, not the symptom.
        let stored = stored.with_context(|| format!("storing the backup in {} failed", store.describe()))?;
        dumped?;
        let listed = listed.with_context(|| format!("{key} is not a plain pg_dump"))?;
        if packing.format == Format::Plain && !listed.trailer {
            bail!("pg_dump exited 0 but the dump lacks its completion trailer ({TRAILER:?}): it is incomplete");
        }
        let mut packed = packed.lock().expect("meter");
        if stored != packed.bytes {
            bail!("the store took {stored} bytes of {}", packed.bytes);
        }
        let pieces = packed.pieces.take().expect("hashed in pieces").finish();
        let fits = pieces.fits(packed.bytes);
        Ok(Taken {
            key: key.to_string(),
            dump_bytes: Some(listed.bytes),
            size: packed.bytes,
            sha256: packed.sha256(),
            checked: fits,
            columns: listed.columns,
            chunks: fits.then_some(pieces),
        })
    })();
    if checked.is_err() {
        discard(store, key).await;
    }
    checked
}

/// Deletes what a failed backup or copy left in `store`, even when the run is being stopped.
async fn discard(store: &dyn Store, key: &str) {
    let _shield = crate::exec::cancel::shield();
    if let Err(e) = store.delete(key).await {
        tracing::warn!("could not delete the failed backup {key} in {}: {e:#}", store.describe());
    }
}

/// [`take`], then verified: the stored bytes read back when the dump was checked on its way
/// there, else (or with `Verify::Full`) the whole object read back and checked ([`verify`]). A
/// backup that does not verify is deleted.
pub async fn take_verified(
    db: &Postgres,
    store: &dyn Store,
    key: &str,
    packing: Packing,
    how: Verify,
) -> Result<Taken> {
    let mut taken = take(db, store, key, packing).await?;
    let verified = if taken.checked && how == Verify::Stored {
        same_object(store, &taken).await
    } else {
        read_back(store, &taken).await.map(|back| {
            taken.columns = back.columns;
            taken.dump_bytes = Some(back.dump_bytes);
            taken.chunks = Some(back.chunks);
        })
    };
    if let Err(e) = verified {
        discard(store, key).await;
        return Err(e.context("the backup did not verify and was deleted"));
    }
    Ok(taken)
}

/// Copies the verified backup `taken` from `from` into `to`, then reads the copy back whole
/// (size and sha256); a copy that does not verify is deleted.
pub async fn copy_verified(from: &dyn Store, to: &dyn Store, taken: &Taken) -> Result<()> {
    let mut object =
        from.get(&taken.key).await.with_context(|| format!("cannot read {}", from.location(&taken.key)))?;
    let copied = async {
        let n = to.put(&taken.key, &mut object, Put::New).await?;
        if n != taken.size {
            bail!("copied {n} bytes of {}", taken.size);
        }
        same_object(to, taken).await
    }
    .await;
    if copied.is_err() {
        discard(to, &taken.key).await;
    }
    copied.with_context(|| format!("copying {} to {}", taken.key, to.describe()))
}

/// Reads the stored backup back whole: same size and sha256, decompresses to the same number
/// of bytes, ends with pg_dump's trailer, holds no psql meta-command outside COPY data. Returns
/// each table's column list, read on the way.
pub async fn verify(store: &dyn Store, taken: &Taken) -> Result<BTreeMap<String, Vec<String>>> {
    read_back(store, taken).await.map(|back| back.columns)
}

/// The rows at the backup of the `wanted` tables, as order-independent sums, read from the
/// verified backup `stored`: each piece checked against its SHA-256 before it is
/// decompressed (the whole object's hash at the end when the manifest has no pieces), and read
/// only as far as the last wanted table's rows. A rollback asks for the tables the deploy
/// touched; a deploy that goes well never pays for any.
pub async fn sums(store: &dyn Store, stored: &Stored, wanted: BTreeSet<String>) -> Result<BTreeMap<String, RowSum>> {
    if !stored.verified {
        bail!("backup {} was never verified; its rows are not compared with", stored.key);
    }
    let (format, codec) = kind(&stored.key)?;
    let object = store.get(&stored.key).await.with_context(|| format!("cannot read {}", stored.key))?;
    let (object, packed): (super::codec::Reader, _) = match stored.chunks.clone() {
        Some(p) => (Box::pin(chunks::verified(object, stored.size, p, stored.key.clone())), None),
        None => (Box::pin(object), Some(Meter::hashed())),
    };
    let mut plain = match &packed {
        Some(m) => codec::decoder(codec, metered(object, m)),
        None => codec::decoder(codec, object),
    };
    let mut tables = DumpTables::new(Sums::Of(wanted));
    let mut view = PlainView::new(format);
    let mut buf = vec![0u8; BUF];
    loop {
        let n = plain.read(&mut buf).await.with_context(|| format!("reading {} ({codec})", stored.key))?;
        if n == 0 {
            break;
        }
        tables.feed(view.view(&buf[..n]).with_context(|| format!("reading {}", stored.key))?);
        // Every byte so far passed its piece's check; the rest of the dump adds nothing.
        if packed.is_none() && tables.has_all() {
            return Ok(tables.tables);
        }
    }
    if let Some(m) = packed {
        let m = m.lock().expect("meter");
        stored_as_taken(m.bytes, &m.sha256(), &stored.taken())?;
    }
    Ok(tables.tables)
}

/// The stored object has the verified backup's length and sha256: the same bytes [`verify`]
/// decompressed and checked when the backup was taken, so it needs no decompression again (a
/// restore reads at hashing speed before psql sees a byte).
pub(super) async fn same_object(store: &dyn Store, taken: &Taken) -> Result<()> {
    if let Some(digest) = store.digest(&taken.key).await {
        let (size, sha256) = digest.with_context(|| format!("cannot read back {}", taken.key))?;
        return stored_as_taken(size, &sha256, taken);
    }
    let gz = Meter::hashed();
    let object = store.get(&taken.key).await.with_context(|| format!("cannot read back {}", taken.key))?;
    let mut reader = metered(BufReader::with_capacity(BUF, object), &gz);
    tokio::io::copy(&mut reader, &mut tokio::io::sink()).await.with_context(|| format!("reading {}", taken.key))?;
    let gz = gz.lock().expect("meter");
    stored_as_taken(gz.bytes, &gz.sha256(), taken)
}

/// The object read back has the length and sha256 it was stored with.
pub(super) fn stored_as_taken(size: u64, sha256: &str, taken: &Taken) -> Result<()> {
    if size != taken.size || sha256 != taken.sha256 {
        bail!(
            "{} read back as {size} bytes sha256 {sha256}, expected {} bytes sha256 {}",
            taken.key,
            taken.size,
            taken.sha256
        );
    }
    Ok(())
}

/// What reading a stored backup back found.
pub(super) struct ReadBack {
    columns: BTreeMap<String, Vec<String>>,
    /// The plain SQL's length.
    dump_bytes: u64,
    pub(super) chunks: Chunks,
}

/// [`verify`]'s read-back: the whole object decompressed, each table's columns listed, the SQL
/// checked for meta-commands and the object hashed piece by piece on the way.
pub(super) async fn read_back(store: &dyn Store, taken: &Taken) -> Result<ReadBack> {
    let (format, codec) = kind(&taken.key)?;
    let packed = Meter::hashed_in_pieces(taken.size);
    let raw = Meter::counted();
    let object = store.get(&taken.key).await.with_context(|| format!("cannot read back {}", taken.key))?;
    let mut plain = metered(codec::decoder(codec, metered(object, &packed)), &raw);
    let (lister, feed) = Lister::start(format);
    let mut buf = vec![0u8; BUF];
    loop {
        let n = plain.read(&mut buf).await.with_context(|| format!("{} does not decompress ({codec})", taken.key))?;
        if n == 0 {
            break;
        }
        if !feed.feed(&buf[..n]) {
            break; // the checker refused: its error is below
        }
    }
    drop(feed);
    let columns = lister.finish().with_context(|| format!("{} is not a plain pg_dump", taken.key))?.columns;
    let mut packed = packed.lock().expect("meter");
    let raw = raw.lock().expect("meter");
    stored_as_taken(packed.bytes, &packed.sha256(), taken)?;
    let chunks = packed.pieces.take().expect("hashed in pieces").finish();
    if taken.dump_bytes.is_some_and(|d| d != raw.bytes) || (format == Format::Plain && !raw.has_trailer()) {
        bail!(
            "{} decompresses to {} bytes (expected {}) or lacks the dump trailer",
            taken.key,
            raw.bytes,
            taken.dump_bytes.map_or("as many as pg_dump wrote".into(), |d| d.to_string())
        );
    }
    Ok(ReadBack { columns, dump_bytes: raw.bytes, chunks })
}

/// Refuses to start what would write about `need` bytes into the temporary directory unless
/// that leaves a fifth and 512 MiB to spare: it is often on the database server's own disk, and a
/// server whose disk fills stops taking writes. Returns the bytes free there.
pub async fn room_for(db: &Postgres, need: u64, what: &str) -> Result<u64> {
    let free =
        db.work_dir_free().await.context("reading the free space of $TMPDIR (else /var/tmp) where pg_dump runs")?;
    let wanted = need + need / 5 + (512 << 20);
    if free < wanted {
        bail!(
            "{what} would write about {}; there is {} free in $TMPDIR (else /var/tmp) where pg_dump runs: \
             with less than {} free (a fifth and 512 MiB to spare) deploy-guard does not start it, so that the disk \
             the database may share does not fill. Free space there, or use backup.format: plain (it needs none)",
            human_bytes(need),
            human_bytes(free),
            human_bytes(wanted)
        );
    }
    Ok(free)
}

/// The layout and codec a backup's key names.
pub(super) fn kind(key: &str) -> Result<(Format, Codec)> {
    Format::of_key(key).with_context(|| format!("{key} does not name a backup"))
}
