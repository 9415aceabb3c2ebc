//! `simulate`: the rehearsal drill. Each scenario deploys a release of a sample app against a
//! throwaway PostgreSQL with the real engine, then checks it ended as it must with the data
//! intact (row counts and content checksums of the pre-deploy columns, schema fingerprint,
//! migration table, running tag).

pub mod control_plane;
pub mod sandbox;
mod scenarios;
mod stage;
mod verdict;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Config;
use sandbox::Cluster;

pub use scenarios::{scenarios_named, Scenario, Staged, DIRTY_RELEASE, SCENARIOS};
pub use stage::Stage;

/// How a scenario ended.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub result: String,
    pub path: String,
    pub exit_code: i32,
    /// Seconds from the first rollback step to the end (None: no rollback ran).
    pub recovery_secs: Option<f64>,
    pub duration_secs: f64,
    pub data_intact: bool,
    pub as_expected: bool,
    /// What did not end as it must (empty when as expected).
    pub problems: Vec<String>,
}

/// Runs the scenarios, each on its own database in one throwaway cluster; `kubernetes`: the app
/// runs as Deployments on a throwaway control plane (the scenarios whose app writes are left out:
/// kwok runs no code).
pub async fn run(
    scenarios: &[Scenario],
    config: Option<&Path>,
    record: Option<&Path>,
    kubernetes: bool,
) -> Result<Vec<ScenarioResult>> {
    let base = match config {
        Some(p) => Some(crate::model::usage(Config::load(Some(p), &[]))?),
        None => None,
    };
    let bin = base.as_ref().and_then(|c| c.database.bin_dir.as_ref()).map(PathBuf::from);
    tracing::info!("starting a throwaway PostgreSQL cluster");
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(bin.as_deref())).await??;
    let root = tempfile::Builder::new().prefix("deploy-guard-simulate-").tempdir()?;
    let k8s = match kubernetes {
        false => None,
        true => {
            if let Some(why) = control_plane::missing() {
                anyhow::bail!("simulate --runtime kubernetes: {why}");
            }
            tracing::info!("starting a throwaway Kubernetes control plane (etcd, apiserver, controllers, kwok)");
            Some(tokio::task::spawn_blocking(control_plane::ControlPlane::start).await??)
        }
    };
    let mut results = Vec::new();
    for s in scenarios {
        if k8s.is_some() && (s.lost_writes.is_some() || s.keep_additive) {
            tracing::info!("── scenario {}: skipped on kubernetes (its app writes, and kwok runs no code)", s.name);
            continue;
        }
        tracing::info!("── scenario {}: {}", s.name, s.about);
        let r = verdict::run_one(&cluster, root.path(), s, base.as_ref(), k8s.as_ref())
            .await
            .with_context(|| format!("scenario {} could not be run", s.name))?;
        if !r.as_expected {
            tracing::error!("scenario {} did not end as it must: {}", s.name, r.problems.join("; "));
        }
        results.push(r);
    }
    if let Some(path) = record {
        append_record(path, &results)?;
    }
    Ok(results)
}

/// The table `simulate` prints.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut out = format!(
        "{:<24} {:<8} {:<16} {:>9} {:>9} {:<5} {}\n",
        "SCENARIO", "PATH", "OUTCOME", "RECOVERY", "TOTAL", "DATA", "AS IT MUST"
    );
    for r in results {
        out.push_str(&format!(
            "{:<24} {:<8} {:<16} {:>9} {:>9} {:<5} {}\n",
            r.scenario,
            r.path,
            format!("{} ({})", r.result, r.exit_code),
            r.recovery_secs.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "-".into()),
            format!("{:.1} s", r.duration_secs),
            if r.data_intact { "ok" } else { "LOST" },
            if r.as_expected { "yes".to_string() } else { format!("NO: {}", r.problems.join("; ")) }
        ));
    }
    let bad = results.iter().filter(|r| !r.as_expected).count();
    out.push_str(&if bad == 0 {
        format!("all {} scenarios ended as they must\n", results.len())
    } else {
        format!("{bad} of {} scenarios did NOT end as they must\n", results.len())
    });
    out
}

fn append_record(path: &Path, results: &[ScenarioResult]) -> Result<()> {
    use std::io::Write;
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if new {
        writeln!(f, "| date | scenario | path | duration | result |\n|---|---|---|---|---|")?;
    }
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    for r in results {
        writeln!(
            f,
            "| {date} | {} | {} | {:.1} s | {} |",
            r.scenario,
            r.path,
            r.recovery_secs.unwrap_or(r.duration_secs),
            if r.as_expected { format!("ok ({})", r.result) } else { format!("FAILED: {}", r.problems.join("; ")) }
        )?;
    }
    Ok(())
}
