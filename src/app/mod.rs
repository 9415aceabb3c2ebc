//! The app's runtime: start a tag, stop, which tag runs, status, logs; and the health check.

pub mod compose;
pub mod health;
pub mod shell;

use anyhow::Result;
use async_trait::async_trait;

use crate::exec::Cmd;

pub use health::Health;
pub use shell::Shell;

/// Drives the app on the target.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// The tag running now, if the runtime can tell.
    async fn current_tag(&self) -> Result<Option<String>>;
    /// Starts `tag` (replacing what runs).
    async fn deploy(&self, tag: &str) -> Result<()>;
    async fn stop(&self) -> Result<()>;
    /// One line on the app's state, for the report.
    async fn status(&self) -> Result<String>;
    /// The last `lines` log lines.
    async fn logs(&self, lines: usize) -> Result<String>;
    /// Checks the runtime's settings against the target (for `check` and the deploy preflight:
    /// an error here means nothing may be touched).
    async fn validate(&self) -> Result<()> {
        Ok(())
    }
    /// What `check` reports about the app: its state (compose: every service's state, image tag
    /// and health).
    async fn check(&self) -> Result<String> {
        self.status().await
    }
    /// A command that runs `script` (a migration tool) with the code of `tag`.
    fn tool_cmd(&self, label: &str, tag: &str, script: &str) -> Cmd;
    /// The exact command text a step runs, for the plan and the runbook.
    fn describe_deploy(&self, tag: &str) -> String;
    fn describe_stop(&self) -> String;
}
