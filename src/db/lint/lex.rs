//! The lexer the rules read through. Comments are dropped; a string, a dollar-quoted body and a
//! quoted identifier are each one token, so a keyword inside them is never a keyword; psql
//! meta-commands and `COPY … FROM stdin` data are skipped. Statements end at semicolons. The
//! one comment kept is the author's annotation, `-- deploy-guard: allow-destructive <reason>`
//! ([`Allow`]), carried on the token it comes before.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A keyword or an unquoted identifier, as written; also numbers and `$1`.
    Word(String),
    /// A "quoted identifier": its name, exactly.
    Quoted(String),
    /// A string literal's value.
    Str(String),
    /// A dollar-quoted body.
    Dollar(String),
    /// Any other character: `(`, `)`, `,`, `.`, `:`, `;`, `=`, …
    Punct(char),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub t: Tok,
    /// Whitespace or a comment came before it (for showing the statement).
    pub space: bool,
    /// An annotation comment that belongs to this token's statement (or file).
    pub allow: Option<Allow>,
}

/// What a migration's author allows, with their reason: `-- deploy-guard: allow-destructive
/// <reason>` in (or on the line before) a statement allows that statement; `-- deploy-guard:
/// allow-destructive-file <reason>` anywhere allows the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allow {
    Statement(String),
    File(String),
}

impl Allow {
    /// The annotation in a line comment's text (after `--`); one without a reason is none.
    fn parse(comment: &str) -> Option<Allow> {
        let rest = comment.trim().strip_prefix("deploy-guard:")?.trim_start();
        let (word, reason) = rest.split_once(char::is_whitespace)?;
        let reason = reason.trim().to_string();
        match word {
            _ if reason.is_empty() => None,
            "allow-destructive" => Some(Allow::Statement(reason)),
            "allow-destructive-file" => Some(Allow::File(reason)),
            _ => None,
        }
    }
}

/// A schema-qualified name as PostgreSQL resolves it: unquoted parts folded to lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QName {
    pub schema: Option<String>,
    pub name: String,
}

/// Every token of `sql`, semicolons included.
pub fn tokens(sql: &str) -> Vec<Token> {
    let c: Vec<char> = sql.chars().collect();
    let mut out: Vec<Token> = Vec::new();
    let mut space = false;
    // A line ended since the last token: an annotation after a `;` on its line is that
    // statement's.
    let mut new_line = false;
    let mut pending: Option<Allow> = None;
    let mut stmt_start = 0;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch.is_whitespace() {
            space = true;
            new_line |= ch == '\n';
            i += 1;
            continue;
        }
        if (ch == '-' && next == Some('-')) || ch == '\\' {
            // A line comment, or a psql meta-command (`\set`, `\i`): to the end of the line.
            let start = i;
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            let text: String = c[start..i].iter().collect();
            if let Some(a) = text.strip_prefix("--").and_then(Allow::parse) {
                let n = out.len();
                match (&a, n) {
                    (Allow::Statement(_), 2..) if !new_line && out[n - 1].t == Tok::Punct(';') => {
                        out[n - 2].allow = Some(a)
                    }
                    _ => pending = Some(a),
                }
            }
            space = true;
            continue;
        }
        if ch == '/' && next == Some('*') {
            i = block_comment_end(&c, i);
            space = true;
            continue;
        }
        let t = if ch == '\'' {
            let (s, j) = quoted(&c, i, false);
            i = j;
            Tok::Str(s)
        } else if ch == '"' {
            let (s, j) = quoted(&c, i, false);
            i = j;
            Tok::Quoted(s)
        } else if ch == '$' {
            match dollar(&c, i) {
                Some((body, j)) => {
                    i = j;
                    Tok::Dollar(body)
                }
                None => {
                    // `$1`: a parameter.
                    let start = i;
                    i += 1;
                    while i < c.len() && c[i].is_ascii_digit() {
                        i += 1;
                    }
                    Tok::Word(c[start..i].iter().collect())
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '$') {
                i += 1;
            }
            let w: String = c[start..i].iter().collect();
            // E'…' (backslash escapes), B'…', X'…', N'…': one literal.
            if c.get(i) == Some(&'\'') && matches!(w.as_str(), "e" | "E" | "b" | "B" | "x" | "X" | "n" | "N") {
                let (s, j) = quoted(&c, i, w.eq_ignore_ascii_case("e"));
                i = j;
                Tok::Str(s)
            } else {
                Tok::Word(w)
            }
        } else if ch.is_ascii_digit() {
            // A number stops at `$`: `1$a$` is 1 and a dollar quote, as PostgreSQL reads it.
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                i += 1;
            }
            Tok::Word(c[start..i].iter().collect())
        } else {
            i += 1;
            Tok::Punct(ch)
        };
        let semicolon = t == Tok::Punct(';');
        out.push(Token { t, space, allow: pending.take() });
        space = false;
        new_line = false;
        if semicolon {
            let stmt = Span(&out[stmt_start..]);
            if stmt.starts(&["COPY"]) && stmt.has(&["FROM", "STDIN"]) {
                i = copy_data_end(&c, i);
            }
            stmt_start = out.len();
        }
    }
    if let (Some(a @ Allow::File(_)), Some(last)) = (pending, out.iter_mut().rfind(|t| t.t != Tok::Punct(';'))) {
        last.allow = Some(a);
    }
    out
}

