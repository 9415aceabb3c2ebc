//! Each command: check its arguments (bad ones change nothing: exit 2), run it, print, exit.

use anyhow::Result;

use super::output::{error_code, finish_report, print_error, print_out};
use super::{Cli, Command, LockAction, PathChoice};
use crate::commands::{self, deploy::DeployArgs};
use crate::config::{self, Config, Strategy};
use crate::model::{human_bytes, usage, ExitCode, PointInTime, Sha, ShaPrefix, Usage};
use crate::report::github::{CommentOn, GitHub};
use crate::report::{pr_check, Report};
use crate::world::World;
use crate::{exec, simulate};

/// Runs the command line; returns the exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(&cli).await {
        Ok(code) => code,
        Err(e) => {
            let code = error_code(&e);
            print_error(cli.global.json, code, &e, "deploy-guard");
            code
        }
    }
}

/// The world of a command that only needs the backup store: offline unless the store is on the
/// target.
async fn store_world(cli: &Cli) -> Result<World> {
    let cfg = load_config(cli)?;
    if cfg.store_on_target() {
        World::connect(cfg).await
    } else {
        usage(World::offline(cfg))
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    usage(Config::load(cli.global.config.as_deref(), &config::process_env()))
}

/// ` --config FILE` for the commands a person is told to run.
fn config_arg(cli: &Cli) -> String {
    cli.global
        .config
        .as_ref()
        .map(|p| format!(" --config {}", exec::quote(&p.display().to_string())))
        .unwrap_or_default()
}

fn sha_arg(flag: &str, s: &str) -> Result<Sha> {
    usage(Sha::parse(s).map_err(|e| anyhow::anyhow!("{flag} {e}")))
}

fn prefix_arg(s: &str) -> Result<ShaPrefix> {
    usage(ShaPrefix::parse(s).map_err(|e| anyhow::anyhow!("--sha {e}")))
}

fn tag_arg(flag: &str, t: &Option<String>) -> Result<()> {
    match t {
        Some(t) => usage(config::check_tag(flag, t)),
        None => Ok(()),
    }
}

async fn dispatch(cli: &Cli) -> Result<ExitCode> {
    let g = &cli.global;
    let cfg_arg = config_arg(cli);
    match &cli.command {
        Command::Deploy { sha, tag, previous_tag, dry_run, allow_destructive } => {
            let sha = sha_arg("--sha", sha)?;
            usage(config::check_tag("--tag", tag))?;
            tag_arg("--previous-tag", previous_tag)?;
            let cfg = load_config(cli)?;
            let mut args = DeployArgs {
                sha: &sha,
                tag,
                previous_tag: previous_tag.as_deref(),
                fallback_previous_tag: None,
                config_arg: &cfg_arg,
                allow_destructive: *allow_destructive,
            };
            if *dry_run {
                let w = usage(World::offline(cfg))?;
                let plan = commands::deploy::plan(&w, &args);
                print_out(g.json, &plan, || plan.render())?;
                return Ok(ExitCode::Ok);
            }
            // Nothing has been touched yet: a target that cannot be reached aborts (exit 4).
            let w = match World::connect(cfg).await {
                Ok(w) => w,
                // A `${VAR}` the target does not set is the config's fault: exit 2.
                Err(e) if error_code(&e) == ExitCode::Usage => return Err(e),
                Err(e) => {
                    print_error(g.json, ExitCode::Aborted, &e, "deploy aborted");
                    return Ok(ExitCode::Aborted);
                }
            };
            // The user's checks must run, read-only, before anything is changed.
            usage(crate::run::steps::checks::query_results(&w, &w.db.name).await.map(|_| ()))?;
            // A tool's file missing from the release is a config error: before the backup, exit 2.
            if let Err(e) = commands::check::migration_files(&w, tag).await {
                if e.downcast_ref::<Usage>().is_some() {
                    return Err(e);
                }
                print_error(g.json, ExitCode::Aborted, &e, "deploy aborted");
                return Ok(ExitCode::Aborted);
            }
            let gh = github(&w);
            let mut deployment = None;
            if let Some(gh) = &gh {
                if previous_tag.is_none() {
                    args.fallback_previous_tag =
                        gh.previous_tag().await.unwrap_or_else(|e| warn_none("reading the last deployment", e));
                }
                deployment = gh
                    .start_deployment(sha.as_str(), tag)
                    .await
                    .unwrap_or_else(|e| warn_none("creating the deployment", e));
            }
            let report = commands::deploy::deploy(&w, &args).await;
            file_report(g, gh.as_ref(), deployment, report).await
        }
        Command::Plan { sha, tag, allow_destructive, rehearse } => {
            let sha = sha_arg("--sha", sha)?;
            let tag = tag.clone().unwrap_or_else(|| sha.to_string());
            usage(config::check_tag("--tag", &tag))?;
            let cfg = load_config(cli)?;
            let gh = GitHub::from_env(&cfg.github, &cfg.project).unwrap_or_else(|e| warn_none("GitHub setup", e));
            let comment = cfg.github.comment;
            let args = commands::plan::PlanArgs {
                sha: &sha,
                tag: &tag,
                config_arg: &cfg_arg,
                allow_destructive: *allow_destructive,
                rehearse: *rehearse,
            };
            let mut check = commands::plan::plan(cfg, &args, gh.as_ref()).await?;
            let mut url = None;
            if let (Some(gh), Some(n), true) = (&gh, check.pull_request, comment) {
                let marker = crate::report::comment::pr_check_marker(&check.project);
                match gh.upsert_on(&CommentOn::PullRequest(n), &marker, &pr_check::body(&check)).await {
                    Ok(c) => url = c.url,
                    Err(e) => {
                        tracing::warn!("GitHub: the PR comment failed: {e:#}");
                        check.notes.push(format!("GitHub PR comment failed: {e:#}"));
                    }
                }
            }
            if let Err(e) = crate::report::actions::write_summary(&pr_check::summary(&check), g.summary.as_deref()) {
                tracing::warn!("{e:#}");
            }
            if let Err(e) = crate::report::actions::write_outputs(&check.outputs(url.as_deref())) {
                tracing::warn!("{e:#}");
            }
            print_out(g.json, &check, || pr_check::render(&check))?;
            let code = check.exit_code();
            if code != ExitCode::Ok {
                crate::console::error(check.result(), &check.headline());
            }
            Ok(code)
        }
        Command::Rehearse { sha, tag } => {
            let sha = sha_arg("--sha", sha)?;
            usage(config::check_tag("--tag", tag))?;
            let w = World::connect(load_config(cli)?).await?;
            let args = DeployArgs {
                sha: &sha,
                tag,
                previous_tag: None,
                fallback_previous_tag: None,
                config_arg: &cfg_arg,
                allow_destructive: true,
            };
            let report = commands::deploy::rehearse(&w, &args).await;
            finish_report(g, &report)
        }
        Command::Rollback { sha, path, to_tag } => {
            let prefix = prefix_arg(sha)?;
            tag_arg("--to-tag", to_tag)?;
            let cfg = load_config(cli)?;
            let migrator = crate::migrate::Migrator::from_config(&cfg.migrations);
            if *path == PathChoice::Revert && !migrator.can_revert() {
                return Err(Usage(anyhow::anyhow!(
                    "--path revert: migrations.tool {} cannot revert (forward-only, or no migrations.revert and \
                     migrations.table); nothing was changed. Restoring the pre-deploy backup is the only way back: \
                     --path restore",
                    migrator.tool().name()
                ))
                .into());
            }
            let w = World::connect(cfg).await?;
            let strategy = match path {
                PathChoice::Auto => None,
                PathChoice::Revert => Some(Strategy::Revert),
                PathChoice::Restore => Some(Strategy::Restore),
            };
            let report = commands::deploy::rollback(&w, &prefix, strategy, to_tag.as_deref(), &cfg_arg).await?;
            let gh = github(&w);
            file_report(g, gh.as_ref(), None, report).await
        }
        Command::Resolve { sha, note } => {
            let prefix = prefix_arg(sha)?;
            if note.trim().is_empty() {
                usage(Err(anyhow::anyhow!("--note must say what a person did")))?;
            }
            let w = store_world(cli).await?;
            let done = commands::resolve::resolve(&w, &prefix, note).await?;
            print_out(g.json, &done, || commands::resolve::render(&done))?;
            Ok(ExitCode::Ok)
        }
        Command::Backup { sha } => {
            let sha = sha_arg("--sha", sha)?;
            let w = World::connect(load_config(cli)?).await?;
            let report = commands::backup::backup(&w, &sha, &cfg_arg).await;
            if let (false, Some(b)) = (g.json, &report.backup) {
                if report.outcome.is_success() {
                    println!("backup verified: {} ({}, sha256 {})", b.location, human_bytes(b.size), b.sha256);
                }
            }
            let code = finish_report(g, &report)?;
            if report.outcome.is_success() {
                for line in commands::backup::prune_after(&w).await {
                    eprintln!("retention: {line}");
                }
            }
            Ok(code)
        }
        Command::Restore { sha, key, at } => {
            let prefix = sha.as_deref().map(prefix_arg).transpose()?;
            let at = at.as_deref().map(|t| usage(PointInTime::parse(t, chrono::Utc::now()))).transpose()?;
            let cfg = load_config(cli)?;
            if at.is_some() {
                commands::restore::refuse_at_without_history(&cfg)?;
            }
            let w = World::connect(cfg).await?;
            let m = match &at {
                Some(t) => commands::restore::find_at(&w, prefix.as_ref(), t).await?,
                None => commands::restore::find(&w, prefix.as_ref(), key.as_deref()).await?,
            };
            let report = commands::restore::restore(&w, m, &cfg_arg).await;
            if !g.json {
                for e in report.own_steps() {
                    println!("{}: {}", e.step, crate::console::untrusted(&e.detail));
                }
            }
            finish_report(g, &report)
        }
        Command::Replay { sha, dry_run } => {
            let prefix = prefix_arg(sha)?;
            let w = World::connect(load_config(cli)?).await?;
            let r = commands::replay::replay(&w, &prefix, *dry_run).await?;
            match r.sql {
                Some(sql) => print!("{sql}"),
                None => eprintln!("replayed {} row change(s) from {}", r.rows, r.key),
            }
            Ok(ExitCode::Ok)
        }
        Command::Backups { sha } => {
            let prefix = sha.as_deref().map(prefix_arg).transpose()?;
            let w = store_world(cli).await?;
            let rows = commands::backup::list(&w, prefix.as_ref()).await?;
            print_out(g.json, &rows, || commands::backup::table(&rows))?;
            Ok(ExitCode::Ok)
        }
        Command::Prune { dry_run } => {
            // A Neon backup's branch is deleted through the API.
            let w = usage(store_world(cli).await?.with_neon())?;
            let policy = commands::backup::policy(&w);
            if !policy.is_set() {
                eprintln!("no retention configured (backup.keep, backup.max_age): nothing deleted");
            }
            let deleted =
                crate::record::retention::prune(w.store.as_ref(), w.neon.as_ref(), &w.config.project, policy, *dry_run)
                    .await?;
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
            Ok(ExitCode::Ok)
        }
        Command::Check => {
            let w = World::connect(load_config(cli)?).await?;
            let lines = commands::check::check(&w).await;
            print_out(g.json, &lines, || commands::check::render(&lines))?;
            // A file the config names that is not there is the config's fault: exit 2.
            let bad_config = lines.iter().any(|l| l.bad_config);
            Ok(if lines.iter().all(|l| l.ok) {
                ExitCode::Ok
            } else if bad_config {
                ExitCode::Usage
            } else {
                ExitCode::Act
            })
        }
        Command::Simulate { scenario, record, runtime } => {
            let names = usage(simulate::scenarios_named(scenario))?;
            let kubernetes = match runtime {
                None | Some(crate::config::RuntimeKind::Shell) => false,
                Some(crate::config::RuntimeKind::Kubernetes) => true,
                Some(other @ (crate::config::RuntimeKind::Compose | crate::config::RuntimeKind::Swarm)) => {
                    usage(Err(anyhow::anyhow!(
                        "simulate --runtime {}: the drill runs shell commands or kubernetes; the Docker runtimes' \
                         scenarios are tests/it/compose_docker.rs and swarm.rs (they need Docker)",
                        format!("{other:?}").to_lowercase()
                    )))?
                }
            };
            let results = simulate::run(&names, g.config.as_deref(), record.as_deref(), kubernetes).await?;
            print_out(g.json, &results, || simulate::table(&results))?;
            Ok(if results.iter().all(|r| r.as_expected) { ExitCode::Ok } else { ExitCode::Act })
        }
        Command::Init { tool, runtime } => {
            let dir = std::env::current_dir()?;
            for f in usage(commands::init::init(&dir, *tool, *runtime))? {
                println!("wrote {f}");
            }
            eprintln!("next: fill in the lines marked CHECK, then run `deploy-guard check`");
            Ok(ExitCode::Ok)
        }
        Command::Lock { action: LockAction::Status } => {
            let w = World::connect(load_config(cli)?).await?;
            let status = commands::lock::status(&w).await?;
            print_out(g.json, &status, || commands::lock::render(&status))?;
            Ok(ExitCode::Ok)
        }
        Command::Lock { action: LockAction::Freeze { message } } => {
            if message.trim().is_empty() {
                usage(Err(anyhow::anyhow!("--message must say why deploys are frozen")))?;
            }
            let w = store_world(cli).await?;
            let f = crate::record::freeze::freeze(w.store.as_ref(), &w.config.project, message.trim()).await?;
            print_out(g.json, &f, || format!("{f}\nlift it with: deploy-guard lock unfreeze{cfg_arg}\n"))?;
            Ok(ExitCode::Ok)
        }
        Command::Lock { action: LockAction::Unfreeze } => {
            let w = store_world(cli).await?;
            let was = crate::record::freeze::unfreeze(w.store.as_ref(), &w.config.project).await?;
            print_out(g.json, &was, || match &was {
                Some(f) => format!("lifted: {f}\n"),
                None => format!("deploys of {} were not frozen\n", w.config.project),
            })?;
            Ok(ExitCode::Ok)
        }
        Command::Runbook { sha } => {
            let prefix = sha.as_deref().map(prefix_arg).transpose()?;
            let w = store_world(cli).await?;
            print!("{}", commands::runbook::render(&w, prefix.as_ref(), &cfg_arg).await?);
            Ok(ExitCode::Ok)
        }
    }
}

/// Reports on GitHub (when the environment allows it), then prints and files the report.
async fn file_report(
    g: &super::Global,
    gh: Option<&GitHub>,
    deployment: Option<u64>,
    mut report: Report,
) -> Result<ExitCode> {
    if let Some(gh) = gh {
        let (notes, links) = gh.report(deployment, &report).await;
        report.notes.extend(notes);
        report.links = links;
    }
    finish_report(g, &report)
}

/// GitHub reporting, when the environment allows it (a setup error is a warning).
fn github(w: &World) -> Option<GitHub> {
    GitHub::from_env(&w.config.github, &w.config.project).unwrap_or_else(|e| warn_none("GitHub setup", e))
}

fn warn_none<T>(what: &str, e: anyhow::Error) -> Option<T> {
    tracing::warn!("GitHub: {what} failed: {e:#}");
    None
}
