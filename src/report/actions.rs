//! GitHub Actions integration through its files: the step summary and outputs, and the error
//! annotation that names where a run ended (the workflow commands themselves are `console`'s).

use std::io::Write;

use anyhow::{Context, Result};

use crate::console;

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
            console::error(&format!("deploy failed at {}", failed_step.map(|s| s.name()).unwrap_or("?")), headline)
        }
        Outcome::RollbackFailed { stuck_at, .. } => {
            console::error(&format!("rollback stuck at {}", stuck_at.name()), headline)
        }
        Outcome::Aborted { at, .. } => console::error(&format!("aborted at {}", at.name()), headline),
    }
}
