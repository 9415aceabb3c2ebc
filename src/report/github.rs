//! Reporting on GitHub itself (octocrab): a deployment with statuses, one comment on the pull
//! request or commit (found again by a hidden marker and updated), an incident issue when a
//! person must look. Every call is best effort: an API error is a warning in the report, never
//! a failure of the deploy or the rollback.
//!
//! Token permissions: `deployments: write` (deployments), `pull-requests: write` and
//! `contents: write` (the comment on a PR or a commit), `issues: write` (incident issues).

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::comment::{comment_body, incident_body, incident_title, marker, truncate};
use super::Report;
use crate::config::Github as GithubConfig;
use crate::guard::{Mode, Outcome};
use crate::model::ExitCode;

pub struct GitHub {
    client: octocrab::Octocrab,
    repo: String,
    config: GithubConfig,
    project: String,
}

impl GitHub {
    /// Set up when `GITHUB_TOKEN` and `GITHUB_REPOSITORY` are set (`GITHUB_API_URL` for GitHub
    /// Enterprise, or tests); otherwise GitHub reporting is off.
    pub fn from_env(config: &GithubConfig, project: &str) -> Result<Option<GitHub>> {
        let (Ok(token), Ok(repo)) = (std::env::var("GITHUB_TOKEN"), std::env::var("GITHUB_REPOSITORY")) else {
            return Ok(None);
        };
        if token.is_empty() || !repo.contains('/') {
            return Ok(None);
        }
        let api = std::env::var("GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".into());
        let client = octocrab::Octocrab::builder()
            .base_uri(api.as_str())
            .with_context(|| format!("GITHUB_API_URL {api:?} is not a URL"))?
            .personal_token(token)
            // A slow API must not hold up a deploy or a rollback for long.
            .set_connect_timeout(Some(std::time::Duration::from_secs(10)))
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .set_write_timeout(Some(std::time::Duration::from_secs(20)))
            .build()?;
        Ok(Some(GitHub { client, repo, config: config.clone(), project: project.into() }))
    }

    fn route(&self, tail: &str) -> String {
        format!("/repos/{}/{tail}", self.repo)
    }

    /// Creates the deployment of `sha` (in progress); returns its id.
    pub async fn start_deployment(&self, sha: &str, tag: &str) -> Result<Option<u64>> {
        if !self.config.deployments {
            return Ok(None);
        }
        let body = json!({
            "ref": sha,
            "environment": self.config.environment,
            "description": format!("deploy-guard: {} {tag}", self.project),
            "auto_merge": false,
            "required_contexts": [],
            "payload": { "tag": tag, "tool": "deploy-guard" },
        });
        let d: Value = self.client.post(self.route("deployments"), Some(&body)).await.map_err(api_error)?;
        let id = d["id"].as_u64().context("the deployment has no id")?;
        self.status(id, "in_progress", "backing up, migrating, deploying").await?;
        Ok(Some(id))
    }

    async fn status(&self, id: u64, state: &str, description: &str) -> Result<()> {
        let mut body = json!({ "state": state, "description": truncate(description, 140), "auto_inactive": true });
        if let Ok(url) = run_url() {
            body["log_url"] = json!(url);
        }
        let _: Value = self
            .client
            .post(self.route(&format!("deployments/{id}/statuses")), Some(&body))
            .await
            .map_err(api_error)?;
        Ok(())
    }

    /// The deployment's final status from the outcome.
    pub async fn finish_deployment(&self, id: u64, report: &Report) -> Result<()> {
        let state = match report.outcome {
            Outcome::Deployed | Outcome::BackedUp | Outcome::Restored | Outcome::Rehearsed => "success",
            Outcome::RolledBack { .. } | Outcome::Aborted { .. } => "failure",
            Outcome::RollbackFailed { .. } => "error",
        };
        self.status(id, state, &report.headline).await
    }

    /// Marks the deployments of `sha` inactive (a manual rollback took them back).
    pub async fn deactivate(&self, sha: &str) -> Result<usize> {
        if !self.config.deployments {
            return Ok(0);
        }
        let route = self.route(&format!("deployments?sha={sha}&environment={}", self.config.environment));
        let list: Vec<Value> = self.client.get(route, None::<&()>).await.map_err(api_error)?;
        for d in &list {
            if let Some(id) = d["id"].as_u64() {
                self.status(id, "inactive", "rolled back by deploy-guard").await?;
            }
        }
        Ok(list.len())
    }

