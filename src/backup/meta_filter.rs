//! A restore stream refuses psql meta-commands: psql runs `\!` (a shell on the target), `\o`,
//! `\copy`, `\i` wherever a backslash stands outside quotes and comments, so a backup that was
//! tampered with would run code where the restore runs. pg_dump writes SQL and COPY data only,
//! plus (15.14+, 16.10+, 17.6+) a `\restrict KEY` line before and an `\unrestrict KEY` line after
//! it. [`MetaGuard`] follows psql's lexer (quotes, E-strings, quoted identifiers, dollar quotes,
//! comments, COPY … FROM stdin data up to `\.`) and fails the stream at the first backslash psql
//! would read as a command, before psql sees that line.
//!
//! The lexer assumes `standard_conforming_strings = on`, the setting every pg_dump output sets:
//! a stream that names the setting in any other way is refused too.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Longest SQL line held while it is checked (COPY data is streamed, never held).
const MAX_LINE: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Lex {
    Normal,
    /// `'…'`; `escapes` for `E'…'`, where a backslash escapes the next byte.
    Single {
        escapes: bool,
    },
    /// `"…"`.
    Double,
    /// `$tag$…$tag$`, holding `$tag$`.
    Dollar(Vec<u8>),
    /// `/* … */`, nested.
    Block(u32),
}

/// Checks SQL text line by line (see the module doc).
#[derive(Debug)]
pub struct Checker {
    lex: Lex,
    /// Inside `COPY … FROM stdin;` data.
    copy: bool,
    /// The current COPY data line so far could still be `\.`.
    copy_line: Vec<u8>,
    /// SQL read since the last `;` (a statement under way).
    in_statement: bool,
    /// The SQL line being collected.
    line: Vec<u8>,
    line_no: u64,
    restrict_key: Option<Vec<u8>>,
    unrestricted: bool,
    /// Each `COPY … FROM stdin;` line whose data followed, in order.
    pub copies: Vec<Vec<u8>>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            lex: Lex::Normal,
            copy: false,
            copy_line: Vec::new(),
            in_statement: false,
            line: Vec::new(),
            line_no: 0,
            restrict_key: None,
            unrestricted: false,
            copies: Vec::new(),
        }
    }
}

fn refuse(line_no: u64, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the backup is refused at line {line_no}: {why}"))
}

/// Up to 60 bytes of `line`, escaped, for an error message.
fn show(line: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&line[..line.len().min(60)]).escape_debug().collect();
    if line.len() > 60 {
        format!("{s}…")
    } else {
        s
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 || b == b'$'
}

