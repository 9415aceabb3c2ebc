//! Restore: a verified backup streamed into a fresh scratch database, each piece checked
//! against the manifest before the decompressor sees it, or in place on the target.

use anyhow::{bail, Context, Result};

use super::pipeline::{kind, metered, progress, read_back, room_for, same_object, stored_as_taken, Meter};
use super::{chunks, codec, MetaGuard, Stored, TarGuard};
use crate::db::Postgres;
use crate::model::{Codec, Format};
use crate::store::Store;

/// Streams the backup `stored` into database `into` (which must be a fresh scratch
/// database), in one pass. psql runs whatever it is fed, and plain SQL alone can run programs on
/// the server (`COPY … TO PROGRAM` as a superuser), so nothing unverified reaches it, not even a
/// scratch database: each piece of the object is checked against the manifest's SHA-256 of that
/// piece before the decompressor sees it ([`chunks::verified`]); the content of those very bytes
/// (trailer, no psql meta-commands) was checked when the backup was verified, and meta-commands
/// are refused in the stream again when it decompresses here. The object is read back whole and
/// checked first (decompressed, meta-commands refused) instead when its manifest has no pieces
/// (an older deploy-guard's), or when the target decompresses and the manifest is unsigned:
/// whoever can write the store could then have rewritten the pieces' hashes with the object (it
/// then streams checked against the pieces of what that read-back saw).
/// Returns the plain SQL's length.
pub async fn restore_stream(db: &Postgres, store: &dyn Store, stored: &Stored, into: &str) -> Result<u64> {
    let restored = restore_unchecked(db, store, stored, into).await;
    if restored.is_err() && Format::of_key(&stored.key).is_some_and(|(f, _)| f == Format::Directory) {
        db.remove_work_dirs().await;
    }
    restored
}

async fn restore_unchecked(db: &Postgres, store: &dyn Store, stored: &Stored, into: &str) -> Result<u64> {
    if !stored.verified {
        bail!("backup {} was never verified; refusing to restore it", stored.key);
    }
    let (format, codec) = kind(&stored.key)?;
    if format == Format::Directory {
        room_for(db, stored.dump_bytes, "unpacking the directory-format backup").await?;
    }
    let restricted = psql_restricts(db, stored.signed, format).await?;
    let exec = db.executor().as_ref();
    let unpack_there = exec.remote() && codec::on_target(codec, exec).await?;
    let not_verified = || format!("{} is not the verified backup; nothing was restored", stored.key);
    if let Some(path) = store.path_on_target(&stored.key).filter(|_| unpack_there) {
        return restore_in_place(db, store, stored, (format, codec), &path, into, restricted)
            .await
            .with_context(not_verified);
    }
    // Over SSH psql reads what the target decompresses, never seen here: the pieces' hashes are
    // trusted in place of reading it all first only when a signature vouches for them.
    let mut pieces = stored.chunks.clone().filter(|_| stored.signed || !unpack_there);
    if pieces.is_none() && unpack_there {
        // The pieces of what was just read and checked: the target gets those very bytes, even
        // if the object is replaced in the store between the two reads.
        pieces = Some(read_back(store, &stored.taken()).await.with_context(not_verified)?.chunks);
    } else if pieces.is_none() {
        same_object(store, &stored.taken()).await.with_context(not_verified)?;
    }
    let whole_first = pieces.is_none();
    let object = store.get(&stored.key).await.with_context(|| format!("cannot read {}", stored.key))?;
    let (object, packed): (super::codec::Reader, _) = match pieces {
        Some(p) => (Box::pin(chunks::verified(object, stored.size, p, stored.key.clone())), Meter::counted()),
        None => (Box::pin(object), Meter::hashed()),
    };
    let restored = if unpack_there {
        let mut stream = metered(object, &packed);
        let ticker = progress("restore (compressed bytes)", &packed);
        let r = db.restore_packed_into(into, format, codec, &mut stream, restricted).await;
        ticker.abort();
        r
    } else {
        let dump = Meter::counted();
        let unpacked = metered(codec::decoder(codec, metered(object, &packed)), &dump);
        let ticker = progress("restore", &dump);
        // Checked again on the way in: psql's meta-commands, or what tar would unpack.
        let r = match format {
            Format::Plain => db.restore_format_into(into, format, &mut MetaGuard::new(unpacked), restricted).await,
            Format::Directory => db.restore_format_into(into, format, &mut TarGuard::new(unpacked), false).await,
        };
        ticker.abort();
        r
    };
    restored.with_context(|| format!("restoring {} into {into} failed", stored.key))?;
    let packed = packed.lock().expect("meter");
    // Pieces were each checked as they passed, and their reader fails a short or long object.
    if whole_first && (packed.bytes != stored.size || packed.sha256() != stored.sha256) {
        bail!(
            "{} is not the verified backup: read {} bytes sha256 {}, manifest says {} bytes sha256 {}",
            stored.key,
            packed.bytes,
            packed.sha256(),
            stored.size,
            stored.sha256
        );
    }
    Ok(stored.dump_bytes)
}

/// Whether psql restores this plain backup restricted (`db::psql`); an unsigned one is not
/// restored at all by a psql that cannot run restricted. (pg_restore runs no meta-commands.)
pub async fn psql_restricts(db: &Postgres, signed: bool, format: Format) -> Result<bool> {
    if format == Format::Directory {
        return Ok(false);
    }
    let psql = db.psql().await?;
    match psql.refuses_unsigned() {
        Some(why) if !signed => bail!("{why}"),
        _ => Ok(psql.restricts()),
    }
}

/// A restore from a store on the target itself: its length and sha256 are checked there against
/// the manifest, then the target decompresses it straight into psql; nothing crosses the link.
/// The content was decompressed and checked (trailer, meta-commands) when the backup was
/// verified, and these are the same bytes; the hash is checked again after the restore.
async fn restore_in_place(
    db: &Postgres,
    store: &dyn Store,
    stored: &Stored,
    (format, codec): (Format, Codec),
    path: &str,
    into: &str,
    restricted: bool,
) -> Result<u64> {
    let check = || async {
        let digest = store.digest(&stored.key).await;
        let digest = digest.unwrap_or_else(|| Err(anyhow::anyhow!("the store cannot hash {path} where it is")))?;
        stored_as_taken(digest.0, &digest.1, &stored.taken())
    };
    check().await?;
    let source = format!("{} < {}", codec.decompress_sh(), crate::exec::quote(path));
    let cmd = db.restore_file_cmd(into, format, codec.name(), &source, restricted);
    let exit = db.executor().run(&cmd, None, &mut tokio::io::sink()).await?;
    exit.check(&format!("restoring {} into {into}", stored.key))?;
    check().await.context("the backup changed on the target while it was restored")?;
    Ok(stored.dump_bytes)
}
