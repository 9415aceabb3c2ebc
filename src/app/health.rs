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

    /// `{host}` in `app.health.url` is this host's address: with several hosts each is checked
    /// on its own, not through the load balancer.
    pub fn for_host(mut self, host: &str) -> Health {
        self.url = self.url.map(|u| u.replace("{host}", host));
        self
    }

    /// The check as a command: the health command as it runs, or for a URL the `curl` a person
    /// would type (deploy-guard makes the request itself).
    pub fn cmd(&self) -> Cmd {
        match (&self.url, &self.command) {
            (Some(u), _) => {
                let mut c = Cmd::new("health", format!("curl -fsS --max-time 10 {}", exec::quote(u)));
                c.here = true;
                c
            }
            (_, Some(c)) => Cmd::new("health", self.script(c)).timeout(self.interval.max(Duration::from_secs(10))),
            _ => Cmd::new("health", "true # no health check"),
        }
    }

    pub fn describe(&self) -> String {
        self.cmd().shell_text()
    }

    fn script(&self, c: &str) -> String {
        match &self.workdir {
            Some(d) => format!("cd {} && {c}", exec::quote(d)),
            None => c.to_string(),
        }
    }

    /// Ok once healthy; else the last failure, after `timeout`.
    pub async fn wait(&self) -> Result<String> {
        if self.url.is_none() && self.command.is_none() {
            // Kubernetes without a URL: the rollout's readiness (waited for next) is the check.
            return Ok("no health URL or command: the rollouts are the check".into());
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let probe = tokio::select! {
                r = self.probe(&client) => r,
                why = exec::cancel::cut_short() => bail!("stopped by {why} after {attempts} check(s)"),
            };
            let last = match probe {
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
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                why = exec::cancel::cut_short() => bail!("stopped by {why} after {attempts} check(s)"),
            }
        }
    }

    /// One check, no retries.
    pub async fn probe_once(&self) -> Result<()> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
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
        if self.command.is_some() {
            let out = exec::capture(self.exec.as_ref(), &self.cmd()).await?;
            return out.exit.check("health command");
        }
        // Kubernetes without a URL: the rollout's readiness is the check.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTP server on loopback answering 503 for the first `bad` requests, then 200.
    async fn server(bad: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = hits.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let status = if n < bad { "503 Service Unavailable" } else { "200 OK" };
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
                    )
                    .await;
            }
        });
        (url, hits)
    }

    fn health(url: &str, timeout_ms: u64) -> Health {
        Health {
            exec: Arc::new(crate::exec::Local),
            url: Some(url.into()),
            command: None,
            workdir: None,
            timeout: Duration::from_millis(timeout_ms),
            interval: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn url_retries_until_2xx() {
        let (url, hits) = server(3).await;
        let msg = health(&url, 5_000).wait().await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        assert!(msg.contains("4 check"), "{msg}");
    }

    #[tokio::test]
    async fn url_that_never_answers_2xx_fails_with_the_last_status() {
        let (url, hits) = server(usize::MAX).await;
        let err = health(&url, 200).wait().await.unwrap_err().to_string();
        assert!(err.contains("503"), "{err}");
        assert!(hits.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn command_health_uses_the_exit_status() {
        let mut h = health("http://unused", 200);
        h.url = None;
        h.command = Some("exit 0".into());
        assert!(h.wait().await.is_ok());
        h.command = Some("echo down >&2; exit 1".into());
        let err = h.wait().await.unwrap_err().to_string();
        assert!(err.contains("down"), "{err}");
    }
}
