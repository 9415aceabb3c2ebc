//! What the commands print: JSON on stdout or text, the summary and the Actions outputs.

use anyhow::Result;

use crate::model::ExitCode;
use crate::report::{self, Report};

pub fn print_out<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// Prints and files the report of a run; returns its exit code.
pub fn finish_report(g: &super::Global, r: &Report) -> Result<ExitCode> {
    let md = report::summary::render(r);
    if let Err(e) = report::actions::write_summary(&md, g.summary.as_deref()) {
        tracing::warn!("{e:#}");
    }
    if let Err(e) = report::actions::write_outputs(&r.outputs()) {
        tracing::warn!("{e:#}");
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        eprintln!("\n{}", crate::console::untrusted(&r.headline));
        for c in &r.next_commands {
            eprintln!("  {c}");
        }
    }
    Ok(r.exit_code)
}
