//! A restore stream refuses psql meta-commands: psql runs `\!` (a shell where the restore runs),
//! `\o`, `\copy`, `\i` wherever a backslash stands outside quotes and comments, so a backup that
//! was tampered with would run code where the restore runs. pg_dump writes SQL and COPY data
//! only, plus (15.14+, 16.10+, 17.6+) a `\restrict KEY` line before and an `\unrestrict KEY` line
//! after it.
//!
//! This is the second line of defence: psql itself is run restricted with a key of deploy-guard's
//! (`db::restrict`). [`Checker`] tokenises as psql's lexer does (`src/fe_utils/psqlscan.l`):
//! quotes, E-strings, quoted identifiers, dollar quotes (which open only where a token starts:
//! `1$a$` is the number 1 and a quote, `a$b$` one identifier), nested comments, `--` comments that
//! end at `\r` too, the parentheses and `BEGIN ATOMIC … END` blocks inside which `;` ends nothing,
//! psql's `:name` variables (taken whole: `:e'…'` is no E-string), and COPY … FROM stdin data up
//! to `\.`. It fails the stream at the first backslash psql would read as a command, before psql
//! sees that line. Where psql versions read the same text differently (text or a dollar sign run
//! into a number, a COPY inside a function body), or psql's reading could change under it (a
//! statement that sets `standard_conforming_strings`, a variable psql sets itself and would put
//! in the SQL), the stream is refused: pg_dump writes none of these. One rule needs no lexer: a line holding `\unrestrict`
//! and a backtick is refused wherever it stands (psql before 14.24, 15.19, 16.15, 17.11 and 18.6
//! runs the backtick command in `\unrestrict`'s argument before it checks the key).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

mod tokens;

use self::tokens::{dollar_delim, ident_start, number_end, variable_char, PSQL_VARIABLES};

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

/// The token under way in the normal state, as far as the next byte's meaning depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    /// Between tokens.
    Gap,
    /// An identifier (`$` continues it).
    Ident,
    /// `$1`.
    Param,
}

/// Where psql is in the statement it collects, as psql 14+ reads it (`;` inside parentheses
/// or a `BEGIN … END` body of `CREATE FUNCTION|PROCEDURE` ends nothing) and as psql 13 does (no
/// `BEGIN … END` tracking).
#[derive(Debug, Default)]
struct Statement {
    parens: u32,
    begins: u32,
    /// The first letters of `create`, `or`, `replace`, `function`, `procedure` among the first
    /// four identifiers (psql's heuristic for a function body).
    words: [u8; 4],
    count: usize,
    /// A statement is under way (psql 14+ / psql 13).
    open: bool,
    open13: bool,
    /// Its first identifier, lower-cased.
    first: Vec<u8>,
}

/// What a line's SQL did that is checked once the line is read.
#[derive(Debug, Default)]
struct Seen {
    /// `stdin` in a statement that starts with `COPY`.
    copy_stdin: bool,
    /// `standard_conforming_strings`, `set_config` outside quotes; `RESET ALL`, `DISCARD ALL`.
    names_scs: bool,
    set_config: bool,
    reset_all: bool,
}