    /// The tag of the newest successful deployment to the environment (for when the host cannot
    /// tell what runs).
    pub async fn previous_tag(&self) -> Result<Option<String>> {
        let route = self.route(&format!("deployments?environment={}&per_page=20", self.config.environment));
        let list: Vec<Value> = self.client.get(route, None::<&()>).await.map_err(api_error)?;
        for d in list {
            let (Some(id), Some(tag)) = (d["id"].as_u64(), d["payload"]["tag"].as_str()) else { continue };
            let statuses: Vec<Value> = self
                .client
                .get(self.route(&format!("deployments/{id}/statuses?per_page=1")), None::<&()>)
                .await
                .map_err(api_error)?;
            if statuses.first().and_then(|s| s["state"].as_str()) == Some("success") {
                return Ok(Some(tag.to_string()));
            }
        }
        Ok(None)
    }

    /// Creates or updates the one deploy-guard comment on the PR of `sha` (or the commit).
    pub async fn upsert_comment(&self, sha: &str, body: &str) -> Result<Comment> {
        let prs: Vec<Value> =
            self.client.get(self.route(&format!("commits/{sha}/pulls")), None::<&()>).await.map_err(api_error)?;
        let on = match prs.first().and_then(|p| p["number"].as_u64()) {
            Some(n) => CommentOn::PullRequest(n),
            None => CommentOn::Commit(sha.to_string()),
        };
        self.upsert_on(&on, &marker(&self.project), body).await
    }

    /// Creates or updates the comment on `on` that starts with `marker` (one per marker).
    pub async fn upsert_on(&self, on: &CommentOn, marker: &str, body: &str) -> Result<Comment> {
        let body = format!("{marker}\n{body}");
        let (list, update) = match on {
            CommentOn::PullRequest(n) => (self.route(&format!("issues/{n}/comments")), "issues/comments"),
            CommentOn::Commit(sha) => (self.route(&format!("commits/{sha}/comments")), "comments"),
        };
        let existing: Vec<Value> =
            self.client.get(format!("{list}?per_page=100"), None::<&()>).await.map_err(api_error)?;
        let mine = existing.iter().find(|c| c["body"].as_str().is_some_and(|b| b.starts_with(marker)));
        let payload = json!({ "body": body });
        let (c, updated): (Value, bool) = match mine.and_then(|c| c["id"].as_u64()) {
            Some(id) => (
                self.client.patch(self.route(&format!("{update}/{id}")), Some(&payload)).await.map_err(api_error)?,
                true,
            ),
            None => (self.client.post(list, Some(&payload)).await.map_err(api_error)?, false),
        };
        Ok(Comment { id: c["id"].as_u64().unwrap_or(0), url: c["html_url"].as_str().map(str::to_string), updated })
    }

    /// The names of the labels pull request `n` carries now (the event's payload is as old as
    /// the event: a re-run after labelling would not see the label).
    pub async fn labels(&self, n: u64) -> Result<Vec<String>> {
        let labels: Vec<Value> = self
            .client
            .get(self.route(&format!("issues/{n}/labels?per_page=100")), None::<&()>)
            .await
            .map_err(api_error)?;
        Ok(labels.iter().filter_map(|l| l["name"].as_str().map(str::to_string)).collect())
    }

