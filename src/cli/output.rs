//! What the commands print: JSON on stdout or text, the summary and the Actions outputs.

use anyhow::Result;

use crate::config::ConfigError;
use crate::model::{ExitCode, Usage};
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

/// The config error in `e`, if it is one.
pub fn config_error(e: &anyhow::Error) -> Option<&ConfigError> {
    e.downcast_ref::<ConfigError>().or_else(|| e.downcast_ref::<Usage>().and_then(|u| u.0.downcast_ref()))
}

/// The exit code of an error a command ended with: a usage or config error is 2, whatever the
/// command; anything else needs a person (3).
pub fn error_code(e: &anyhow::Error) -> ExitCode {
    if config_error(e).is_some() || e.downcast_ref::<Usage>().is_some() {
        ExitCode::Usage
    } else {
        ExitCode::Act
    }
}

/// Reports the error a command ended with: on stderr (and as an `::error` annotation under
/// Actions, on the config's line for a config error) and, with `--json`, as an error object on
/// stdout: `{"error": {"kind", "message", "exit_code", …where}}`.
pub fn print_error(json: bool, code: ExitCode, e: &anyhow::Error, title: &str) {
    let config = config_error(e);
    let kind = match code {
        ExitCode::Usage if config.is_some() => "config",
        ExitCode::Usage => "usage",
        ExitCode::Aborted => "aborted",
        _ => "failed",
    };
    if json {
        let mut obj = serde_json::json!({"kind": kind, "exit_code": code, "message": format!("{e:#}")});
        if let Some(c) = config {
            let where_ = serde_json::to_value(c).unwrap_or_default();
            obj.as_object_mut().expect("an object").extend(where_.as_object().cloned().unwrap_or_default());
        }
        println!("{}", serde_json::json!({ "error": obj }));
    }
    eprintln!("error: {}", crate::console::untrusted(&format!("{e:#}")));
    match code {
        ExitCode::Usage => eprintln!("nothing was changed."),
        ExitCode::Aborted => eprintln!("aborted before any change: nothing was changed."),
        _ => {}
    }
    let at = config.and_then(|c| {
        let file = c.file.as_deref().filter(|_| c.variable.is_none())?;
        Some(crate::console::At { file, line: c.line, column: c.column })
    });
    crate::console::error_at(title, &format!("{e:#}"), at);
}
