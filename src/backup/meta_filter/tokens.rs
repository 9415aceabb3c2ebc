//! The pieces of psql's lexer (`src/fe_utils/psqlscan.l`) that the checker reads whole: a
//! number, a variable's name, a dollar quote's tag.

/// psql's `ident_start`.
pub(super) fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// psql's `dolq_cont` (an identifier's bytes but `$`).
fn tag_cont(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit()
}

/// psql's `variable_char`.
pub(super) fn variable_char(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit()
}

/// The variables psql sets itself (through psql 18): `:NAME` outside quotes is replaced by the
/// value and the value read as SQL, so an error message (`:LAST_ERROR_MESSAGE`) could carry a
/// meta-command or an unmatched quote. Any other name is undefined where deploy-guard runs psql
/// (`-X`, no `-v` but `ON_ERROR_STOP`) and psql leaves it as it is.
pub(super) const PSQL_VARIABLES: &[&[u8]] = &[
    b"AUTOCOMMIT",
    b"COMP_KEYWORD_CASE",
    b"DBNAME",
    b"ECHO",
    b"ECHO_HIDDEN",
    b"ENCODING",
    b"ERROR",
    b"FETCH_COUNT",
    b"HIDE_TABLEAM",
    b"HIDE_TOAST_COMPRESSION",
    b"HISTCONTROL",
    b"HISTFILE",
    b"HISTSIZE",
    b"HOST",
    b"IGNOREEOF",
    b"LASTOID",
    b"LAST_ERROR_MESSAGE",
    b"LAST_ERROR_SQLSTATE",
    b"ON_ERROR_ROLLBACK",
    b"ON_ERROR_STOP",
    b"PIPELINE_COMMAND_COUNT",
    b"PIPELINE_RESULT_COUNT",
    b"PIPELINE_SYNC_COUNT",
    b"PORT",
    b"PROMPT1",
    b"PROMPT2",
    b"PROMPT3",
    b"QUIET",
    b"ROW_COUNT",
    b"SERVER_VERSION_NAME",
    b"SERVER_VERSION_NUM",
    b"SERVICE",
    b"SHELL_ERROR",
    b"SHELL_EXIT_CODE",
    b"SHOW_ALL_RESULTS",
    b"SHOW_CONTEXT",
    b"SINGLELINE",
    b"SINGLESTEP",
    b"SQLSTATE",
    b"USER",
    b"VERBOSITY",
    b"VERSION",
    b"VERSION_NAME",
    b"VERSION_NUM",
    b"WATCH_INTERVAL",
];

/// The number starting at `at` (a digit, or `.` and a digit), taken whole: digits, a `.` and
/// digits, an exponent with its digits. Returns the index of its last byte. Text run into a
/// number is refused: psql versions split it differently (psql 15+ reads `1e-` or `1x` as one
/// token and starts the next after it; psql 14 and older end the number at the letter, so
/// `1e'…'` is an E-string there and `1e--` a comment), and pg_dump never writes it.
pub(super) fn number_end(body: &[u8], at: usize) -> Result<usize, &'static str> {
    let digits = |from: usize| from + body[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = digits(at);
    if body.get(i) == Some(&b'.') && body.get(i + 1) != Some(&b'.') {
        i = digits(i + 1);
    }
    if matches!(body.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(body.get(i + 1), Some(b'+' | b'-')));
        if !body.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            return Err("a number run into an exponent without digits (psql versions differ)");
        }
        i = digits(i + 1 + sign);
    }
    match body.get(i) {
        Some(&b'$') => Err("a dollar sign right after a number (psql versions differ)"),
        Some(&c) if ident_start(c) => Err("a number run into other text (psql versions differ)"),
        _ => Ok(i - 1),
    }
}

/// The `$tag$` starting at `at` (psql's `dolqdelim`), if one does.
pub(super) fn dollar_delim(body: &[u8], at: usize) -> Option<&[u8]> {
    let rest = &body[at + 1..];
    let tag = match rest.first() {
        Some(&b) if ident_start(b) => rest.iter().position(|&c| !tag_cont(c)).unwrap_or(rest.len()),
        _ => 0,
    };
    (rest.get(tag) == Some(&b'$')).then(|| &body[at..at + tag + 2])
}
