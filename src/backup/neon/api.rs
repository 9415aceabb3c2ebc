//! Neon's HTTP API (v2), the few endpoints deploy-guard calls, written from Neon's published
//! OpenAPI description (the subset is `tests/fixtures/neon/openapi-v2-subset.json`, where the
//! tests check every request against it). Every call retries what the API says may pass (429 with
//! its `Retry-After`, 423 while another operation holds the project, 5xx, a timeout or a dropped
//! connection) a bounded number of times; the operations a call starts are polled until they end.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{Neon as Settings, NEON_API_KEY};

/// A branch as the API describes it (the fields deploy-guard reads).
#[derive(Clone, Debug, Deserialize)]
pub struct Branch {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub parent_lsn: Option<String>,
    pub current_state: String,
    pub created_at: String,
}

/// An asynchronous operation a call started.
#[derive(Clone, Debug, Deserialize)]
pub struct Operation {
    pub id: String,
    pub action: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
}

/// A compute endpoint.
#[derive(Clone, Debug, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub branch_id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Deserialize)]
struct BranchOperations {
    branch: Branch,
    #[serde(default)]
    operations: Vec<Operation>,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct EndpointOperations {
    endpoint: Endpoint,
    #[serde(default)]
    operations: Vec<Operation>,
}

/// A call the API answered with a client error (4xx other than the key's): the request was
/// refused as asked, and nothing was done.
#[derive(Debug)]
pub struct Refused {
    /// The call, as `POST /branches`.
    pub call: String,
    pub status: u16,
    pub text: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Refused {}

/// Attempts of one call before its failure is reported.
const ATTEMPTS: u32 = 6;
/// The longest `Retry-After` honoured: a longer one is reported, not slept through.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The API of one project, with the key from the environment.
pub struct Api {
    http: reqwest::Client,
    base: String,
    project: String,
    key: reqwest::header::HeaderValue,
    operation_timeout: Duration,
}

impl Api {
    /// The client for `settings`; `NEON_API_KEY` must be set (a config error otherwise).
    pub fn new(settings: &Settings, vars: &[(String, String)]) -> Result<Api> {
        let key = vars
            .iter()
            .find(|(k, _)| k == NEON_API_KEY)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .with_context(|| {
                format!(
                    "backup.provider: neon needs the API key in {NEON_API_KEY} (from the environment only: a repository \
                     secret); it is not set, and nothing was changed"
                )
            })?;
        let mut key = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| anyhow!("{NEON_API_KEY} holds characters an HTTP header cannot carry"))?;
        key.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("deploy-guard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Api {
            http,
            base: settings.api_url.trim_end_matches('/').to_string(),
            project: settings.project_id.clone(),
            key,
            operation_timeout: settings.operation_timeout,
        })
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// One call, retried while the API says it may pass; the JSON body of its answer (`Null` for
    /// 204).
    async fn call(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> Result<Value> {
        let url = format!("{}/projects/{}{path}", self.base, self.project);
        let what = format!("{method} {path}");
        let mut backoff = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .query(query)
                .header(reqwest::header::AUTHORIZATION, self.key.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(b) = body {
                req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(serde_json::to_vec(b)?);
            }
            let last = attempt == ATTEMPTS;
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if !last && (e.is_timeout() || e.is_connect() || e.is_request()) => {
                    tracing::warn!("Neon API {what}: {e} (attempt {attempt} of {ATTEMPTS}); retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                Err(e) => return Err(anyhow!("Neon API {what}: {e} (after {attempt} attempt(s))")),
            };
            let status = resp.status();
            if status.is_success() {
                if status == StatusCode::NO_CONTENT {
                    return Ok(Value::Null);
                }
                let body = resp.bytes().await.with_context(|| format!("Neon API {what}: reading the answer"))?;
                return serde_json::from_slice(&body)
                    .with_context(|| format!("Neon API {what}: the answer is not JSON"));
            }
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let message = error_message(resp.text().await.unwrap_or_default());
            let wait = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
                    "Neon API {what}: {NEON_API_KEY} was refused ({status}: {message}); check that the key is current \
                     and can reach project {}",
                    self.project
                ),
                StatusCode::TOO_MANY_REQUESTS => retry_after.unwrap_or(backoff),
                StatusCode::LOCKED => retry_after.unwrap_or(backoff),
                s if s.is_server_error() => retry_after.unwrap_or(backoff),
                _ => {
                    let text = format!("Neon API {what}: {status}: {message}");
                    return Err(Refused { call: what, status: status.as_u16(), text }.into());
                }
            };
            if last || wait > MAX_RETRY_AFTER {
                bail!("Neon API {what}: {status}: {message} (after {attempt} attempt(s); asked to wait {wait:?})");
            }
            tracing::warn!("Neon API {what}: {status} (attempt {attempt} of {ATTEMPTS}); retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            backoff *= 2;
        }
        unreachable!("the last attempt returns")
    }

    async fn call_as<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T> {
        let what = format!("{method} {path}");
        let v = self.call(method, path, query, body).await?;
        serde_json::from_value(v).with_context(|| format!("Neon API {what}: the answer is not as its description says"))
    }

    /// The branch `id` (also how the key and the project are checked before anything changes).
    pub async fn branch(&self, id: &str) -> Result<Branch> {
        #[derive(Deserialize)]
        struct R {
            branch: Branch,
        }
        let r: R = self.call_as(Method::GET, &format!("/branches/{id}"), &[], None).await?;
        Ok(r.branch)
    }

    /// Every branch of the project whose name contains `search`.
    pub async fn branches(&self, search: &str) -> Result<Vec<Branch>> {
        #[derive(Deserialize)]
        struct R {
            branches: Vec<Branch>,
        }
        let r: R = self.call_as(Method::GET, "/branches", &[("search", search)], None).await?;
        Ok(r.branches)
    }

    /// A branch of `parent` at its head (or as it was at `at`, RFC 3339), named `name`, with a
    /// compute of `kind` (`read_only`, `read_write`) to reach it by; returns once its operations
    /// finished.
    pub async fn create_branch(
        &self,
        parent: &str,
        name: &str,
        kind: &str,
        at: Option<&str>,
    ) -> Result<(Branch, Endpoint)> {
        let mut body = json!({"branch": {"parent_id": parent, "name": name}, "endpoints": [{"type": kind}]});
        if let Some(t) = at {
            body["branch"]["parent_timestamp"] = json!(t);
        }
        let r: BranchOperations = self.call_as(Method::POST, "/branches", &[], Some(&body)).await?;
        self.wait(&r.operations, &format!("creating branch {name}")).await?;
        let endpoint =
            r.endpoints.into_iter().next().context("Neon created the branch without the compute asked for")?;
        Ok((r.branch, endpoint))
    }

    /// A read-only compute on `branch` (a branch a restore preserved has none).
    pub async fn create_endpoint(&self, branch: &str) -> Result<Endpoint> {
        let body = json!({"endpoint": {"branch_id": branch, "type": "read_only"}});
        let r: EndpointOperations = self.call_as(Method::POST, "/endpoints", &[], Some(&body)).await?;
        self.wait(&r.operations, &format!("starting a compute on {branch}")).await?;
        Ok(r.endpoint)
    }

    /// Restores `branch` in place to `source`'s head (or its state at `at`), keeping what it held
    /// as the branch `preserve`; returns once its operations finished.
    pub async fn restore(&self, branch: &str, source: &str, at: Option<&str>, preserve: &str) -> Result<Branch> {
        let mut body = json!({"source_branch_id": source, "preserve_under_name": preserve});
        if let Some(t) = at {
            body["source_timestamp"] = json!(t);
        }
        let r: BranchOperations =
            self.call_as(Method::POST, &format!("/branches/{branch}/restore"), &[], Some(&body)).await?;
        self.wait(&r.operations, &format!("restoring {branch} to {source}")).await?;
        Ok(r.branch)
    }

    /// Deletes `branch` (and its computes); an already deleted one is not an error.
    pub async fn delete_branch(&self, branch: &str) -> Result<()> {
        let v = self.call(Method::DELETE, &format!("/branches/{branch}"), &[], None).await?;
        if v.is_null() {
            return Ok(());
        }
        let r: BranchOperations = serde_json::from_value(v).context("Neon API: the delete's answer")?;
        self.wait(&r.operations, &format!("deleting branch {branch}")).await
    }

    /// The connection URI of `database` as `role` on `branch`'s compute `endpoint`: it holds the
    /// role's password, so it never reaches a log or an error.
    pub async fn connection_uri(&self, branch: &str, endpoint: &str, database: &str, role: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct R {
            uri: String,
        }
        let q = [("branch_id", branch), ("endpoint_id", endpoint), ("database_name", database), ("role_name", role)];
        let r: R = self.call_as(Method::GET, "/connection_uri", &q, None).await?;
        Ok(r.uri)
    }

    /// Polls `ops` until each has finished; one that failed, or still runs after
    /// `backup.neon.operation_timeout`, is an error naming it.
    pub async fn wait(&self, ops: &[Operation], what: &str) -> Result<()> {
        let deadline = Instant::now() + self.operation_timeout;
        for op in ops {
            let mut op = op.clone();
            let mut pause = Duration::from_millis(250);
            loop {
                match op.status.as_str() {
                    "finished" | "skipped" => break,
                    "failed" | "error" | "cancelling" | "cancelled" => bail!(
                        "Neon: {what}: operation {} ({}) {}: {}",
                        op.id,
                        op.action,
                        op.status,
                        op.error.as_deref().unwrap_or("no error given")
                    ),
                    _ if Instant::now() >= deadline => bail!(
                        "Neon: {what}: operation {} ({}) is still {} after {} (backup.neon.operation_timeout); see it \
                         with `neon operations list --project-id {}`",
                        op.id,
                        op.action,
                        op.status,
                        humantime::format_duration(self.operation_timeout),
                        self.project
                    ),
                    _ => {}
                }
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
                pause = (pause * 3 / 2).min(Duration::from_secs(2));
                #[derive(Deserialize)]
                struct R {
                    operation: Operation,
                }
                let r: R = self.call_as(Method::GET, &format!("/operations/{}", op.id), &[], None).await?;
                op = r.operation;
            }
        }
        Ok(())
    }
}

/// The API's `GeneralError.message`, else the body itself, cut short (hostile: it is printed).
fn error_message(body: String) -> String {
    let msg = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or(body);
    let clean: String = msg.chars().filter(|c| !c.is_control()).take(300).collect();
    if clean.is_empty() {
        "no message".into()
    } else {
        clean
    }
}
