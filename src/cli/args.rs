//! The arguments. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Guards a deploy: a verified pre-deploy PostgreSQL backup, the migrations, the new tag, and an
/// automatic rollback (revert, or restore the backup) when anything fails.
///
/// Exit codes: 0 done · 1 deploy failed and was rolled back · 2 bad usage or config · 3 a person
/// must act (state and next commands are reported) · 4 deploy aborted before any change (plan: a
/// destructive migration nobody allowed).
#[derive(Debug, Parser)]
#[command(name = "deploy-guard", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Config file [default: ./deploy-guard.yml]. Every setting can also be given as
    /// DEPLOY_GUARD_<SECTION>_<KEY>.
    #[arg(long, global = true, env = "DEPLOY_GUARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print one JSON report on stdout (logs stay on stderr); on an error, an error object.
    #[arg(long, global = true)]
    pub json: bool,
    /// Write the markdown summary here (when $GITHUB_STEP_SUMMARY is not set).
    #[arg(long, global = true, value_name = "FILE")]
    pub summary: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up, migrate and deploy TAG; roll back by itself if anything fails.
    Deploy {
        /// Git SHA of the deploy (names the backup).
        #[arg(long, env = "GITHUB_SHA")]
        sha: String,
        /// Image tag to deploy.
        #[arg(long)]
        tag: String,
        /// Tag to roll back to [default: what runs now, from the runtime].
        #[arg(long, value_name = "TAG")]
        previous_tag: Option<String>,
        /// Print the plan with its exact commands; run and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Deploy even though the pending migrations' SQL is destructive and
        /// rollback.destructive is refuse (a rollback will restore, never revert).
        #[arg(long)]
        allow_destructive: bool,
    },
    /// The PR check: classify the pull request's migrations (read from this checkout) — what a
    /// revert cannot undo, long locks, what breaks the previous release, with the rows at stake in
    /// the database this machine reaches (database.url, e.g. a service container) — and show the
    /// path a deploy of it would take. Posts one comment on the pull request, updated in place.
    /// Changes nothing anywhere: no SSH, no backup of production (--rehearse backs up the job's
    /// own database into a temporary store).
    ///
    /// Exit: 0 nothing destructive, or allowed (the `allow-destructive` label, --allow-destructive,
    /// or the SQL comment "deploy-guard: allow-destructive REASON" on the statement) · 2 bad usage
    /// or config · 3 the check (or the rehearsal asked for) could not run · 4 a destructive
    /// statement nobody allowed, or migrations that fail when rehearsed.
    Plan {
        #[arg(long, env = "GITHUB_SHA")]
        sha: String,
        /// Image tag the plan names [default: the SHA].
        #[arg(long)]
        tag: Option<String>,
        /// Destructive statements do not fail the check (they are still listed).
        #[arg(long)]
        allow_destructive: bool,
        /// Also rehearse the migrations on a copy of the job's database (DEPLOY_GUARD_DATABASE_URL):
        /// backed up into a temporary store, restored into a scratch database, run up and back down
        /// there with the tool in this checkout, compared. Fails (4) when they fail there.
        #[arg(long)]
        rehearse: bool,
    },
    /// Rehearse the release TAG on a copy of production's data: a verified backup restored into a
    /// scratch database, the release's migrations run up and back down there, compared with the
    /// backup; production is not changed.
    Rehearse {
        #[arg(long, env = "GITHUB_SHA")]
        sha: String,
        /// Image tag whose code runs the migrations.
        #[arg(long)]
        tag: String,
    },
    /// Roll back the deploy of SHA by hand (finds its backup and journal by SHA prefix).
    Rollback {
        #[arg(long)]
        sha: String,
        /// auto: revert when trusted, else restore; revert: only revert; restore: restore the backup.
        #[arg(long, value_enum, default_value_t = PathChoice::Auto)]
        path: PathChoice,
        /// Tag to redeploy [default: the previous tag recorded by the deploy].
        #[arg(long, value_name = "TAG")]
        to_tag: Option<String>,
    },
    /// Record what a person did about the deploy of SHA whose rollback failed (exit 3): until
    /// then the next deploy is refused and retention keeps its backup.
    Resolve {
        /// SHA (prefix) of the deploy whose rollback failed.
        #[arg(long)]
        sha: String,
        /// What was done (kept in the manifest, e.g. "restored by hand from the backup").
        #[arg(long)]
        note: String,
    },
    /// Take and verify a backup tagged with SHA, and nothing else.
    Backup {
        #[arg(long, env = "GITHUB_SHA")]
        sha: String,
    },
    /// Restore a backup (found by SHA prefix or key) over the live database, by scratch-and-swap;
    /// on Neon also the database as it was at a moment (--at).
    Restore {
        #[arg(long, conflicts_with = "key", required_unless_present_any = ["key", "at"])]
        sha: Option<String>,
        #[arg(long)]
        key: Option<String>,
        /// Point in time (backup.provider: neon only), RFC 3339, e.g. 2026-12-07T03:00:00Z: a
        /// branch of the primary as it was then, verified, then the same restore (the present
        /// kept as a branch, the writes since found). Recorded under the deploy --sha names
        /// [default: the newest recorded]. A future time, or one outside the project's history
        /// window, is refused and nothing changes.
        #[arg(long, value_name = "TIMESTAMP", conflicts_with = "key")]
        at: Option<String>,
    },
    /// Apply the writes a restore took away (the replay file it wrote beside the backup), in one
    /// transaction; review it first with --dry-run.
    Replay {
        /// SHA (prefix) of the deploy whose restore lost the writes.
        #[arg(long)]
        sha: String,
        /// Print the replay file; apply nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List backups, newest first.
    Backups {
        /// Only backups whose SHA starts with this.
        #[arg(long, value_name = "PREFIX")]
        sha: Option<String>,
    },
    /// Apply retention (backup.keep, backup.max_age): delete old backups, never the newest
    /// verified one nor one of an unfinished deploy; prints what it deleted.
    Prune {
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Reach every part (target, database, tools, store, app, health) and change nothing.
    Check,
    /// Rehearse: run failure scenarios against a throwaway PostgreSQL and prove both rollback
    /// paths bring everything back.
    Simulate {
        /// happy, migration-fails, unhealthy-after-migrate, bad-down, lying-down, destructive-down,
        /// data-rewrite, lost-writes, additive-keep, rehearsal-catches, backup-fails, dirty-state,
        /// or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Append rehearsal-log rows (date, scenario, path, duration, result) to this file.
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
        /// kubernetes: the app runs as Deployments on a throwaway control plane (built by
        /// scripts/k8s-tools) [default: shell commands].
        #[arg(long, value_parser = parse_runtime)]
        runtime: Option<crate::config::RuntimeKind>,
    },
    /// Look at this repository (the migration tool's files, a compose file) and write a commented
    /// deploy-guard.yml, and the example workflows when there are none. Asks nothing.
    Init {
        /// The migration tool [default: detected].
        #[arg(long, value_parser = parse_tool)]
        tool: Option<crate::config::Tool>,
        /// compose or shell [default: compose when a compose file is here].
        #[arg(long, value_parser = parse_runtime)]
        runtime: Option<crate::config::RuntimeKind>,
    },
    /// The deploy lock: who holds it, and freezing deploys during an incident.
    Lock {
        #[command(subcommand)]
        action: LockAction,
    },
    /// Print the manual rollback runbook with this deployment's exact commands (the newest
    /// deploy's, or SHA's).
    Runbook {
        #[arg(long, value_name = "PREFIX")]
        sha: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LockAction {
    /// Who holds the deploy lock (the command, SHA, Actions run, since when) and whether deploys
    /// are frozen. Changes nothing.
    Status,
    /// Refuse every deploy (exit 4, with this message and who froze it) until `lock unfreeze`;
    /// rollbacks and restores still run. Kept in the backup store.
    Freeze {
        /// Why, for whoever's deploy is refused ("incident 42: do not deploy until the
        /// replica is back").
        #[arg(short, long)]
        message: String,
    },
    /// Lift the freeze: deploys run again.
    Unfreeze,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PathChoice {
    Auto,
    Revert,
    Restore,
}

fn parse_tool(s: &str) -> Result<crate::config::Tool, String> {
    serde_yaml::from_str(s).map_err(|_| format!("{s:?}: not a migration tool deploy-guard knows"))
}

fn parse_runtime(s: &str) -> Result<crate::config::RuntimeKind, String> {
    serde_yaml::from_str(s).map_err(|_| format!("{s:?}: compose, shell or kubernetes"))
}