    /// The paths pull request `n` adds or changes (not the ones it removes); GitHub lists at
    /// most 3,000.
    pub async fn changed_files(&self, n: u64) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for page in 1..=30 {
            let files: Vec<Value> = self
                .client
                .get(self.route(&format!("pulls/{n}/files?per_page=100&page={page}")), None::<&()>)
                .await
                .map_err(api_error)?;
            out.extend(
                files
                    .iter()
                    .filter(|f| f["status"].as_str() != Some("removed"))
                    .filter_map(|f| f["filename"].as_str().map(str::to_string)),
            );
            if files.len() < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// Opens an incident issue with a postmortem draft; returns its URL.
    pub async fn open_incident(&self, report: &Report) -> Result<String> {
        let body = json!({
            "title": incident_title(report),
            "body": incident_body(report, self.config.incident_logs),
            "labels": ["incident", "deploy-guard"],
        });
        let issue: Value = self.client.post(self.route("issues"), Some(&body)).await.map_err(api_error)?;
        Ok(issue["html_url"].as_str().unwrap_or("").to_string())
    }

    /// Everything for one finished deploy or rollback; each failure becomes a note.
    pub async fn report(&self, deployment: Option<u64>, report: &Report) -> (Vec<String>, Links) {
        let mut notes = Vec::new();
        let mut links = Links::default();
        let mut note = |what: &str, r: Result<String>| match r {
            Ok(done) => tracing::info!("GitHub: {what}: {done}"),
            Err(e) => {
                tracing::warn!("GitHub: {what} failed: {e:#}");
                notes.push(format!("GitHub {what} failed: {e:#}"));
            }
        };
        if let Some(id) = deployment {
            note("deployment status", self.finish_deployment(id, report).await.map(|_| "set".into()));
        }
        if report.command == Mode::Rollback && report.exit_code == ExitCode::Ok {
            note(
                "deployment deactivation",
                self.deactivate(report.sha.as_str()).await.map(|n| format!("{n} deployment(s) inactive")),
            );
        }
        if self.config.comment {
            let done = self.upsert_comment(report.sha.as_str(), &comment_body(report)).await;
            if let Ok(c) = &done {
                links.comment = c.url.clone();
            }
            note("comment", done.map(|c| c.describe()));
        }
        let needs_incident = matches!(report.outcome, Outcome::RolledBack { .. } | Outcome::RollbackFailed { .. });
        if self.config.incident && needs_incident {
            let done = self.open_incident(report).await;
            if let Ok(url) = &done {
                links.incident = Some(url.clone()).filter(|u| !u.is_empty());
            }
            note("incident issue", done);
        }
        (notes, links)
    }
}

/// Where a comment goes.
pub enum CommentOn {
    PullRequest(u64),
    Commit(String),
}

/// The comment as GitHub answered.
pub struct Comment {
    pub id: u64,
    pub url: Option<String>,
    /// An earlier one was found by its marker and edited.
    pub updated: bool,
}

impl Comment {
    fn describe(&self) -> String {
        format!("{} comment {}", if self.updated { "updated" } else { "created" }, self.id)
    }
}

/// What the run left on GitHub, for the Actions outputs.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Links {
    pub comment: Option<String>,
    pub incident: Option<String>,
}

/// The pull request of the event that started this job (`GITHUB_EVENT_PATH`, a `pull_request`
/// or `pull_request_target` event): its number and the labels the event saw.
pub fn event_pull_request() -> Result<Option<(u64, Vec<String>)>> {
    let Ok(path) = std::env::var("GITHUB_EVENT_PATH") else { return Ok(None) };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading the event GITHUB_EVENT_PATH {path}"))?;
    let event: Value =
        serde_json::from_str(&text).with_context(|| format!("the event GITHUB_EVENT_PATH {path} is not JSON"))?;
    let pr = &event["pull_request"];
    let Some(n) = pr["number"].as_u64() else { return Ok(None) };
    let labels = pr["labels"].as_array().into_iter().flatten().filter_map(|l| l["name"].as_str()).map(str::to_string);
    Ok(Some((n, labels.collect())))
}

/// The Actions run's page, where its step summary is.
pub fn run_url() -> Result<String> {
    Ok(format!(
        "{}/{}/actions/runs/{}",
        std::env::var("GITHUB_SERVER_URL")?,
        std::env::var("GITHUB_REPOSITORY")?,
        std::env::var("GITHUB_RUN_ID")?
    ))
}

fn api_error(e: octocrab::Error) -> anyhow::Error {
    match &e {
        octocrab::Error::GitHub { source, .. } => {
            let hint = match source.status_code.as_u16() {
                401 => " (GITHUB_TOKEN is invalid or expired)",
                403 => " (the token lacks a permission: see the README's GitHub section)",
                404 => " (repository not found, or the token cannot see it)",
                s if s >= 500 => " (GitHub is having trouble; the deploy itself is unaffected)",
                _ => "",
            };
            anyhow::anyhow!("GitHub answered {}: {}{hint}", source.status_code, source.message)
        }
        _ => anyhow::Error::new(e),
    }
}
