//! `app.runtime: shell`: the user's own commands, with `{tag}` filled in (quoted).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use async_trait::async_trait;

use super::Runtime;
use crate::config::ShellCommands;
use crate::exec::{self, fill, quote, Cmd, Executor};

pub struct Shell {
    exec: Arc<dyn Executor>,
    commands: ShellCommands,
    workdir: Option<String>,
    timeout: Duration,
}

impl Shell {
    pub fn new(exec: Arc<dyn Executor>, commands: ShellCommands, workdir: Option<String>, timeout: Duration) -> Shell {
        Shell { exec, commands, workdir, timeout }
    }

    fn script(&self, text: &str) -> String {
        match &self.workdir {
            Some(dir) => format!("cd {} && {text}", quote(dir)),
            None => text.to_string(),
        }
    }

    fn cmd(&self, label: &str, text: &str) -> Cmd {
        Cmd::new(label, self.script(text)).timeout(self.timeout)
    }

    async fn run(&self, label: &str, text: &str) -> Result<String> {
        exec::run_ok(self.exec.as_ref(), &self.cmd(label, text)).await
    }
}

#[async_trait]
impl Runtime for Shell {
    async fn current_tag(&self) -> Result<Option<String>> {
        let Some(c) = &self.commands.current_tag else {
            return Ok(None);
        };
        let out = self.run("app current_tag", c).await?;
        let tag = out.trim();
        Ok((!tag.is_empty()).then(|| tag.to_string()))
    }

    async fn deploy(&self, tag: &str) -> Result<()> {
        let Some(c) = &self.commands.deploy else { bail!("app.commands.deploy is not set") };
        self.run("app deploy", &fill(c, &[("tag", tag)])).await.map(|_| ())
    }

    async fn stop(&self) -> Result<()> {
        match &self.commands.stop {
            Some(c) => self.run("app stop", c).await.map(|_| ()),
            None => bail!("app.commands.stop is not set: the app was left running"),
        }
    }

    async fn status(&self) -> Result<String> {
        match &self.commands.status {
            Some(c) => Ok(self.run("app status", c).await?.trim().to_string()),
            None => Ok("(app.commands.status not set)".into()),
        }
    }

    async fn logs(&self, lines: usize) -> Result<String> {
        match &self.commands.logs {
            Some(c) => self.run("app logs", &c.replace("{lines}", &lines.to_string())).await,
            None => Ok(String::new()),
        }
    }

    fn tool_cmd(&self, label: &str, _tag: &str, script: &str) -> Cmd {
        Cmd::new(label, self.script(script))
    }

    fn describe_deploy(&self, tag: &str) -> String {
        self.script(&fill(self.commands.deploy.as_deref().unwrap_or(""), &[("tag", tag)]))
    }

    fn describe_stop(&self) -> String {
        self.commands.stop.as_deref().map(|c| self.script(c)).unwrap_or_else(|| "(app.commands.stop not set)".into())
    }
}
