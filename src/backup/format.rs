//! A backup's layout, named by its key like the codec: pg_dump's plain SQL (`.sql.zst`, restored
//! by psql in one transaction), or pg_dump's directory format in one tar (`.dir.tar.zst`: dumped
//! with `pg_dump -j`, restored with `pg_restore -j`, so tables load and indexes build side by
//! side on a server with the cores for it).
//!
//! Every check deploy-guard makes on a backup reads plain SQL (each table's `COPY … FROM stdin;`
//! and rows, pg_dump's trailer): [`PlainView`] gives the directory format that view, read from
//! the tar as it streams past: the TOC (`toc.dat`, first in the tar) names each table's COPY
//! statement and data file, and the trailer is given only once the TOC and every file it names
//! were read whole.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::pipeline::TRAILER;
use crate::model::Format;

/// The plain SQL view of a dump's bytes (see the module doc).
pub enum PlainView {
    Plain,
    Directory(Box<TarToc>),
}

impl PlainView {
    pub fn new(format: Format) -> PlainView {
        match format {
            Format::Plain => PlainView::Plain,
            Format::Directory => PlainView::Directory(Box::default()),
        }
    }

    /// The plain SQL `chunk` of the dump stands for.
    pub fn view<'a>(&'a mut self, chunk: &'a [u8]) -> io::Result<&'a [u8]> {
        match self {
            PlainView::Plain => Ok(chunk),
            PlainView::Directory(t) => {
                t.out.clear();
                t.feed(chunk)?;
                Ok(&t.out)
            }
        }
    }

    /// What the end of the dump stands for: nothing for plain SQL (its own trailer passed by);
    /// pg_dump's trailer for a directory archive that was whole, an error for one that was not.
    pub fn finish(&mut self) -> io::Result<&[u8]> {
        match self {
            PlainView::Plain => Ok(&[]),
            PlainView::Directory(t) => {
                t.out.clear();
                t.finish()?;
                Ok(&t.out)
            }
        }
    }
}

/// Wraps a directory archive's tar stream; reading fails with `InvalidData` at the first thing
/// `pg_dump -Fd` does not write (a link, a path, a file its TOC does not name, a cut-off end),
/// before tar sees the header that would act on it.
pub struct TarGuard<R> {
    inner: R,
    toc: TarToc,
    done: bool,
}

impl<R> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard { inner, toc: TarToc::default(), done: false }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TarGuard<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Ok(()));
        }
        let before = out.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
        let new = &out.filled()[before..];
        // A header passes only once all of it is checked: its first bytes alone make tar do nothing.
        let checked = if new.is_empty() {
            this.done = true;
            this.toc.finish()
        } else {
            this.toc.feed(new)
        };
        this.toc.out.clear();
        if let Err(e) = checked {
            out.set_filled(before);
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(()))
    }
}

const BLOCK: usize = 512;
/// Largest `toc.dat` read (it holds every object's SQL definition, not the rows).
const MAX_TOC: u64 = 256 << 20;

fn bad(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("not a pg_dump directory archive: {why}"))
}

/// The file of the tar being read.
enum Body {
    /// `toc.dat`, collected whole.
    Toc(Vec<u8>),
    /// A table's rows: the last bytes, to check the COPY data's `\.` end.
    Rows(Vec<u8>),
    /// A list of large objects (`blobs.toc`): pg_restore opens each file it names.
    LoList(Vec<u8>),
    /// A large object's data: skipped.
    Other,
}

/// Reads a tar of `pg_dump -Fd -Z0` as it streams (see [`PlainView`]).
#[derive(Default)]
pub struct TarToc {
    header: Vec<u8>,
    /// The file being read: its kind, its name, bytes left, padding left after it.
    body: Option<(Body, String, u64, u64)>,
    /// Padding still to skip after a file.
    pad: u64,
    /// The tar's end (a zero block) was read.
    ended: bool,
    /// Data file name → its table's `COPY … FROM stdin;` (None: not a table's rows).
    toc: Option<BTreeMap<String, Option<String>>>,
    seen: BTreeSet<String>,
    /// Large objects' data files named by the lists read so far.
    lo_listed: BTreeSet<String>,
    out: Vec<u8>,
}

