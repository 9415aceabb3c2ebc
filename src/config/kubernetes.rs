//! `app.kubernetes`: the Deployments an `app.runtime: kubernetes` deploy drives, and how.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    pub namespace: String,
    /// Every Deployment started on a tag together (`[spade-api, spade-worker]`); the first one's
    /// image is the running tag, and its env is a migration Job's.
    pub deployments: Vec<String>,
    /// The container whose image is set in each Deployment.
    pub container: String,
    /// The image without its tag (`ghcr.io/acme/spade`): a deploy sets `IMAGE:TAG`.
    pub image: String,
    /// A kubeconfig file; else `KUBECONFIG`, else kubectl's default. Passed to kubectl in its
    /// environment, never in its arguments.
    pub kubeconfig: Option<String>,
    /// The kubeconfig's context (else its current one).
    pub context: Option<String>,
    /// `NAME=VALUE` set on every Deployment to pause writes before a restore (the runbook's
    /// `READ_ONLY_MODE=true`), waited for, removed after; unset: they are scaled to 0 and back
    /// to the replica counts recorded on them.
    pub pause_env: Option<String>,
}

/// `migrations.where`: where the migration tool runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrateWhere {
    /// The runner (or the target host): the tool reaches the database from there.
    #[default]
    Runner,
    /// A Kubernetes Job of the new image, with the first Deployment's env and the tool's command.
    Job,
}

/// A Kubernetes object name (RFC 1123 label): lowercase letters, digits, '-'.
fn check_name(key: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if !ok {
        bail!("{key}: {v:?} is not a Kubernetes name (lowercase letters, digits, '-', at most 63)");
    }
    Ok(())
}

/// `database.service` with `app.runtime: kubernetes`: what `kubectl exec` enters to run
/// `pg_dump` and `psql`: a pod (`postgres-0`, `pod/postgres-0`) or a workload
/// (`statefulset/postgres`: kubectl picks its first pod).
pub fn check_exec_target(key: &str, v: &str) -> Result<()> {
    let (kind, name) = v.split_once('/').unwrap_or(("pod", v));
    let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'.');
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    if !kind_ok || !name_ok {
        bail!("{key}: {v:?} is not a pod to `kubectl exec` into (postgres-0, pod/postgres-0, statefulset/postgres)");
    }
    Ok(())
}

impl Kubernetes {
    pub fn validate(&self) -> Result<()> {
        check_name("app.kubernetes.namespace", &self.namespace)?;
        check_name("app.kubernetes.container", &self.container)?;
        if self.deployments.is_empty() {
            bail!("app.kubernetes.deployments: name at least one Deployment");
        }
        for d in &self.deployments {
            check_name("app.kubernetes.deployments", d)?;
        }
        let i = &self.image;
        if i.is_empty() || i.contains('@') || i.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            bail!("app.kubernetes.image: {i:?} must be the image without a tag or digest (ghcr.io/acme/app)");
        }
        if i.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"./-_:".contains(&b))) {
            bail!("app.kubernetes.image: {i:?} is not an image name");
        }
        if let Some(c) = &self.context {
            if c.is_empty() || c.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("app.kubernetes.context: {c:?} is not a context name");
            }
        }
        if let Some(e) = &self.pause_env {
            let name = e.split_once('=').map(|(n, _)| n).unwrap_or("");
            let mut chars = name.chars();
            let var = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !var {
                bail!("app.kubernetes.pause_env: {e:?} must be NAME=VALUE (READ_ONLY_MODE=true)");
            }
        }
        Ok(())
    }

    /// `pause_env`'s variable name.
    pub fn pause_var(&self) -> Option<&str> {
        self.pause_env.as_deref().and_then(|e| e.split_once('=')).map(|(n, _)| n)
    }
}
