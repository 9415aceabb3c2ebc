//! A tool's output as a person reads it in a summary: terminal control codes removed, and the
//! END of a failing command's output (Alembic's error is the last line of a traceback; a
//! spinner's frames and INFO lines come first), from stdout when the tool said nothing on stderr.

/// `text` without ANSI escape sequences (CSI, OSC), carriage-return redraws and other control
/// characters (newlines and tabs stay).
pub fn strip_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte in @..~. Erasing the
                // line (`2K`) or going back to its start (`G`) is a spinner's redraw.
                Some('[') => {
                    let mut params = String::new();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            if c == 'G' || (c == 'K' && params == "2") {
                                out.truncate(out.rfind('\n').map(|i| i + 1).unwrap_or(0));
                            }
                            break;
                        }
                        params.push(c);
                    }
                }
                // OSC: up to BEL or ESC \
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            // A spinner redraws its line after \r: keep only what was drawn last.
            '\r' if chars.peek() != Some(&'\n') => {
                let start = out.rfind('\n').map(|i| i + 1).unwrap_or(0);
                out.truncate(start);
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// What to quote from a failed command: the last `lines` non-empty lines of its stderr, or of
/// its stdout when stderr has nothing to say. An earlier line that names the error (`error:`,
/// `ERROR`, `…Error:`) is put first when the tail leaves it out (node tools print the error, then
/// a stack and an object dump).
pub fn failure_quote(stdout: &str, stderr: &str, lines: usize) -> String {
    let pick = |text: &str| -> Vec<String> {
        strip_control(text)
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty() && !is_noise(l))
            .map(str::to_string)
            .collect()
    };
    let mut all = pick(stderr);
    if all.is_empty() {
        all = pick(stdout);
    }
    let start = all.len().saturating_sub(lines);
    let mut out: Vec<String> = Vec::new();
    if let Some(e) = all[..start].iter().rev().find(|l| names_error(l)) {
        if !all[start..].iter().any(|l| names_error(l)) {
            out.push(e.clone());
            out.push("…".into());
        }
    }
    out.extend(all[start..].iter().cloned());
    out.join("\n")
}

fn names_error(l: &str) -> bool {
    let t = l.trim_start();
    t.starts_with("error:") || t.starts_with("Error:") || t.contains("ERROR:") || t.contains("Error: ")
}

/// Lines that are never the reason: npm's config warnings, and the frames of a Rust span trace
/// that Prisma's schema engine prints after its error (`   0: module::function`, `with k=v`,
/// `at file.rs:113`).
fn is_noise(l: &str) -> bool {
    let t = l.trim_start();
    let indented = l.len() - t.len() >= 3;
    let frame = t.split_once(": ").is_some_and(|(n, f)| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && f.contains("::") && !f.contains(' ')
    });
    let at_source = t
        .strip_prefix("at ")
        .and_then(|p| p.rsplit_once(".rs:"))
        .is_some_and(|(_, line)| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()));
    l.starts_with("npm warn")
        || l.starts_with("npm WARN")
        || (indented && (frame || at_source || t.starts_with("with ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinners_and_colours_are_removed() {
        let raw =
            "\u{1b}[?25l[\u{1b}[33m⣷\u{1b}[39m] applying migrations...\r\u{1b}[2K[\u{1b}[31m✗\u{1b}[39m] failed\n\
                   \u{1b}]8;;https://x\u{7}link\u{1b}]8;;\u{7}\n";
        assert_eq!(strip_control(raw), "[✗] failed\nlink\n");
        // drizzle-kit 0.31.11, as it reached a summary
        let drizzle = "Using 'pg' driver\n[⣷] applying migrations...\u{1b}[2K\u{1b}[1G[⣷] applying migrations...";
        assert_eq!(strip_control(drizzle), "Using 'pg' driver\n[⣷] applying migrations...");
    }

    #[test]
    fn the_end_of_a_traceback_is_quoted() {
        let err = "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n\
                   INFO  [alembic.runtime.migration] Running upgrade a -> b\n\
                   Traceback (most recent call last):\n  File \"x.py\", line 1\n\
                   sqlalchemy.exc.IntegrityError: (psycopg2.errors.NotNullViolation) column \"tier\" contains null values\n";
        let q = failure_quote("", err, 2);
        assert!(q.ends_with("column \"tier\" contains null values"), "{q}");
        assert!(!q.contains("Context impl"), "{q}");
    }

    #[test]
    fn stdout_when_stderr_is_silent() {
        assert_eq!(
            failure_quote("Reading config\nerror: relation \"x\" does not exist\n", "", 3),
            "Reading config\nerror: relation \"x\" does not exist"
        );
    }

    #[test]
    fn a_span_trace_is_not_the_reason() {
        // prisma migrate deploy 6.19.3 on its WebAssembly schema engine
        let err = "Error: external connector error\nNull constraint failed: \n   0: sql_schema_connector::apply_migration::apply_script\n           with migration_name=\"2_add_tier\"\n             at schema-engine/connectors/sql-schema-connector/src/apply_migration.rs:113\n   1: schema_engine_wasm::wasm::engine::ApplyMigrations\n             at schema-engine/schema-engine-wasm/src/wasm/engine.rs:167\n";
        assert_eq!(failure_quote("", err, 6), "Error: external connector error\nNull constraint failed:");
    }

    #[test]
    fn the_error_line_before_a_stack_is_kept() {
        let err = "npm warn Unknown user config\nerror: column \"n\" contains null values\n    at a\n    at b\n  severity: 'ERROR',\n}\n";
        let q = failure_quote("", err, 3);
        assert_eq!(q, "error: column \"n\" contains null values\n…\n    at b\n  severity: 'ERROR',\n}");
    }
}