/// Checks SQL text line by line (see the module doc).
#[derive(Debug)]
pub struct Checker {
    lex: Lex,
    tok: Tok,
    /// The identifier under way (up to 32 bytes, enough for every word looked for).
    ident: Vec<u8>,
    stmt: Statement,
    seen: Seen,
    /// Inside `COPY … FROM stdin;` data.
    copy: bool,
    /// The current COPY data line's first bytes (it could still be `\.`), its last ones (for a
    /// `\unrestrict` split between reads), and whether it holds `\unrestrict`.
    copy_head: Vec<u8>,
    copy_tail: Vec<u8>,
    copy_unrestrict: bool,
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
            tok: Tok::Gap,
            ident: Vec::new(),
            stmt: Statement::default(),
            seen: Seen::default(),
            copy: false,
            copy_head: Vec::new(),
            copy_tail: Vec::new(),
            copy_unrestrict: false,
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

impl Checker {
    /// Checks `input`, appending what may pass to `out`. Bytes of an SQL line are passed once
    /// the whole line is checked; COPY data passes at once.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        while !input.is_empty() {
            if self.copy {
                let n = memchr::memchr(b'\n', input).map_or(input.len(), |i| i + 1);
                let (chunk, rest) = input.split_at(n);
                self.copy_data(chunk)?;
                out.extend_from_slice(chunk);
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

    /// A piece of a COPY data line (up to and with its `\n`): streamed, never held whole.
    /// psql reads it as data, as this does; the rule that needs no lexer holds here too.
    fn copy_data(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.copy_head.len() < 4 {
            self.copy_head.extend_from_slice(&chunk[..chunk.len().min(4 - self.copy_head.len())]);
        }
        const WORD: &[u8] = b"\\unrestrict";
        let mut joined = std::mem::take(&mut self.copy_tail);
        joined.extend_from_slice(&chunk[..chunk.len().min(WORD.len())]);
        let found = memchr::memmem::find(&joined, WORD).or_else(|| memchr::memmem::find(chunk, WORD));
        if found.is_some() {
            self.copy_unrestrict = true;
        }
        if self.copy_unrestrict && memchr::memchr(b'`', chunk).is_some() {
            return Err(refuse(self.line_no + 1, "\\unrestrict with a backtick in COPY data"));
        }
        // The last bytes of the line so far: a word split between reads is found next time.
        let keep = WORD.len() - 1;
        let last = if chunk.len() >= keep {
            &chunk[chunk.len() - keep..]
        } else {
            &joined[joined.len().saturating_sub(keep)..]
        };
        self.copy_tail = last.to_vec();
        if chunk.ends_with(b"\n") {
            self.line_no += 1;
            if self.copy_head.starts_with(b"\\.\n") || self.copy_head.starts_with(b"\\.\r\n") {
                self.copy = false;
            }
            self.copy_head.clear();
            self.copy_tail.clear();
            self.copy_unrestrict = false;
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

    /// No statement is under way, as psql 14+ and psql 13 read it.
    fn starts(&self) -> (bool, bool) {
        let normal = self.lex == Lex::Normal;
        (normal && !self.stmt.open, normal && !self.stmt.open13)
    }

    fn check_line(&mut self, line: &[u8]) -> io::Result<()> {
        let n = self.line_no;
        unrestrict_backtick(n, line)?;
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let (start, start13) = self.starts();
        if (start || start13) && body.first() == Some(&b'\\') {
            return self.meta_line(body);
        }
        if self.unrestricted && !body.trim_ascii().is_empty() && !body.starts_with(b"--") {
            return Err(refuse(n, "SQL after the dump's \\unrestrict line"));
        }
        let copy_line = is_copy_from_stdin(body) && (start || start13);
        if copy_line && start != start13 {
            return Err(refuse(n, format!("a COPY inside a function body (psql versions differ): {}", show(body))));
        }
        self.seen = Seen::default();
        let mut i = 0;
        while i < body.len() {
            let b = body[i];
            match &mut self.lex {
                Lex::Normal => i = self.normal(body, i)?,
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
        // The line's end ends a token (psql reads `\n` as whitespace).
        self.end_token();
        let seen = std::mem::take(&mut self.seen);
        if seen.names_scs && !body.trim_ascii().eq_ignore_ascii_case(b"SET standard_conforming_strings = on;") {
            return Err(refuse(n, format!("it sets standard_conforming_strings: {}", show(body))));
        }
        if seen.set_config && contains_ci(body, b"standard_conforming_strings") {
            return Err(refuse(n, format!("it sets standard_conforming_strings: {}", show(body))));
        }
        if seen.reset_all {
            return Err(refuse(n, format!("it resets every setting: {}", show(body))));
        }
        // The whole line was one statement, now ended as both psqls read it: its data follows.
        if copy_line && self.starts() == (true, true) {
            self.copy = true;
            self.copies.push(body.trim_ascii_end().to_vec());
        } else if seen.copy_stdin {
            return Err(refuse(n, format!("a COPY … FROM stdin that is not as pg_dump writes it: {}", show(body))));
        }
        Ok(())
    }

    /// One byte of the normal state at `i` (more when a token is taken whole); returns the index
    /// of the last byte taken.
    fn normal(&mut self, body: &[u8], i: usize) -> io::Result<usize> {
        let n = self.line_no;
        let b = body[i];
        let next = body.get(i + 1).copied();
        // A token under way goes on, or ends here.
        match self.tok {
            Tok::Ident if ident_start(b) || b.is_ascii_digit() || b == b'$' => {
                if self.ident.len() < 32 {
                    self.ident.push(b.to_ascii_lowercase());
                }
                return Ok(i);
            }
            Tok::Param if b.is_ascii_digit() => return Ok(i),
            Tok::Param if ident_start(b) || b == b'$' => {
                return Err(refuse(
                    n,
                    format!("a parameter run into other text (psql versions differ): {}", show(body)),
                ))
            }
            _ => {}
        }
        let lone_e = self.tok == Tok::Ident && self.ident == b"e";
        self.end_token();
        match b {
            b'\\' => return Err(refuse(n, format!("a psql meta-command outside COPY data: {}", show(body)))),
            // `--` to the end of the line, or to a `\r` (psql's newline too).
            b'-' if next == Some(b'-') => {
                let end = body[i..].iter().position(|&c| c == b'\r').map_or(body.len(), |p| i + p);
                return Ok(end.saturating_sub(1).max(i + 1));
            }
            b'/' if next == Some(b'*') => {
                self.lex = Lex::Block(1);
                return Ok(i + 1);
            }
            b'\'' => {
                self.lex = Lex::Single { escapes: lone_e };
                self.open();
            }
            b'"' => {
                self.lex = Lex::Double;
                self.open();
            }
            b'$' => {
                self.open();
                if let Some(tag) = dollar_delim(body, i) {
                    let len = tag.len();
                    self.lex = Lex::Dollar(tag.to_vec());
                    return Ok(i + len - 1);
                }
                if next.is_some_and(|c| c.is_ascii_digit()) {
                    self.tok = Tok::Param;
                }
            }
            b';' => self.semicolon(),
            b'(' => {
                self.stmt.parens += 1;
                self.open();
            }
            b')' => {
                self.stmt.parens = self.stmt.parens.saturating_sub(1);
                self.open();
            }
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) => {
                self.open();
                return number_end(body, i).map_err(|why| refuse(n, format!("{why}: {}", show(body))));
            }
            c if c.is_ascii_digit() => {
                self.open();
                return number_end(body, i).map_err(|why| refuse(n, format!("{why}: {}", show(body))));
            }
            // `::` is a cast; `:name` a psql variable, taken whole (`:e'…'` is no E-string).
            b':' if next == Some(b':') => {
                self.open();
                return Ok(i + 1);
            }
            b':' if next.is_some_and(variable_char) => {
                self.open();
                let name = &body[i + 1..];
                let name = &name[..name.iter().position(|&c| !variable_char(c)).unwrap_or(name.len())];
                if PSQL_VARIABLES.contains(&name) {
                    return Err(refuse(
                        n,
                        format!("psql's own variable, whose value psql would read as SQL: {}", show(body)),
                    ));
                }
                return Ok(i + name.len());
            }
            c if ident_start(c) => {
                self.tok = Tok::Ident;
                self.ident.push(c.to_ascii_lowercase());
                self.open();
            }
            c if c.is_ascii_whitespace() || c == b'\x0c' => {}
            _ => self.open(),
        }
        Ok(i)
    }

    /// Some SQL was read: a statement is under way.
    fn open(&mut self) {
        self.stmt.open = true;
        self.stmt.open13 = true;
    }

    /// An identifier ended: psql counts it towards its function-body heuristic.
    fn end_token(&mut self) {
        if self.tok != Tok::Ident {
            self.tok = Tok::Gap;
            return;
        }
        self.tok = Tok::Gap;
        let word = std::mem::take(&mut self.ident);
        let s = &mut self.stmt;
        if s.count == 0 {
            s.words = [0; 4];
            s.first = word.clone();
        }
        if matches!(word.as_slice(), b"create" | b"function" | b"procedure" | b"or" | b"replace") && s.count < 4 {
            s.words[s.count] = word[0];
        }
        s.count += 1;
        let w = s.words;
        let body = w[0] == b'c'
            && (w[1] == b'f' || w[1] == b'p' || (w[1] == b'o' && w[2] == b'r' && (w[3] == b'f' || w[3] == b'p')));
        if body && s.parens == 0 {
            match word.as_slice() {
                b"begin" => s.begins += 1,
                b"case" if s.begins >= 1 => s.begins += 1,
                b"end" => s.begins = s.begins.saturating_sub(1),
                _ => {}
            }
        }
        let seen = &mut self.seen;
        match word.as_slice() {
            b"stdin" if s.first == b"copy" => seen.copy_stdin = true,
            b"standard_conforming_strings" => seen.names_scs = true,
            b"set_config" => seen.set_config = true,
            b"all" if s.count == 2 && matches!(s.first.as_slice(), b"reset" | b"discard") => seen.reset_all = true,
            _ => {}
        }
    }

    /// A `;` outside quotes: it ends the statement where psql would.
    fn semicolon(&mut self) {
        let s = &mut self.stmt;
        if s.parens > 0 {
            return;
        }
        s.open13 = false;
        if s.begins == 0 {
            *s = Statement::default();
        }
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

/// `COPY … FROM stdin;` alone on its line, as pg_dump writes it.
fn is_copy_from_stdin(body: &[u8]) -> bool {
    let t = body.trim_ascii_end();
    t.len() > 16
        && t[..5].eq_ignore_ascii_case(b"COPY ")
        && t[t.len() - 12..].eq_ignore_ascii_case(b" FROM stdin;")
        && memchr::memchr(b';', t) == Some(t.len() - 1)
}

/// The rule that needs no lexer (see the module doc).
fn unrestrict_backtick(line_no: u64, line: &[u8]) -> io::Result<()> {
    if let Some(at) = memchr::memmem::find(line, b"\\unrestrict") {
        if memchr::memchr(b'`', &line[at..]).is_some() {
            return Err(refuse(line_no, format!("\\unrestrict with a backtick: {}", show(line))));
        }
    }
    Ok(())
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
mod tests;
