//! A stored backup's SHA-256 piece by piece, so that a restore checks each piece before anything
//! downstream (a decompressor, psql) reads a byte of it: one pass over the object instead of a
//! whole read to check the hash first. A piece that does not match ends the stream with an error
//! and is never passed on; what passed before it is, byte for byte, the verified backup's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Smallest piece: a restore holds back at most this much from psql while it checks a piece.
const MIN_PIECE: u64 = 2 << 20;
/// At most this many pieces (pieces grow past [`MIN_PIECE`] above 32 GiB stored), so the
/// manifest stays under about a megabyte: 64 hex digits a piece.
const MAX_PIECES: u64 = 16384;
/// Verified pieces waiting for the reader: the next piece downloads while psql takes this one.
/// With the one being read and the one being taken, three pieces' buffers, reused.
const AHEAD: usize = 1;

/// Each piece's SHA-256, in order; every piece is `piece` bytes but the last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunks {
    pub piece: u64,
    pub sha256: Vec<String>,
}

impl Chunks {
    /// The piece size for an object of `size` bytes: a power of two, at least [`MIN_PIECE`].
    pub fn piece_for(size: u64) -> u64 {
        let mut piece = MIN_PIECE;
        while size.div_ceil(piece) > MAX_PIECES {
            piece *= 2;
        }
        piece
    }

    /// The pieces of `object`, whole in memory.
    pub fn of(object: &[u8]) -> Chunks {
        let mut h = Hasher::new(object.len() as u64);
        h.feed(object);
        h.finish()
    }

    /// Whether these pieces can describe an object of `size` bytes (a manifest is hostile until
    /// checked: a huge piece size would make a restore hold that much in memory).
    pub fn fits(&self, size: u64) -> bool {
        self.piece == Chunks::piece_for(size)
            && self.sha256.len() as u64 == size.div_ceil(self.piece)
            && self.sha256.iter().all(|h| crate::model::is_sha256_hex(h))
    }
}

/// Computes [`Chunks`] of a stream fed to it.
pub struct Hasher {
    piece: u64,
    filled: u64,
    sha: Sha256,
    done: Vec<String>,
}

impl Hasher {
    /// For an object of `size` bytes.
    pub fn new(size: u64) -> Hasher {
        Hasher { piece: Chunks::piece_for(size), filled: 0, sha: Sha256::new(), done: Vec::new() }
    }

    pub fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            let take = (self.piece - self.filled).min(b.len() as u64) as usize;
            self.sha.update(&b[..take]);
            self.filled += take as u64;
            b = &b[take..];
            if self.filled == self.piece {
                self.done.push(hex::encode(std::mem::take(&mut self.sha).finalize()));
                self.filled = 0;
            }
        }
    }

    pub fn finish(mut self) -> Chunks {
        if self.filled > 0 {
            self.done.push(hex::encode(self.sha.finalize()));
        }
        Chunks { piece: self.piece, sha256: self.done }
    }
}

/// Reads `object`, which must be `size` bytes long, piece by piece on its own task and passes on
/// only the pieces whose SHA-256 is the expected one, in order; any other piece, a short object
/// or a longer one ends the stream with an error. Holds at most [`AHEAD`] + 2 pieces.
pub fn verified<R>(mut object: R, size: u64, chunks: Chunks, key: String) -> Verified
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
    // Buffers the reader is done with come back, so memory stays at a few pieces whatever the
    // allocator keeps.
    let (spent_tx, mut spent) = tokio::sync::mpsc::channel::<Vec<u8>>(AHEAD + 2);
    tokio::spawn(async move {
        if !chunks.fits(size) {
            let _ = tx.send(Err(bad(format!("{key}: the manifest's pieces do not describe {size} bytes")))).await;
            return;
        }
        let piece = chunks.piece as usize;
        for (i, want) in chunks.sha256.iter().enumerate() {
            let len = (size - i as u64 * chunks.piece).min(chunks.piece) as usize;
            let mut buf = spent.try_recv().unwrap_or_else(|_| Vec::with_capacity(len));
            buf.clear();
            buf.reserve(len);
            let got = (&mut object).take(len as u64).read_to_end(&mut buf).await;
            let checked = match got {
                Err(e) => Err(e),
                Ok(n) if n < len => Err(bad(format!(
                    "{key} is not the verified backup: it ends early, piece {} of {} is {n} bytes long",
                    i + 1,
                    chunks.sha256.len()
                ))),
                Ok(_) if hex::encode(Sha256::digest(&buf)) != *want => Err(bad(format!(
                    "{key} is not the verified backup: piece {} of {} ({} bytes from byte {}) does not match its SHA-256, and nothing of it was restored",
                    i + 1,
                    chunks.sha256.len(),
                    buf.len(),
                    i * piece
                ))),
                Ok(_) => Ok(buf),
            };
            let failed = checked.is_err();
            if tx.send(checked).await.is_err() || failed {
                return;
            }
        }
        let mut extra = [0u8; 1];
        let trailing = match object.read(&mut extra).await {
            Ok(0) => return,
            Ok(_) => bad(format!("{key} is not the verified backup: it is longer")),
            Err(e) => e,
        };
        let _ = tx.send(Err(trailing)).await;
    });
    Verified { rx, spent: spent_tx, cur: Vec::new(), at: 0 }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The reading end of [`verified`].
