//! `app.runtime: shell`: the user's own commands, with `{tag}` filled in (quoted).

use std::sync::Arc;
use std::time::Duration;

use super::{Action, Runtime};
use crate::config::ShellCommands;
use crate::exec::{fill, quote, Cmd, Executor};

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
}

impl Runtime for Shell {
    fn executor(&self) -> &dyn Executor {
        self.exec.as_ref()
    }

    fn cmd(&self, action: Action<'_>) -> Option<Cmd> {
        let c = &self.commands;
        let text = match action {
            Action::CurrentTag => c.current_tag.clone()?,
            // The user's deploy command fetches what it needs.
            Action::Pull(_) => return None,
            Action::Deploy(tag) => fill(c.deploy.as_deref()?, &[("tag", tag)]),
            Action::Stop => c.stop.clone()?,
            Action::Status => c.status.clone()?,
            Action::Logs(n) => c.logs.as_deref()?.replace("{lines}", &n.to_string()),
            Action::PauseWrites => c.pause_writes.clone()?,
            Action::ResumeWrites => c.resume_writes.clone()?,
        };
        Some(Cmd::new(format!("app {}", action.key()), self.script(&text)).timeout(self.timeout))
    }

    fn parse_tag(&self, out: &str) -> Option<String> {
        let tag = out.trim();
        (!tag.is_empty()).then(|| tag.to_string())
    }

    fn tool_cmd(&self, label: &str, _name: &str, _tag: &str, script: &str) -> Cmd {
        Cmd::new(label, self.script(script))
    }
}