/// The statements of `sql`, split at top-level semicolons; empty ones left out.
pub fn statements(sql: &str) -> Vec<Vec<Token>> {
    split_statements(tokens(sql))
}

pub fn split_statements(toks: Vec<Token>) -> Vec<Vec<Token>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for t in toks {
        if t.t == Tok::Punct(';') {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(t);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// After `/* … */`, which nests.
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                break;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// The text between the quote at `i` and its closing quote (doubled quotes are one; with
/// `backslash`, `\x` is x), and the index after it. Unterminated: to the end.
fn quoted(c: &[char], i: usize, backslash: bool) -> (String, usize) {
    let q = c[i];
    let mut s = String::new();
    let mut j = i + 1;
    while j < c.len() {
        if backslash && c[j] == '\\' && j + 1 < c.len() {
            s.push(c[j + 1]);
            j += 2;
        } else if c[j] == q && c.get(j + 1) == Some(&q) {
            s.push(q);
            j += 2;
        } else if c[j] == q {
            return (s, j + 1);
        } else {
            s.push(c[j]);
            j += 1;
        }
    }
    (s, j)
}

/// `$tag$ … $tag$` at `i`: its body and the index after it. None when `$` starts no tag.
fn dollar(c: &[char], i: usize) -> Option<(String, usize)> {
    let mut j = i + 1;
    if j < c.len() && (c[j].is_alphabetic() || c[j] == '_') {
        while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
            j += 1;
        }
    }
    if c.get(j) != Some(&'$') {
        return None;
    }
    let tag = &c[i..=j];
    let body_start = j + 1;
    let mut k = body_start;
    while k + tag.len() <= c.len() {
        if &c[k..k + tag.len()] == tag {
            return Some((c[body_start..k].iter().collect(), k + tag.len()));
        }
        k += 1;
    }
    Some((c[body_start..].iter().collect(), c.len()))
}

/// After the data a `COPY … FROM stdin` statement reads: the line `\.`.
fn copy_data_end(c: &[char], i: usize) -> usize {
    let mut line_start = i;
    while line_start < c.len() && c[line_start - 1] != '\n' {
        line_start += 1;
    }
    while line_start < c.len() {
        let end = (line_start..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len());
        let line: String = c[line_start..end].iter().collect();
        if line.trim() == "\\." {
            return end;
        }
        line_start = end + 1;
    }
    c.len()
}

/// A run of tokens, read the way the rules need: keywords, names, groups in parentheses.
#[derive(Clone, Copy, Debug)]
pub struct Span<'a>(pub &'a [Token]);