pub struct Verified {
    rx: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    spent: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// The piece being read, from `at`.
    cur: Vec<u8>,
    at: usize,
}

impl AsyncRead for Verified {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.at == this.cur.len() {
            match std::task::ready!(this.rx.poll_recv(cx)) {
                Some(Ok(b)) => {
                    let _ = this.spent.try_send(std::mem::replace(&mut this.cur, b));
                    this.at = 0;
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = (this.cur.len() - this.at).min(out.remaining());
        out.put_slice(&this.cur[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn chunks_of(data: &[u8]) -> Chunks {
        let mut h = Hasher::new(data.len() as u64);
        // Fed in odd sizes, as a stream arrives.
        for part in data.chunks(100_003) {
            h.feed(part);
        }
        h.finish()
    }

    /// Everything `verified` passed on, and the error that ended it.
    async fn read_all(data: Vec<u8>, size: u64, chunks: Chunks) -> (Vec<u8>, Option<String>) {
        let mut r = verified(std::io::Cursor::new(data), size, chunks, "k".into());
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn piece_size_grows_only_past_the_piece_limit() {
        assert_eq!(Chunks::piece_for(1), MIN_PIECE);
        assert_eq!(Chunks::piece_for(32 << 30), MIN_PIECE);
        assert_eq!(Chunks::piece_for((32 << 30) + 1), 2 * MIN_PIECE);
        assert_eq!(Chunks::piece_for(1 << 40), 64 << 20);
    }

    #[tokio::test]
    async fn the_verified_object_passes_whole() {
        for len in [1, MIN_PIECE as usize, 2 * MIN_PIECE as usize + 17] {
            let data = object(len);
            let chunks = chunks_of(&data);
            assert!(chunks.fits(len as u64));
            assert_eq!(chunks.sha256.len(), len.div_ceil(MIN_PIECE as usize));
            let (out, err) = read_all(data.clone(), len as u64, chunks).await;
            assert_eq!(err, None);
            assert!(out == data, "passed on {} bytes of {len}", out.len());
        }
    }

    #[tokio::test]
    async fn nothing_of_a_changed_piece_passes() {
        let piece = MIN_PIECE as usize;
        let data = object(3 * piece + 5);
        let chunks = chunks_of(&data);
        // One byte changed in the second piece: only the first piece passes.
        let mut changed = data.clone();
        changed[piece + 1000] ^= 1;
        let size = data.len() as u64;
        let (out, err) = read_all(changed, size, chunks.clone()).await;
        assert!(out == data[..piece], "passed on {} bytes", out.len());
        assert!(err.unwrap().contains("piece 2 of 4"));
        // Cut inside the last piece, at a piece boundary, and one byte too many.
        let (out, err) = read_all(data[..3 * piece + 2].to_vec(), size, chunks.clone()).await;
        assert_eq!(out.len(), 3 * piece);
        assert!(err.unwrap().contains("it ends early, piece 4 of 4 is 2 bytes long"));
        let (out, err) = read_all(data[..2 * piece].to_vec(), size, chunks.clone()).await;
        assert_eq!(out.len(), 2 * piece);
        assert!(err.unwrap().contains("it ends early, piece 3 of 4 is 0 bytes long"));
        let mut longer = data.clone();
        longer.push(0);
        let (out, err) = read_all(longer, size, chunks.clone()).await;
        assert!(out == data);
        assert!(err.unwrap().contains("it is longer"));
        // A manifest whose pieces do not fit the object's size: nothing passes.
        let (out, err) = read_all(data.clone(), size + piece as u64, chunks.clone()).await;
        assert!(out.is_empty() && err.unwrap().contains("do not describe"));
        assert!(!Chunks { piece: 1 << 40, ..chunks.clone() }.fits(data.len() as u64));
        assert!(!Chunks { sha256: chunks.sha256[1..].to_vec(), ..chunks.clone() }.fits(data.len() as u64));
        assert!(!chunks.fits(data.len() as u64 + piece as u64));
    }
}
