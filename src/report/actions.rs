//! GitHub Actions integration through its files and workflow commands: the step summary,
//! outputs, log groups and an error annotation. Workflow commands go to stderr, which the runner
//! reads too, so `--json` keeps stdout clean.

use std::io::Write;

use anyhow::{Context, Result};

use crate::guard::Step;

fn in_actions() -> bool {
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
    let mut buf = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    if read.is_err() {
        // No /dev/urandom: the clock and the pid, hashed, still cannot be read from the log in advance.
        use sha2::{Digest, Sha256};
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        buf.copy_from_slice(&Sha256::digest(seed.as_bytes())[..16]);
    }
    format!("dg{}", hex::encode(buf))
}

pub fn group_start(step: Step) {
    if in_actions() {
        eprintln!("::group::{} — {}", step.name(), step.title());
    }
}

pub fn group_end() {
    if in_actions() {
        eprintln!("::endgroup::");
    }
}

/// An `::error::` annotation on the run (newlines encoded as the runner expects).
pub fn error(title: &str, message: &str) {
    if in_actions() {
        let enc = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
        eprintln!("::error title={}::{}", enc(title).replace(',', "%2C").replace(':', "%3A"), enc(message));
    }
}

/// Appends `name=value` outputs to `$GITHUB_OUTPUT` when set.
pub fn write_outputs(outputs: &[(&str, String)]) -> Result<()> {
    let Ok(path) = std::env::var("GITHUB_OUTPUT") else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .with_context(|| format!("cannot open GITHUB_OUTPUT {path}"))?;
    for (name, value) in outputs {
        if value.contains('\n') {
            writeln!(f, "{name}<<DEPLOY_GUARD_EOF\n{value}\nDEPLOY_GUARD_EOF")?;
        } else {
            writeln!(f, "{name}={value}")?;
        }
    }
    Ok(())
}

/// Writes the markdown summary to `$GITHUB_STEP_SUMMARY` (appending, as the runner expects)
/// or else to `fallback` when given.
pub fn write_summary(markdown: &str, fallback: Option<&std::path::Path>) -> Result<()> {
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("cannot open GITHUB_STEP_SUMMARY {path}"))?;
        f.write_all(markdown.as_bytes())?;
        return Ok(());
    }
    if let Some(p) = fallback {
        std::fs::write(p, markdown).with_context(|| format!("cannot write the summary to {}", p.display()))?;
    }
    Ok(())
}

/// Annotates the run with what went wrong, when something did.
pub fn error_for(outcome: &crate::guard::Outcome, headline: &str) {
    use crate::guard::Outcome;
    match outcome {
        Outcome::Deployed | Outcome::BackedUp | Outcome::Restored | Outcome::Rehearsed => {}
        Outcome::RolledBack { failed_step, .. } => {
            error(&format!("deploy failed at {}", failed_step.map(|s| s.name()).unwrap_or("?")), headline)
        }
        Outcome::RollbackFailed { stuck_at, .. } => error(&format!("rollback stuck at {}", stuck_at.name()), headline),
        Outcome::Aborted { at, .. } => error(&format!("aborted at {}", at.name()), headline),
    }
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
}
