//! Waits for the app to be healthy: an HTTP URL answering 2xx, or a command exiting 0, retried
//! every `interval` until `timeout`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::exec::{self, Cmd, Executor};

pub struct Health {
    exec: Arc<dyn Executor>,
    url: Option<String>,
    command: Option<String>,
    workdir: Option<String>,
    timeout: Duration,
    interval: Duration,
}

impl Health {
    pub fn from_config(exec: Arc<dyn Executor>, app: &crate::config::App) -> Health {
        Health {
            exec,
            url: app.health.url.clone(),
            command: app.health.command.clone(),
            workdir: app.workdir.clone(),
            timeout: app.health.timeout,
            interval: app.health.interval,
        }
    }

    /// "GET https://…/health → 2xx" or the command.
    pub fn describe(&self) -> String {
        match (&self.url, &self.command) {
            (Some(u), _) => format!("curl -fsS --max-time 10 {}", exec::quote(u)),
            (_, Some(c)) => self.script(c),
            _ => "(no health check)".into(),
        }
    }

    fn script(&self, c: &str) -> String {
        match &self.workdir {
            Some(d) => format!("cd {} && {c}", exec::quote(d)),
            None => c.to_string(),
        }
    }

    /// Ok once healthy; else the last failure, after `timeout`.
    pub async fn wait(&self) -> Result<String> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let last = match self.probe(&client).await {
                Ok(()) => return Ok(format!("healthy after {attempts} check(s)")),
                Err(e) => e,
            };
            tracing::debug!("health check {attempts}: {last:#}");
            if tokio::time::Instant::now() + self.interval > deadline {
                bail!(
                    "not healthy within {} ({attempts} checks); last: {last:#}",
                    humantime::format_duration(self.timeout)
                );
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// One check, no retries.
    pub async fn probe_once(&self) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        self.probe(&client).await
    }

    async fn probe(&self, client: &reqwest::Client) -> Result<()> {
        if let Some(url) = &self.url {
            let resp = client.get(url).send().await?;
            if !resp.status().is_success() {
                bail!("{url} answered {}", resp.status());
            }
            return Ok(());
        }
        if let Some(c) = &self.command {
            let cmd = Cmd::new("health command", self.script(c))
                .timeout(self.interval.max(Duration::from_secs(10)));
            let out = exec::capture(self.exec.as_ref(), &cmd).await?;
            return out.exit.check("health command");
        }
        bail!("no health check configured")
    }
}
