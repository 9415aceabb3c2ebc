//! What deploy-guard writes to its log under GitHub Actions: workflow commands (log groups, an
//! error annotation), and text from elsewhere fenced off so that none of it runs as one. They go
//! to stderr, which the runner reads too, so `--json` keeps stdout clean.

/// Whether this process runs as a GitHub Actions step.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
}

/// Text that came from elsewhere (tool and app output, errors that quote it) made safe for the
/// Actions log: under Actions it goes between `::stop-commands::TOKEN` and `::TOKEN::` with a
/// random token, so no line in it runs as a workflow command (`::add-mask::`, `::error::`,
/// `::stop-commands::` of its own…). Outside Actions it is returned as it is.
pub fn untrusted(text: &str) -> String {
    if !in_actions() || !text.contains("::") {
        return text.to_string();
    }
    wrap(text, &token())
}

fn wrap(text: &str, token: &str) -> String {
    format!("\n::stop-commands::{token}\n{}\n::{token}::", text.trim_end())
}

/// 128 random bits, hex: a token the text cannot guess.
fn token() -> String {
    format!("dg{}", crate::model::random_hex(16))
}

/// Opens a collapsible group in the Actions log.
pub fn group_start(name: &str, title: &str) {
    if in_actions() {
        eprintln!("::group::{name} — {title}");
    }
}

pub fn group_end() {
    if in_actions() {
        eprintln!("::endgroup::");
    }
}

/// An `::error::` annotation on the run (newlines encoded as the runner expects).
pub fn error(title: &str, message: &str) {
    error_at(title, message, None);
}

/// Where in a file an annotation points: the file, and the line and column when known.
pub struct At<'a> {
    pub file: &'a str,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// An `::error::` annotation, at a place in a file when given (GitHub shows it on that line).
pub fn error_at(title: &str, message: &str, at: Option<At>) {
    if in_actions() {
        eprintln!("{}", annotation(title, message, at));
    }
}

fn annotation(title: &str, message: &str, at: Option<At>) -> String {
    let enc = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let prop = |s: &str| enc(s).replace(',', "%2C").replace(':', "%3A");
    let mut props = Vec::new();
    if let Some(at) = at {
        props.push(format!("file={}", prop(at.file)));
        props.extend(at.line.map(|l| format!("line={l}")));
        props.extend(at.column.map(|c| format!("col={c}")));
    }
    props.push(format!("title={}", prop(title)));
    format!("::error {}::{}", props.join(","), enc(message))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrapped_text_starts_and_ends_on_lines_of_its_own() {
        let w = super::wrap("ok\n::add-mask::secret\n", "dgabc");
        assert_eq!(w, "\n::stop-commands::dgabc\nok\n::add-mask::secret\n::dgabc::");
        let (a, b) = (super::token(), super::token());
        assert!(a != b && a.len() == 34, "{a} {b}");
    }

    #[test]
    fn annotations_point_at_the_line() {
        let at = super::At { file: "ci/deploy-guard.yml", line: Some(6), column: Some(3) };
        assert_eq!(
            super::annotation("config", "app.helth: unknown\nsetting", Some(at)),
            "::error file=ci/deploy-guard.yml,line=6,col=3,title=config::app.helth: unknown%0Asetting"
        );
    }
}
