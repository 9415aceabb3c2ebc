//! `plan`: the PR check. Reads the pending migrations from this checkout, classifies them
//! (what a revert cannot undo, long locks, what breaks the previous release), counts the rows at
//! stake in the database this machine reaches (a service container of the job), and says the
//! path a deploy of it would take. Nothing runs on the target: no SSH, no backup, no lock.

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use crate::config::{Config, Destructive};
use crate::db::lint::Kind;
use crate::db::Postgres;
use crate::exec::{self, fill, Cmd, Local};
use crate::guard::{Assessment, Engine, Mode, Step};
use crate::migrate::PendingSql;
use crate::model::Sha;
use crate::report::github::{self, GitHub};
use crate::report::pr_check::{Allowance, PrCheck, PrRehearsal, ALLOW_LABEL};
use crate::run::steps::classify;
use crate::world::{self, World};

pub struct PlanArgs<'a> {
    pub sha: &'a Sha,
    pub tag: &'a str,
    pub config_arg: &'a str,
    /// Destructive statements do not fail the check.
    pub allow_destructive: bool,
    /// Also rehearse the migrations on a copy of the job's database ([`super::pr_rehearse`]).
    pub rehearse: bool,
}

/// The pull request of this job: its number, labels and the files it changes.
struct Pr {
    number: u64,
    labels: Vec<String>,
    files: Option<BTreeSet<String>>,
}

async fn pull_request(gh: Option<&GitHub>, notes: &mut Vec<String>) -> Result<Option<Pr>> {
    let Some((number, event_labels)) = github::event_pull_request()? else { return Ok(None) };
    let Some(gh) = gh else {
        notes.push(
            "no GITHUB_TOKEN: every pending migration was classified, not only the pull request's, and the labels \
             are the event's"
                .into(),
        );
        return Ok(Some(Pr { number, labels: event_labels, files: None }));
    };
    let labels = gh.labels(number).await.context("reading the pull request's labels")?;
    let files = gh.changed_files(number).await.context("listing the pull request's files")?;
    Ok(Some(Pr { number, labels, files: Some(files.into_iter().collect()) }))
}

/// Reads the pending SQL here, in the checkout (a tool's command runs with `db`'s connection).
async fn pending_sql(
    w: &World,
    tag: &str,
    db: Option<&Postgres>,
    rows: &[serde_json::Value],
) -> Result<Option<String>> {
    let mut cmd = match &w.migrator.pending_sql {
        None => return Ok(None),
        Some(PendingSql::Files(glob)) => Cmd::new("read the migrations", classify::files_script(glob, tag)),
        Some(PendingSql::Command(c)) => {
            let head = w.migrator.tool().revert_target(rows).unwrap_or_default();
            Cmd::new("the tool's pending SQL", fill(c, &[("tag", tag), ("head", &head)]))
        }
    };
    if let Some(db) = db {
        cmd.env.extend(db.conn_env());
    }
    let out = exec::capture(&Local, &cmd.timeout(w.migrator.timeout)).await?;
    out.exit.check("reading the pending migrations' SQL in this checkout")?;
    Ok(Some(out.stdout))
}

/// The database the check reads, when one answers (else why not, for the comment).
async fn database(cfg: &Config) -> Result<Result<Postgres, String>> {
    let Some(pg) = crate::model::usage(world::runner_db(cfg))? else {
        return Ok(Err(
            "the database is reached only on the target; give the job one with DEPLOY_GUARD_DATABASE_URL".into()
        ));
    };
    Ok(match pg.server_version(&pg.name).await {
        Ok(_) => Ok(pg),
        Err(e) => Err(format!("database {} did not answer: {e:#}", pg.name)),
    })
}

