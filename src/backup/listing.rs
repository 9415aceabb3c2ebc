//! The check of a dump on its way to the store, on a thread of its own fed copies of the stream
//! through a bounded channel: beside the compressor (or, when the target compressed it, after a
//! decompressor of its own), never after the store. It refuses psql meta-commands, sees pg_dump's
//! trailer, counts the plain bytes and lists each table's columns from the COPY lines it passes;
//! rows are summed later, only for the tables a rollback compares, so what a deploy pays does not
//! grow with the data.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::meta_filter::Checker;
use super::pipeline::TRAILER;
use super::PlainView;
use crate::db::copy_header;
use crate::exec::Tail;
use crate::model::{Codec, Format};

const BUF: usize = 256 * 1024;

/// What the check saw of a whole dump.
pub(super) struct Listed {
    /// Each table the dump holds rows for, with its columns as dumped.
    pub columns: BTreeMap<String, Vec<String>>,
    /// Bytes pg_dump wrote (plain SQL, or the directory format's tar).
    pub bytes: u64,
    /// The plain SQL ended with pg_dump's completion trailer (a directory archive's view: when
    /// the archive was whole).
    pub trailer: bool,
}

/// The check, running; [`Lister::finish`] waits for its verdict.
pub(super) struct Lister(std::thread::JoinHandle<std::io::Result<Listed>>);

/// What feeds a [`Lister`]; dropping it ends the stream.
pub(super) struct Feed(SyncSender<Vec<u8>>);

impl Lister {
    /// Fed the dump as pg_dump wrote it.
    pub fn start(format: Format) -> (Lister, Feed) {
        let (tx, rx) = sync_channel::<Vec<u8>>(8);
        let thread = std::thread::spawn(move || {
            let mut listing = Listing::new(format);
            while let Ok(chunk) = rx.recv() {
                listing.feed(&chunk)?;
            }
            listing.finish()
        });
        (Lister(thread), Feed(tx))
    }

    /// Fed the dump as `codec` compressed it (on the target): decompressed on the same thread.
    pub fn start_packed(format: Format, codec: Codec) -> (Lister, Feed) {
        let (tx, rx) = sync_channel::<Vec<u8>>(8);
        let thread = std::thread::spawn(move || {
            let input = Chunks { rx, chunk: Vec::new(), at: 0 };
            let mut plain: Box<dyn Read> = match codec {
                // Every frame or member, in order, as the async decoders read them.
                Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
                Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            };
            let mut listing = Listing::new(format);
            let mut buf = vec![0u8; BUF];
            loop {
                let n = plain.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                listing.feed(&buf[..n])?;
            }
            listing.finish()
        });
        (Lister(thread), Feed(tx))
    }

    /// The verdict, once the feed is dropped: an error for what is not a whole pg_dump.
    pub fn finish(self) -> std::io::Result<Listed> {
        self.0.join().unwrap_or_else(|_| Err(std::io::Error::other("the dump's check panicked")))
    }
}

impl Feed {
    /// False once the check has refused what it was fed.
    pub fn feed(&self, b: &[u8]) -> bool {
        b.is_empty() || self.0.send(b.to_vec()).is_ok()
    }
}

/// The check's state over the plain stream.
struct Listing {
    checker: Checker,
    view: PlainView,
    passed: Vec<u8>,
    bytes: u64,
    tail: Tail,
}

impl Listing {
    fn new(format: Format) -> Listing {
        Listing {
            checker: Checker::default(),
            view: PlainView::new(format),
            passed: Vec::new(),
            bytes: 0,
            tail: Tail::new(4096),
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.bytes += chunk.len() as u64;
        self.passed.clear();
        let plain = self.view.view(chunk)?;
        self.tail.push(plain);
        self.checker.feed(plain, &mut self.passed)
    }

    fn finish(mut self) -> std::io::Result<Listed> {
        // A directory archive's view ends with the trailer only when the archive was whole.
        let last = self.view.finish()?;
        self.tail.push(last);
        self.checker.feed(last, &mut self.passed)?;
        self.checker.finish(&mut self.passed)?;
        Ok(Listed {
            columns: self.checker.copies.iter().filter_map(|line| copy_header(line)).collect(),
            bytes: self.bytes,
            trailer: self.tail.text().contains(TRAILER),
        })
    }
}

/// The compressed chunks of a channel as a reader.
struct Chunks {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => (self.chunk, self.at) = (c, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const DUMP: &str = "SET statement_timeout = 0;\nCOPY public.t (a, b) FROM stdin;\n1\tx\n\\.\n\n-- PostgreSQL database dump complete\n\n";

    async fn packed(codec: Codec, sql: &str) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::codec::encoder(codec, sql.as_bytes(), codec.default_level()).read_to_end(&mut out).await.unwrap();
        out
    }

    fn list(lister: Lister, feed: Feed, bytes: &[u8]) -> std::io::Result<Listed> {
        for chunk in bytes.chunks(7) {
            feed.feed(chunk);
        }
        drop(feed);
        lister.finish()
    }

    #[tokio::test]
    async fn the_target_s_compressed_stream_is_checked_as_the_plain_one() {
        for codec in Codec::ALL {
            let (lister, feed) = Lister::start_packed(Format::Plain, codec);
            let listed = list(lister, feed, &packed(codec, DUMP).await).unwrap();
            assert_eq!(listed.columns["public.t"], ["a", "b"], "{codec}");
            assert_eq!((listed.bytes, listed.trailer), (DUMP.len() as u64, true), "{codec}");
            let forged = DUMP.replace("SET statement_timeout", "\\! touch /tmp/x\nSET statement_timeout");
            let (lister, feed) = Lister::start_packed(Format::Plain, codec);
            assert!(list(lister, feed, &packed(codec, &forged).await).is_err(), "{codec}: a meta-command passed");
            let (lister, feed) = Lister::start_packed(Format::Plain, codec);
            let cut = list(lister, feed, &packed(codec, &DUMP[..40]).await).unwrap();
            assert!(!cut.trailer, "{codec}");
        }
        let (lister, feed) = Lister::start(Format::Plain);
        let listed = list(lister, feed, DUMP.as_bytes()).unwrap();
        assert_eq!((listed.bytes, listed.trailer, listed.columns.len()), (DUMP.len() as u64, true, 1));
    }
}