impl TarToc {
    fn feed(&mut self, mut input: &[u8]) -> io::Result<()> {
        while !input.is_empty() {
            if self.ended {
                // The end-of-archive blocks and tar's record padding.
                if input.iter().any(|&b| b != 0) {
                    return Err(bad("bytes after the end of the tar"));
                }
                return Ok(());
            }
            if self.pad > 0 {
                let n = (self.pad as usize).min(input.len());
                self.pad -= n as u64;
                input = &input[n..];
                continue;
            }
            if let Some((body, _, left, _)) = &mut self.body {
                let n = (*left).min(input.len() as u64) as usize;
                let (part, rest) = input.split_at(n);
                match body {
                    Body::Toc(buf) | Body::LoList(buf) => buf.extend_from_slice(part),
                    Body::Rows(tail) => {
                        self.out.extend_from_slice(part);
                        tail.extend_from_slice(&part[part.len().saturating_sub(8)..]);
                        let cut = tail.len().saturating_sub(8);
                        tail.drain(..cut);
                    }
                    Body::Other => {}
                }
                *left -= n as u64;
                input = rest;
                if *left == 0 {
                    self.end_file()?;
                }
                continue;
            }
            let n = (BLOCK - self.header.len()).min(input.len());
            self.header.extend_from_slice(&input[..n]);
            input = &input[n..];
            if self.header.len() == BLOCK {
                let header = std::mem::take(&mut self.header);
                self.start_file(&header)?;
            }
        }
        Ok(())
    }

    fn start_file(&mut self, h: &[u8]) -> io::Result<()> {
        if h.iter().all(|&b| b == 0) {
            self.ended = true;
            return Ok(());
        }
        let stored: u64 = octal(&h[148..156]).ok_or_else(|| bad("a tar header without a checksum"))?;
        let sum: u64 = h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u64 }).sum();
        if sum != stored {
            return Err(bad("a tar header fails its checksum"));
        }
        if !matches!(h[156], b'0' | 0) {
            return Err(bad(format!("a tar member of type {:?} (only files belong in it)", h[156] as char)));
        }
        let name = cstr(&h[..100]);
        let name = name.strip_prefix("./").unwrap_or(&name).to_string();
        if h[257..262] == *b"ustar" && h[345] != 0 {
            return Err(bad("a tar member in a subdirectory"));
        }
        let size = tar_size(&h[124..136]).ok_or_else(|| bad(format!("{name}'s size")))?;
        if !self.seen.insert(name.clone()) {
            return Err(bad(format!("{name} twice")));
        }
        let body = match (&self.toc, name.as_str()) {
            (None, "toc.dat") if size <= MAX_TOC => Body::Toc(Vec::with_capacity(size as usize)),
            (None, "toc.dat") => return Err(bad(format!("toc.dat of {size} bytes"))),
            (None, _) => return Err(bad(format!("{name} before toc.dat"))),
            (Some(toc), _) => match toc.get(&name) {
                Some(Some(copy)) => {
                    self.out.extend_from_slice(copy.as_bytes());
                    if !copy.ends_with('\n') {
                        self.out.push(b'\n');
                    }
                    Body::Rows(Vec::new())
                }
                Some(None) if size <= MAX_TOC => Body::LoList(Vec::with_capacity(size as usize)),
                Some(None) => return Err(bad(format!("{name} of {size} bytes"))),
                None if is_lo_file(&name) => Body::Other,
                None => return Err(bad(format!("{name}, which its TOC does not name"))),
            },
        };
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.body = Some((body, name, size, pad));
        if size == 0 {
            self.end_file()?;
        }
        Ok(())
    }

    fn end_file(&mut self) -> io::Result<()> {
        let (body, name, _, pad) = self.body.take().expect("a file under way");
        self.pad = pad;
        match body {
            Body::Toc(bytes) => self.toc = Some(read_toc(&bytes)?),
            Body::Rows(tail) => {
                // pg_dump ends the rows with `\.` and blank lines; the view ends COPY itself when
                // a version does not (the tar's sizes, not this, say the file is whole).
                let end = tail.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1);
                let text = &tail[..end];
                let marked = text.ends_with(b"\\.") && (text.len() == 2 || text[text.len() - 3] == b'\n');
                if !marked {
                    if !text.is_empty() && !tail.ends_with(b"\n") {
                        return Err(bad(format!("{name} ends inside a row")));
                    }
                    self.out.extend_from_slice(b"\\.\n");
                }
            }
            Body::LoList(list) => {
                // `OID blob_OID.dat` per line: pg_restore opens each name as a path.
                for line in list.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let line = String::from_utf8_lossy(line);
                    match line.split_once(' ') {
                        Some((oid, file)) if digits(oid) && is_lo_file(file) => {
                            self.lo_listed.insert(file.to_string());
                        }
                        _ => return Err(bad(format!("{name} lists {line:?}"))),
                    }
                }
            }
            Body::Other => {}
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some(toc) = &self.toc else { return Err(bad("no toc.dat")) };
        if self.body.is_some() || !self.header.is_empty() || !self.ended {
            return Err(bad("it ends inside a file (truncated)"));
        }
        if let Some(missing) = toc.keys().chain(&self.lo_listed).find(|f| !self.seen.contains(*f)) {
            return Err(bad(format!("{missing}, named by its TOC, is missing")));
        }
        if let Some(extra) = self.seen.iter().find(|f| is_lo_file(f) && !self.lo_listed.contains(*f)) {
            return Err(bad(format!("{extra}, which no list of large objects names")));
        }
        self.out.extend_from_slice(format!("\n{TRAILER}\n").as_bytes());
        Ok(())
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A large object's data file, named by a list of large objects rather than the TOC.
fn is_lo_file(name: &str) -> bool {
    name.strip_prefix("blob_").and_then(|n| n.strip_suffix(".dat")).is_some_and(digits)
}

