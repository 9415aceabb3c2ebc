//! `${VAR}` values in the config are read from the app's env file on the target, so database
//! names and credentials stay where the user keeps them.

use anyhow::Result;

use super::{quote, run_ok, Cmd, Executor};
use crate::config::validate_var_ref as is_var_ref;

/// Parses `KEY=value` lines (`export`, quotes and comments allowed), as docker compose does.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v.split(" #").next().unwrap_or(v).trim()
        };
        out.push((k.trim().to_string(), v.to_string()));
    }
    out
}

/// Resolves `${VAR}` values from `env_file` on the target (or, with no env file, from this
/// process's environment). Plain values pass through.
pub struct Resolver {
    vars: Vec<(String, String)>,
    source: String,
}

impl Resolver {
    pub async fn load(exec: &dyn Executor, env_file: Option<&str>) -> Result<Resolver> {
        match env_file {
            Some(path) => {
                let text = run_ok(exec, &Cmd::new("read env file", format!("cat {}", quote(path)))).await?;
                Ok(Resolver { vars: parse(&text), source: format!("{path} on {}", exec.describe()) })
            }
            None => Ok(Resolver { vars: std::env::vars().collect(), source: "the environment".into() }),
        }
    }

    /// The value of `${VAR}` (a plain value as it is); `Err` says where it is not set and what
    /// to do.
    pub fn resolve(&self, value: &str) -> Result<String, String> {
        if !is_var_ref(value) {
            return Ok(value.to_string());
        }
        let name = &value[2..value.len() - 1];
        match self.vars.iter().rev().find(|(k, _)| k == name) {
            Some((_, v)) if !v.is_empty() => Ok(v.clone()),
            _ => Err(format!(
                "{value} is not set in {}; set {name} there (app.env_file is where ${{VAR}} values are read), \
                 or write the value itself here",
                self.source
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_files() {
        let vars = parse("# c\nexport A=1\nB=\"two words\"\nC='x'\nD=plain # note\n\nbad\n");
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into()),
                ("D".into(), "plain".into())
            ]
        );
    }
}