impl Checker {
    /// Checks `input`, appending what may pass to `out`. Bytes of an SQL line are passed once
    /// the whole line is checked; COPY data passes at once.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        while !input.is_empty() {
            if self.copy {
                let n = memchr::memchr(b'\n', input).map_or(input.len(), |i| i + 1);
                let (chunk, rest) = input.split_at(n);
                out.extend_from_slice(chunk);
                if self.copy_line.len() < 4 {
                    self.copy_line.extend_from_slice(&chunk[..chunk.len().min(4)]);
                }
                if chunk.ends_with(b"\n") {
                    self.line_no += 1;
                    if self.copy_line.starts_with(b"\\.\n") || self.copy_line.starts_with(b"\\.\r\n") {
                        self.copy = false;
                    }
                    self.copy_line.clear();
                }
                input = rest;
                continue;
            }
            match memchr::memchr(b'\n', input) {
                Some(i) => {
                    self.line.extend_from_slice(&input[..=i]);
                    input = &input[i + 1..];
                    self.line_no += 1;
                    let line = std::mem::take(&mut self.line);
                    self.check_line(&line)?;
                    out.extend_from_slice(&line);
                }
                None => {
                    self.line.extend_from_slice(input);
                    if self.line.len() > MAX_LINE {
                        return Err(refuse(self.line_no + 1, "an SQL line longer than 64 MiB"));
                    }
                    input = &[];
                }
            }
        }
        Ok(())
    }

    /// The end of the stream: the last line (without a newline) is checked and passed.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if !self.line.is_empty() {
            self.line_no += 1;
            let line = std::mem::take(&mut self.line);
            self.check_line(&line)?;
            out.extend_from_slice(&line);
        }
        Ok(())
    }

    fn check_line(&mut self, line: &[u8]) -> io::Result<()> {
        let n = self.line_no;
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let at_start = self.lex == Lex::Normal && !self.in_statement;
        if at_start && body.first() == Some(&b'\\') {
            return self.meta_line(body);
        }
        if contains_ci(body, b"standard_conforming_strings")
            && !(at_start && body.eq_ignore_ascii_case(b"SET standard_conforming_strings = on;"))
        {
            return Err(refuse(n, format!("it changes standard_conforming_strings: {}", show(body))));
        }
        let copy_candidate = at_start && body.len() > 5 && body[..5].eq_ignore_ascii_case(b"COPY ");
        let mut semicolons = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let b = body[i];
            match &mut self.lex {
                Lex::Normal => match b {
                    b'\\' => return Err(refuse(n, format!("a psql meta-command outside COPY data: {}", show(body)))),
                    b'-' if body.get(i + 1) == Some(&b'-') => break,
                    b'/' if body.get(i + 1) == Some(&b'*') => {
                        self.lex = Lex::Block(1);
                        i += 1;
                    }
                    b'\'' => {
                        let escapes =
                            i > 0 && body[i - 1].eq_ignore_ascii_case(&b'e') && (i < 2 || !is_ident(body[i - 2]));
                        self.lex = Lex::Single { escapes };
                        self.in_statement = true;
                    }
                    b'"' => {
                        self.lex = Lex::Double;
                        self.in_statement = true;
                    }
                    b'$' if i == 0 || !is_ident(body[i - 1]) => {
                        let tag_len = body[i + 1..]
                            .iter()
                            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80))
                            .unwrap_or(body.len() - i - 1);
                        let starts_ok = tag_len == 0 || !body[i + 1].is_ascii_digit();
                        if starts_ok && body.get(i + 1 + tag_len) == Some(&b'$') {
                            self.lex = Lex::Dollar(body[i..i + tag_len + 2].to_vec());
                            i += tag_len + 1;
                        }
                        self.in_statement = true;
                    }
                    b';' => {
                        semicolons.push(i);
                        self.in_statement = false;
                    }
                    c if c.is_ascii_whitespace() => {}
                    _ => {
                        if self.unrestricted {
                            return Err(refuse(n, "SQL after the dump's \\unrestrict line"));
                        }
                        self.in_statement = true;
                    }
                },
                Lex::Single { escapes } => match b {
                    b'\\' if *escapes => i += 1,
                    b'\'' if body.get(i + 1) == Some(&b'\'') => i += 1,
                    b'\'' => self.lex = Lex::Normal,
                    _ => {}
                },
                Lex::Double => {
                    if b == b'"' {
                        if body.get(i + 1) == Some(&b'"') {
                            i += 1;
                        } else {
                            self.lex = Lex::Normal;
                        }
                    }
                }
                Lex::Dollar(tag) => {
                    if body[i..].starts_with(tag) {
                        i += tag.len() - 1;
                        self.lex = Lex::Normal;
                    }
                }
                Lex::Block(depth) => {
                    if b == b'*' && body.get(i + 1) == Some(&b'/') {
                        *depth -= 1;
                        i += 1;
                        if *depth == 0 {
                            self.lex = Lex::Normal;
                        }
                    } else if b == b'/' && body.get(i + 1) == Some(&b'*') {
                        *depth += 1;
                        i += 1;
                    }
                }
            }
            i += 1;
        }
        // `COPY … FROM stdin;` alone on its line, as pg_dump writes it: its data follows.
        let trimmed = body.trim_ascii_end();
        if copy_candidate
            && self.lex == Lex::Normal
            && semicolons.len() == 1
            && semicolons[0] + 1 == trimmed.len()
            && trimmed.len() >= 11
            && trimmed[trimmed.len() - 11..].eq_ignore_ascii_case(b"FROM stdin;")
        {
            self.copy = true;
            self.copies.push(trimmed.to_vec());
        }
        Ok(())
    }

    /// `\restrict KEY` / `\unrestrict KEY` (KEY alphanumeric), as pg_dump writes them; nothing else.
    fn meta_line(&mut self, body: &[u8]) -> io::Result<()> {
        let n = self.line_no;
        let key_ok = |k: &[u8]| !k.is_empty() && k.len() <= 256 && k.iter().all(u8::is_ascii_alphanumeric);
        if let Some(key) = body.strip_prefix(b"\\restrict ") {
            if key_ok(key) && self.restrict_key.is_none() && !self.unrestricted {
                self.restrict_key = Some(key.to_vec());
                return Ok(());
            }
        }
        if let Some(key) = body.strip_prefix(b"\\unrestrict ") {
            if key_ok(key) && self.restrict_key.as_deref() == Some(key) && !self.unrestricted {
                self.unrestricted = true;
                return Ok(());
            }
        }
        Err(refuse(n, format!("a psql meta-command outside COPY data: {}", show(body))))
    }
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Wraps a plain SQL stream; reading fails with `InvalidData` at the first psql meta-command
/// outside COPY data (see the module doc), before any byte of its line is passed on.
pub struct MetaGuard<R> {
    inner: R,
    checker: Checker,
    pending: Vec<u8>,
    pos: usize,
    buf: Vec<u8>,
    done: bool,
}