impl<'a> Span<'a> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn from(&self, i: usize) -> Span<'a> {
        Span(&self.0[i.min(self.0.len())..])
    }

    pub fn tok(&self, i: usize) -> Option<&'a Tok> {
        self.0.get(i).map(|t| &t.t)
    }

    /// The keyword at `i` is `k` (upper case).
    pub fn kw(&self, i: usize, k: &str) -> bool {
        matches!(self.tok(i), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    /// The word at `i`, upper-cased.
    pub fn word(&self, i: usize) -> Option<String> {
        match self.tok(i) {
            Some(Tok::Word(w)) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }

    pub fn punct(&self, i: usize, p: char) -> bool {
        self.tok(i) == Some(&Tok::Punct(p))
    }

    /// The keywords `ks` at `i`.
    pub fn seq(&self, i: usize, ks: &[&str]) -> bool {
        ks.iter().enumerate().all(|(n, k)| self.kw(i + n, k))
    }

    pub fn starts(&self, ks: &[&str]) -> bool {
        self.seq(0, ks)
    }

    /// Where the keywords `ks` first occur outside parentheses.
    pub fn find(&self, ks: &[&str]) -> Option<usize> {
        self.top_level().find(|&i| self.seq(i, ks))
    }

    /// The keywords `ks` occur outside parentheses.
    pub fn has(&self, ks: &[&str]) -> bool {
        self.find(ks).is_some()
    }

    /// The keyword `k` occurs anywhere, inside parentheses too.
    pub fn has_anywhere(&self, k: &str) -> bool {
        (0..self.len()).any(|i| self.kw(i, k))
    }

    /// The indexes of the tokens outside parentheses.
    pub fn top_level(&self) -> impl Iterator<Item = usize> + 'a {
        let mut depth = 0i32;
        self.0.iter().enumerate().filter_map(move |(i, t)| {
            let here = depth;
            match t.t {
                Tok::Punct('(') | Tok::Punct('[') => depth += 1,
                Tok::Punct(')') | Tok::Punct(']') => depth -= 1,
                _ => {}
            }
            (here == 0 && !matches!(t.t, Tok::Punct(')') | Tok::Punct(']'))).then_some(i)
        })
    }

    /// The index after the group that opens at `i` (`i` itself when nothing opens there).
    pub fn group_end(&self, i: usize) -> usize {
        if !self.punct(i, '(') {
            return i;
        }
        let mut depth = 0;
        for (j, t) in self.0.iter().enumerate().skip(i) {
            match t.t {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
        }
        self.len()
    }

    /// The parts between top-level commas.
    pub fn split_commas(&self) -> Vec<Span<'a>> {
        let mut out = Vec::new();
        let mut start = 0;
        for i in self.top_level() {
            if self.punct(i, ',') {
                out.push(Span(&self.0[start..i]));
                start = i + 1;
            }
        }
        out.push(self.from(start));
        out.retain(|s| !s.is_empty());
        out
    }

    /// The identifier at `i` as PostgreSQL names it.
    pub fn ident(&self, i: usize) -> Option<String> {
        match self.tok(i)? {
            Tok::Word(w) if !w.starts_with(|c: char| c.is_ascii_digit() || c == '$') => Some(w.to_lowercase()),
            Tok::Quoted(q) => Some(q.clone()),
            _ => None,
        }
    }

    /// The (possibly qualified) name at `i`, and the index after it.
    pub fn name(&self, i: usize) -> Option<(QName, usize)> {
        let mut parts = vec![self.ident(i)?];
        let mut j = i + 1;
        while self.punct(j, '.') {
            parts.push(self.ident(j + 1)?);
            j += 2;
        }
        let name = parts.pop()?;
        Some((QName { schema: parts.pop(), name }, j))
    }

    /// The statement as written, with literals left out (they may hold secrets) and
    /// whitespace folded.
    pub fn display(&self) -> String {
        let mut s = String::new();
        for t in self.0 {
            if t.space && !s.is_empty() {
                s.push(' ');
            }
            match &t.t {
                Tok::Word(w) => s.push_str(w),
                Tok::Quoted(q) => {
                    s.push('"');
                    s.push_str(&q.replace('"', "\"\""));
                    s.push('"');
                }
                Tok::Str(_) => s.push_str("'…'"),
                Tok::Dollar(_) => s.push_str("$$…$$"),
                Tok::Punct(p) => s.push(*p),
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> Vec<String> {
        statements(sql).iter().map(|s| Span(s).display()).collect()
    }

    #[test]
    fn comments_literals_and_bodies_are_single_tokens_or_gone() {
        assert_eq!(words("a; b /* ; /* nested ; */ */ ; 'x;y'"), ["a", "b", "'…'"]);
        assert_eq!(
            words("select 1 -- ; drop\n; select E'it\\'s; x' ; select $f$ ; $f$"),
            ["select 1", "select '…'", "select $$…$$"]
        );
        let t = tokens("SELECT \"drop table\", U&'x', 1$a$;$a$");
        assert!(t.contains(&Token { t: Tok::Quoted("drop table".into()), space: true, allow: None }));
        assert_eq!(t.last().unwrap().t, Tok::Dollar(";".into()), "{t:?}");
    }

    #[test]
    fn an_annotation_belongs_to_its_statement_or_its_file() {
        let allowed = |sql: &str| -> Vec<Option<Allow>> {
            statements(sql).iter().map(|s| s.iter().find_map(|t| t.allow.clone())).collect()
        };
        let why = |r: &str| Some(Allow::Statement(r.into()));
        let sql = "-- deploy-guard: allow-destructive nobody reads it\nDROP TABLE a;\nDROP TABLE b;\n\
                   DROP TABLE c; -- deploy-guard: allow-destructive archived\nDROP TABLE d;";
        assert_eq!(allowed(sql), [why("nobody reads it"), None, why("archived"), None]);
        // Without a reason, or another word: not an annotation.
        assert_eq!(allowed("-- deploy-guard: allow-destructive\nDROP TABLE a;"), [None]);
        assert_eq!(allowed("-- deploy-guard: allow-destructively x\nDROP TABLE a;"), [None]);
        assert_eq!(allowed("DROP TABLE a; SELECT '-- deploy-guard: allow-destructive x'"), [None, None]);
        let file = allowed("DROP TABLE a;\n-- deploy-guard: allow-destructive-file data moved to archive\n");
        assert_eq!(file, [Some(Allow::File("data moved to archive".into()))]);
    }

    #[test]
    fn psql_meta_commands_and_copy_data_are_skipped() {
        let sql = "\\set ON_ERROR_STOP on\nCOPY t (a) FROM stdin;\nDROP TABLE x; 1\n\\.\nSELECT 1;";
        assert_eq!(words(sql), ["COPY t (a) FROM stdin", "SELECT 1"]);
    }

    #[test]
    fn names_and_groups() {
        let toks = tokens(r#"ALTER TABLE "Sales".Orders ADD c numeric(10, 2), DROP d"#);
        let s = Span(&toks);
        let (n, next) = s.name(2).unwrap();
        assert_eq!((n.schema.as_deref(), n.name.as_str(), next), (Some("Sales"), "orders", 5));
        let parts = s.from(5).split_commas();
        assert_eq!(parts.iter().map(|p| p.display()).collect::<Vec<_>>(), ["ADD c numeric(10, 2)", "DROP d"]);
        assert_eq!(s.group_end(8), 13);
    }
}