/// What a TOC may name: a table's rows (`DUMPID.dat`) or a list of large objects (`blobs.toc`,
/// `blobs_N.toc` from pg_dump 17). Nothing else: pg_restore opens the name as a path.
fn is_toc_file(name: &str) -> bool {
    name.strip_suffix(".dat").is_some_and(digits)
        || name == "blobs.toc"
        || name.strip_prefix("blobs_").and_then(|n| n.strip_suffix(".toc")).is_some_and(digits)
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// An octal field as GNU tar reads one: spaces, octal digits, then nothing but spaces or NULs.
/// Anything else is refused: a leading `+` or `-` is GNU tar's old base-64 (`+0` is 52 to it),
/// and a number read here differently from tar would let tar unpack a member never checked here.
fn octal(b: &[u8]) -> Option<u64> {
    let start = b.iter().position(|&c| c != b' ')?;
    let digits = b[start..].iter().take_while(|c| (b'0'..=b'7').contains(*c)).count();
    if digits == 0 || !b[start + digits..].iter().all(|&c| c == b' ' || c == 0) {
        return None;
    }
    b[start..start + digits].iter().try_fold(0u64, |n, &c| n.checked_mul(8)?.checked_add(u64::from(c - b'0')))
}

/// A size field: octal, or base-256 (GNU tar's form for files of 8 GiB and more).
fn tar_size(b: &[u8]) -> Option<u64> {
    if b[0] & 0x80 != 0 {
        if b[0] != 0x80 || b[1..4].iter().any(|&x| x != 0) {
            return None;
        }
        return Some(b[4..].iter().fold(0u64, |n, &x| (n << 8) | x as u64));
    }
    octal(b)
}

/// Reads `toc.dat` (pg_dump's `WriteHead` and `WriteToc`, archive versions 1.14 to 1.16):
/// each data file's name, with its table's COPY statement when it holds a table's rows.
fn read_toc(b: &[u8]) -> io::Result<BTreeMap<String, Option<String>>> {
    let mut r = TocReader { b, at: 0, int_size: 4 };
    if r.bytes(5)? != b"PGDMP" {
        return Err(bad("toc.dat lacks its PGDMP signature"));
    }
    let (vmaj, vmin, _rev) = (r.byte()?, r.byte()?, r.byte()?);
    if vmaj != 1 || !(14..=16).contains(&vmin) {
        return Err(bad(format!(
            "archive version {vmaj}.{vmin} (this deploy-guard reads 1.14 to 1.16, from pg_dump 12 to 19; use backup.format: plain)"
        )));
    }
    r.int_size = r.byte()? as usize;
    if !(1..=8).contains(&r.int_size) {
        return Err(bad(format!("integers of {} bytes", r.int_size)));
    }
    let _off_size = r.byte()?;
    if r.byte()? != 3 {
        return Err(bad("toc.dat is not the directory format's"));
    }
    let compression = if vmin >= 15 { r.byte()? as i64 } else { r.int()? };
    if compression != 0 {
        return Err(bad("its files are compressed (deploy-guard dumps with -Z0 and compresses the tar)"));
    }
    for _ in 0..7 {
        r.int()?; // the dump's date
    }
    for _ in 0..3 {
        r.str()?; // database name, server and pg_dump versions
    }
    let count = r.int()?;
    if !(0..=10_000_000).contains(&count) {
        return Err(bad(format!("a TOC of {count} entries")));
    }
    let mut files = BTreeMap::new();
    for _ in 0..count {
        r.int()?; // dump id
        r.int()?; // had dumper
        r.str()?; // table oid
        r.str()?; // oid
        r.str()?; // tag
        let desc = r.str()?.unwrap_or_default();
        r.int()?; // section
        r.str()?; // definition
        r.str()?; // drop statement
        let copy = r.str()?;
        r.str()?; // namespace
        r.str()?; // tablespace
        r.str()?; // table access method
        if vmin >= 16 {
            r.int()?; // relkind
        }
        r.str()?; // owner
        r.str()?; // "false" (WITH OIDS)
        while r.str()?.is_some() {} // dependencies
        let file = r.str()?.unwrap_or_default();
        if file.is_empty() {
            continue;
        }
        if !is_toc_file(&file) {
            return Err(bad(format!("a data file named {file:?}")));
        }
        let copy = match (desc.as_str(), copy) {
            ("TABLE DATA", Some(copy)) if file.ends_with(".dat") && !copy.is_empty() => Some(copy),
            (_, _) if file.ends_with(".toc") => None,
            _ => return Err(bad(format!("{file} for a {desc} entry"))),
        };
        if files.insert(file.clone(), copy).is_some() {
            return Err(bad(format!("{file} named twice")));
        }
    }
    Ok(files)
}

struct TocReader<'a> {
    b: &'a [u8],
    at: usize,
    int_size: usize,
}

