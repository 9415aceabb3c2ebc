//! deploy-guard: a guarded deploy with automatic rollback. See README.md and DESIGN.md.

pub mod app;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod exec;
pub mod guard;
pub mod migrate;
pub mod report;
pub mod simulate;
pub mod store;

use anyhow::Result;

use cli::{Cli, Command, PathChoice};
use commands::{exit, World};
use config::Config;

pub mod logging {
    /// Logs to stderr; `DEPLOY_GUARD_LOG` (e.g. `debug`) sets the level.
    pub fn init() {
        let filter = tracing_subscriber::EnvFilter::try_from_env("DEPLOY_GUARD_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .without_time()
            .try_init();
    }
}

/// A usage or config error: exit 2, nothing was touched.
#[derive(Debug)]
pub struct Usage(pub anyhow::Error);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Usage {}

/// Marks an error as a usage error (exit 2).
pub fn usage_result<T>(r: Result<T>) -> Result<T> {
    usage(r)
}

fn usage<T>(r: Result<T>) -> Result<T> {
    r.map_err(|e| anyhow::Error::new(Usage(e)))
}

/// Runs the command line; returns the exit code.
pub async fn run(cli: Cli) -> i32 {
    match dispatch(&cli).await {
        Ok(code) => code,
        Err(e) => {
            let code = if e.downcast_ref::<Usage>().is_some() { exit::USAGE } else { exit::ACT };
            eprintln!("error: {e:#}");
            if code == exit::USAGE {
                eprintln!("nothing was changed.");
            }
            report::actions::error("deploy-guard", &format!("{e:#}"));
            code
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    usage(Config::load(cli.global.config.as_deref(), &config::process_env()))
}

fn config_arg(cli: &Cli) -> String {
    cli.global
        .config
        .as_ref()
        .map(|p| format!(" --config {}", exec::quote(&p.display().to_string())))
        .unwrap_or_default()
}

async fn dispatch(cli: &Cli) -> Result<i32> {
    let g = &cli.global;
    match &cli.command {
        Command::Deploy { sha, tag, previous_tag, dry_run } => {
            usage(config::check_sha(sha))?;
            usage(config::check_tag("--tag", tag))?;
            if let Some(p) = previous_tag {
                usage(config::check_tag("--previous-tag", p))?;
            }
            let cfg = load_config(cli)?;
            if *dry_run {
                let w = usage(World::offline(cfg))?;
                let plan = commands::deploy::plan(&w, sha, tag, previous_tag.as_deref());
                print_out(g.json, &plan, || plan.render())?;
                return Ok(exit::OK);
            }
            // Nothing has been touched yet: a target that cannot be reached aborts (exit 4).
            let w = match World::connect(cfg).await {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("error: {e:#}\naborted before any change: nothing was changed.");
                    report::actions::error("deploy aborted", &format!("{e:#}"));
                    return Ok(4);
                }
            };
            let gh = github(&w);
            let mut fallback = None;
            let mut deployment = None;
            if let Some(gh) = &gh {
                if previous_tag.is_none() {
                    fallback = gh.previous_tag().await.unwrap_or_else(|e| warn_none("reading the last deployment", e));
                }
                deployment =
                    gh.start_deployment(sha, tag).await.unwrap_or_else(|e| warn_none("creating the deployment", e));
            }
            let mut report =
                commands::deploy::deploy(&w, sha, tag, previous_tag.as_deref(), fallback, &config_arg(cli)).await;
            if let Some(gh) = &gh {
                let notes = gh.report(deployment, &report).await;
                report.notes.extend(notes);
            }
            finish_report(g, &report)
        }
        Command::Rollback { sha, path, to_tag } => {
            usage(config::check_sha_prefix(sha))?;
            if let Some(t) = to_tag {
                usage(config::check_tag("--to-tag", t))?;
            }
            let w = World::connect(load_config(cli)?).await?;
            let strategy = match path {
                PathChoice::Auto => None,
                PathChoice::Revert => Some(config::Strategy::Revert),
                PathChoice::Restore => Some(config::Strategy::Restore),
            };
            let mut report = commands::deploy::rollback(&w, sha, strategy, to_tag.as_deref(), &config_arg(cli)).await?;
            if let Some(gh) = github(&w) {
                let notes = gh.report(None, &report).await;
                report.notes.extend(notes);
            }
            finish_report(g, &report)
        }
        Command::Backup { sha } => {
            usage(config::check_sha(sha))?;
            let w = World::connect(load_config(cli)?).await?;
            let m = commands::backup::backup(&w, sha).await?;
            let text = format!(
                "backup verified: {}/{} ({}, sha256 {})\n",
                w.store.describe(),
                m.key,
                backup::human_bytes(m.size),
                m.sha256
            );
            print_out(g.json, &m, || text.clone())?;
            report::actions::write_outputs(&[("backup-key", m.key.clone())])?;
            for line in commands::backup::prune_after(&w).await {
                eprintln!("retention: {line}");
            }
            Ok(exit::OK)
        }
        Command::Restore { sha, key } => {
            if let Some(s) = sha {
                usage(config::check_sha_prefix(s))?;
            }
            let w = World::connect(load_config(cli)?).await?;
            let m = commands::restore::find(&w, sha.as_deref(), key.as_deref()).await?;
            let done = commands::restore::restore(&w, m).await?;
            let lines: Vec<serde_json::Value> =
                done.iter().map(|(s, d)| serde_json::json!({"step": s, "detail": d})).collect();
            print_out(g.json, &lines, || done.iter().map(|(s, d)| format!("{s}: {d}\n")).collect())?;
            Ok(exit::OK)
        }
        Command::Backups { sha } => {
            if let Some(s) = sha {
                usage(config::check_sha_prefix(s))?;
            }
            let w = usage(World::offline(load_config(cli)?))?;
            let rows = commands::backup::list(&w, sha.as_deref()).await?;
            print_out(g.json, &rows, || commands::backup::table(&rows))?;
            Ok(exit::OK)
        }
        Command::Prune { dry_run } => {
            let w = usage(World::offline(load_config(cli)?))?;
            let policy = commands::backup::policy(&w);
            if !policy.is_set() {
                eprintln!("no retention configured (backup.keep, backup.max_age): nothing deleted");
            }
            let deleted = backup::retention::prune(w.store.as_ref(), &w.config.project, policy, *dry_run).await?;
            let rows: Vec<serde_json::Value> = deleted
                .iter()
                .map(|d| serde_json::json!({"key": d.manifest.key, "sha": d.manifest.sha, "created_at": d.manifest.created_at, "size": d.manifest.size, "why": d.why, "deleted": !dry_run}))
                .collect();
            print_out(g.json, &rows, || {
                let mut out: String = deleted
                    .iter()
                    .map(|d| {
                        let line = commands::backup::prune_line(d);
                        if *dry_run {
                            format!("would be {line}\n")
                        } else {
                            format!("{line}\n")
                        }
                    })
                    .collect();
                if deleted.is_empty() && policy.is_set() {
                    out.push_str("nothing to delete\n");
                }
                out
            })?;
            Ok(exit::OK)
        }
        Command::Check => {
            let w = World::connect(load_config(cli)?).await?;
            let lines = commands::check::check(&w).await;
            print_out(g.json, &lines, || commands::check::render(&lines))?;
            Ok(if lines.iter().all(|l| l.ok) { exit::OK } else { exit::ACT })
        }
        Command::Simulate { scenario, record } => {
            let names = usage(simulate::scenarios_named(scenario))?;
            let results = simulate::run(&names, g.config.as_deref(), record.as_deref()).await?;
            print_out(g.json, &results, || simulate::table(&results))?;
            Ok(if results.iter().all(|r| r.as_expected) { exit::OK } else { exit::ACT })
        }
        Command::Runbook => {
            let w = usage(World::offline(load_config(cli)?))?;
            print!("{}", commands::runbook::render(&w, &config_arg(cli)));
            Ok(exit::OK)
        }
    }
}

/// GitHub reporting, when the environment allows it (a setup error is a warning).
fn github(w: &World) -> Option<report::github::GitHub> {
    report::github::GitHub::from_env(&w.config.github, &w.config.project)
        .unwrap_or_else(|e| warn_none("GitHub setup", e))
}

fn warn_none<T>(what: &str, e: anyhow::Error) -> Option<T> {
    tracing::warn!("GitHub: {what} failed: {e:#}");
    None
}

fn print_out<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// Prints and files the report of a deploy or rollback; returns its exit code.
fn finish_report(g: &cli::Global, r: &report::Report) -> Result<i32> {
    let md = report::summary::render(r);
    if let Err(e) = report::actions::write_summary(&md, g.summary.as_deref()) {
        tracing::warn!("{e:#}");
    }
    if let Err(e) = report::actions::write_outputs(&r.outputs()) {
        tracing::warn!("{e:#}");
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        eprintln!("\n{}", r.headline);
        for c in &r.next_commands {
            eprintln!("  {c}");
        }
    }
    Ok(r.exit_code)
}