impl<R> MetaGuard<R> {
    pub fn new(inner: R) -> MetaGuard<R> {
        MetaGuard {
            inner,
            checker: Checker::default(),
            pending: Vec::new(),
            pos: 0,
            buf: vec![0; 64 * 1024],
            done: false,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for MetaGuard<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.pending.len() {
                let n = out.remaining().min(this.pending.len() - this.pos);
                out.put_slice(&this.pending[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            this.pending.clear();
            this.pos = 0;
            let mut rb = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let filled = rb.filled().len();
            if filled == 0 {
                this.done = true;
                this.checker.finish(&mut this.pending)?;
            } else {
                let chunk = this.buf[..filled].to_vec();
                this.checker.feed(&chunk, &mut this.pending)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Result<String, String> {
        // Fed in 3-byte chunks: nothing depends on where reads split the stream.
        let mut c = Checker::default();
        let mut out = Vec::new();
        for chunk in sql.as_bytes().chunks(3) {
            c.feed(chunk, &mut out).map_err(|e| e.to_string())?;
        }
        c.finish(&mut out).map_err(|e| e.to_string())?;
        assert_eq!(out, sql.as_bytes(), "passed bytes differ");
        Ok(String::from_utf8(out).unwrap())
    }

    const HEAD: &str =
        "--\n-- PostgreSQL database dump\n--\n\n\\restrict Abc123XYZ\n\nSET standard_conforming_strings = on;\n";

    #[test]
    fn pg_dump_output_passes() {
        let sql = format!(
            "{HEAD}CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $_$\nBEGIN RETURN '\\x'; END\n$_$;\n\
             CREATE TABLE \"we\\ird\" (a text CHECK (a ~ '^[a-z]+\\.com$'), b text DEFAULT E'it\\'s \\\\');\n\
             COMMENT ON TABLE t IS 'a\n\\! not a command, inside a string\n';\n\
             /* a comment \\! /* nested */ still */\n\
             COPY public.t (a, b) FROM stdin;\n\\N\tx\\ty\n\\\\!\tz\n\\.\n\
             SELECT pg_catalog.setval('s', 1, true);\n\
             --\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict Abc123XYZ\n\n"
        );
        check(&sql).unwrap();
        // The COPY lines whose data followed, listed: not one inside a string or a comment.
        let mut c = Checker::default();
        let sql = format!(
            "{HEAD}-- COPY x (a) FROM stdin;\nSELECT 'COPY y (b) FROM stdin;\n';\n\
             COPY public.t (a, b) FROM stdin;\n1\t2\n\\.\n"
        );
        c.feed(sql.as_bytes(), &mut Vec::new()).unwrap();
        assert_eq!(c.copies, [b"COPY public.t (a, b) FROM stdin;".to_vec()]);
    }

    #[test]
    fn meta_commands_outside_copy_data_are_refused() {
        for (bad, why) in [
            ("\\! touch /tmp/x\n", "meta-command outside COPY data: \\\\! touch /tmp/x"),
            ("SELECT 1; \\! id\n", "meta-command outside COPY data"),
            ("SELECT 1 \\g /tmp/out\n", "meta-command"),
            ("\\o /tmp/x\n", "meta-command"),
            ("\\restrict bad-key\n", "meta-command"),
            ("\\restrict K2\n", "meta-command"),
            ("\\unrestrict Other\n", "meta-command"),
            ("SET standard_conforming_strings = off;\nSELECT 'a\\' \\! id '';\n", "standard_conforming_strings"),
            ("\\unrestrict Abc123XYZ\nDROP TABLE t;\n", "SQL after the dump's \\unrestrict line"),
            // A COPY line inside a string is not a COPY: the lines after it are SQL again.
            ("SELECT '\nCOPY t FROM stdin;\n';\n\\! touch /tmp/x\n\\.\n", "meta-command"),
            // A COPY that does not end its statement on its line is not one either.
            ("COPY t FROM stdin; SELECT 1;\n\\! id\n", "meta-command"),
            // After `\.` the data ends.
            ("COPY t FROM stdin;\n1\n\\.\n\\! id\n", "meta-command"),
            ("SELECT $$ $$; \\! id\n", "meta-command"),
            ("SELECT E'\\'' \\! id\n", "meta-command"),
        ] {
            let e = check(&format!("{HEAD}{bad}")).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