impl TocReader<'_> {
    fn bytes(&mut self, n: usize) -> io::Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| bad("toc.dat is cut short"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> io::Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// pg_dump's `WriteInt`: a sign byte, then the magnitude, least significant byte first.
    fn int(&mut self) -> io::Result<i64> {
        let negative = self.byte()? != 0;
        let n = self.int_size;
        let v = self.bytes(n)?.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64);
        let v = i64::try_from(v).map_err(|_| bad("an integer out of range in toc.dat"))?;
        Ok(if negative { -v } else { v })
    }

    /// pg_dump's `WriteStr`: a length (-1 for NULL), then the bytes.
    fn str(&mut self) -> io::Result<Option<String>> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let s = self.bytes(len as usize)?;
        Ok(Some(String::from_utf8_lossy(s).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Codec;

    #[test]
    fn keys_name_their_format_and_codec() {
        assert_eq!(Format::of_key("a/b.sql.zst"), Some((Format::Plain, Codec::Zstd)));
        assert_eq!(Format::of_key("a/b.sql.gz"), Some((Format::Plain, Codec::Gzip)));
        assert_eq!(Format::of_key("a/b.dir.tar.zst"), Some((Format::Directory, Codec::Zstd)));
        assert_eq!(Format::of_key("a/b.dir.tar.gz"), Some((Format::Directory, Codec::Gzip)));
        assert_eq!(Format::of_key("a/b.tar.gz"), None);
        assert_eq!(Format::of_key("a/b.sql"), None);
        assert_eq!(Format::suffixes().count(), 4);
    }

    #[test]
    fn tar_numbers_are_read_as_gnu_tar_reads_them() {
        assert_eq!(octal(b"0000644\0"), Some(0o644));
        assert_eq!(octal(b"  12 \0\0\0"), Some(0o12));
        assert_eq!(octal(b"00000001000\0"), Some(512));
        for bad in [&b"+0\0\0\0\0\0\0"[..], b"-1\0", b"0x10\0", b"12a\0", b"\0\0\0", b"   ", b"8\0", b"1 2\0"] {
            assert_eq!(octal(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(tar_size(b"+0\0\0\0\0\0\0\0\0\0\0"), None);
    }

    #[test]
    fn a_stream_that_is_not_a_tar_is_refused() {
        let mut v = PlainView::new(Format::Directory);
        let e = v.view(&[b'x'; 1024]).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        let mut v = PlainView::new(Format::Directory);
        assert!(v.finish().unwrap_err().to_string().contains("no toc.dat"));
    }
}
