use anyhow::{bail, Result};
use async_trait::async_trait;

use super::{tool_cmd, Done, Run, StepSpec};
use crate::exec::{self, Cmd};

pub struct Migrate;

impl Migrate {
    fn cmd(run: &Run) -> Option<Cmd> {
        let tag = run.tag.as_deref()?;
        Some(tool_cmd(run, "migrate", tag, &run.w.migrator.run_script(tag, run.sha.as_str())))
    }
}

#[async_trait]
impl StepSpec for Migrate {
    fn what(&self, run: &Run) -> String {
        format!("run the migrations (timeout {})", humantime::format_duration(run.w.migrator.timeout))
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        Self::cmd(run).into_iter().collect()
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        run.code_tag()?;
        let cmd = Self::cmd(run).expect("a tag");
        let out = exec::capture(run.w.exec.as_ref(), &cmd).await?;
        if !out.exit.success() {
            bail!(
                "the migration command failed ({}): {}",
                out.exit.describe(),
                crate::migrate::failure_quote(&out.stdout, &out.exit.stderr_tail, 6)
            );
        }
        let stdout = crate::migrate::strip_control(&out.stdout);
        Ok(Done::Ok(last_lines(&stdout, 3).unwrap_or_else(|| "migrations applied".into())))
    }
}

fn last_lines(text: &str, n: usize) -> Option<String> {
    // TypeORM and others echo every SQL statement as `query: …`: not what a person wants here.
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("query:")).collect();
    (!lines.is_empty()).then(|| lines[lines.len().saturating_sub(n)..].join(" | "))
}