pub async fn plan(cfg: Config, a: &PlanArgs<'_>, gh: Option<&GitHub>) -> Result<PrCheck> {
    let mut notes = Vec::new();
    let db = database(&cfg).await?;
    let rehearsal = match (&db, a.rehearse) {
        (_, false) => None,
        (Ok(_), true) => Some(super::pr_rehearse::rehearse(&cfg, a).await),
        (Err(why), true) => Some(PrRehearsal::NotRun { reason: why.clone() }),
    };
    let w = crate::model::usage(World::offline(cfg))?;
    let pr = pull_request(gh, &mut notes).await?;
    let rows = match (&db, &w.migrator.table) {
        (Ok(pg), Some(t)) => pg.migration_rows(&pg.name, t, &w.migrator.order_by).await?,
        _ => Vec::new(),
    };
    let trial = db.as_ref().ok();
    let sql = pending_sql(&w, a.tag, trial, &rows).await?;
    if sql.is_none() {
        notes.push(format!(
            "migrations.tool {}: its pending SQL cannot be read before it runs (set migrations.pending_sql): nothing \
             was classified",
            w.migrator.tool().name()
        ));
    }
    let sql = sql.unwrap_or_default();
    let catalog = match trial {
        Some(pg) => classify::read_catalog(pg, &pg.name, &sql).await?,
        None => Default::default(),
    };
    let recorded = classify::recorded_names(&rows);
    let pr_files = pr.as_ref().and_then(|p| p.files.as_ref());
    let mut files = Vec::new();
    let findings = classify::classify(
        &sql,
        |path| {
            let path = path.trim_start_matches("./");
            let skip = match pr_files {
                Some(changed) => !changed.contains(path),
                None => classify::is_applied(path, &recorded),
            };
            if !skip {
                files.push(path.to_string());
            }
            skip
        },
        classify::files(&w),
        classify::tool_table(&w),
        catalog,
    );
    let mut tables: Vec<String> = findings.iter().flat_map(|f| f.tables.clone()).collect();
    tables.sort();
    tables.dedup();
    let counted = match trial {
        Some(pg) => pg.row_counts(&pg.name, &tables).await?,
        None => Default::default(),
    };
    let allowance = if a.allow_destructive {
        Some(Allowance::Flag)
    } else if pr.as_ref().is_some_and(|p| p.labels.iter().any(|l| l == ALLOW_LABEL)) {
        Some(Allowance::Label)
    } else {
        None
    };
    let deploy_args = super::deploy::DeployArgs {
        sha: a.sha,
        tag: a.tag,
        previous_tag: None,
        fallback_previous_tag: None,
        config_arg: a.config_arg,
        allow_destructive: a.allow_destructive,
    };
    let plan = super::deploy::plan(&w, &deploy_args);
    let destructive = findings.iter().any(|f| f.kind == Kind::Destructive);
    let (rollback_path, rollback_why) = rollback_path(&w, destructive, &plan.rollback);
    let rehearse = w.config.deploy.rehearse;
    Ok(PrCheck {
        project: w.config.project.clone(),
        sha: a.sha.to_string(),
        pull_request: pr.map(|p| p.number),
        files,
        findings,
        rows: counted,
        database: db.as_ref().map(|pg| pg.name.clone()).map_err(Clone::clone),
        allowance,
        deploy_path: plan
            .steps
            .iter()
            .filter(|s| rehearse || s.step != Step::Rehearse)
            .map(|s| s.step.name())
            .collect(),
        rollback_path,
        rollback_why,
        deploy_refuses: w.config.rollback.destructive == Destructive::Refuse,
        plan,
        notes,
        rehearsal,
    })
}

/// The way a failed deploy of this would bring the database back, as the engine decides it.
fn rollback_path(
    w: &World,
    destructive: bool,
    steps: &[crate::guard::plan::PlannedStep],
) -> (Vec<&'static str>, String) {
    let assessed = Assessment {
        applied: 1,
        history_consistent: true,
        revert_configured: w.migrator.can_revert(),
        backup_verified: true,
        classified_destructive: destructive,
        ..Default::default()
    };
    let blockers = Engine::new(Mode::Deploy, w.config.rollback.strategy).fast_path_blockers(&assessed);
    let revert = blockers.is_empty();
    let fast = [Step::Revert, Step::VerifyRevert];
    let path = steps
        .iter()
        .map(|s| s.step)
        .filter(|s| {
            if revert {
                !matches!(
                    s,
                    Step::StopApp
                        | Step::Restore
                        | Step::ValidateRestore
                        | Step::Swap
                        | Step::LostWrites
                        | Step::AppWrites
                )
            } else {
                !fast.contains(s)
            }
        })
        .map(Step::name)
        .collect();
    let why = if revert {
        "revert with the tool's down; the backup is restored if the revert does not verify".to_string()
    } else {
        format!("restore the backup: {}", blockers.join("; "))
    };
    (path, why)
}
