//! The one driver. `deploy`, `rollback`, `restore` and `backup` are modes of the same engine,
//! run by the same loop: the journal is written before every step, the deploy lock is taken in
//! preflight and released at the end, and every run ends in a typed [`Outcome`].

mod offsite;
mod plan;
pub mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::app::TagSource;
use crate::config::{Additive, Strategy};
use crate::db::{Damage, LockGuard, RowSum};
use crate::guard::{Engine, EntryState, Journal, Mode, Next, Outcome, Step, StepResult};
use crate::model::{DbNames, Sha};
use crate::record::{LostWrites, Manifest};
use crate::world::World;

pub use plan::plan;
pub use steps::{spec, Done, StepSpec};

/// One guarded run: what it was asked, its record, and what its steps found.
pub struct Run<'w> {
    pub w: &'w World,
    pub mode: Mode,
    /// The rollback strategy this run drives with (`rollback --path` overrides the config's).
    pub strategy: Strategy,
    pub sha: Sha,
    /// The tag deployed (deploy) or whose code reverts its migrations (rollback).
    pub tag: Option<String>,
    /// What a rollback redeploys: given, recorded, or read by preflight.
    pub previous_tag: Option<String>,
    /// Where `previous_tag` was read.
    pub previous_tag_source: Option<TagSource>,
    /// GitHub's last successful deployment: used when neither the runtime nor the journal knows.
    pub fallback_previous_tag: Option<String>,
    /// ` --config FILE` when one was given: added to the commands a person is told to run.
    pub config_arg: String,
    /// `deploy --allow-destructive`.
    pub allow_destructive: bool,
    /// The backup's record, which is also the journal's home once there is a backup.
    pub manifest: Option<Manifest>,
    pub journal: Journal,
    pub notes: Vec<String>,
    pub started: Instant,
    pub started_at: DateTime<Utc>,
    lock: Option<LockGuard>,
    /// What the steps found, each in its own field.
    pub found: Found,
}

/// What each step hands to the ones after it (and to the report).
#[derive(Default)]
pub struct Found {
    /// preflight → backup (the manifest): the server's version.
    pub server_version: Option<String>,
    /// classify → backup (the manifest), assess, the report: the pending SQL, classified.
    pub classification: Vec<crate::db::lint::Finding>,
    /// migrate → assess: why the failed migration could not be confirmed ended (its cancel
    /// failed), so assess must not trust a database it may still be changing.
    pub migration_left_running: Option<String>,
    /// assess → revert, verify-revert, lost-writes, the losses counted after the run, the report.
    pub assessed: Option<steps::assess::Assessed>,
    /// verify-revert → the report: the schema's differences after the revert.
    pub drift_after_revert: Option<Vec<String>>,
    /// restore → validate-restore, swap, lost-writes: the databases of the restore, once the
    /// scratch one holds the backup.
    pub restored: Option<DbNames>,
    /// swap → lost-writes: the broken database's table counters, read on the primary just before
    /// a Neon restore (the kept branch is read through a new compute, whose counters start again).
    pub kept_stats: Option<BTreeMap<String, crate::db::TableStats>>,
    /// lost-writes → the report: the writes the restore took away.
    pub lost_writes: Option<LostWrites>,
    /// Tables whose lost writes wait to be told from the migrations' own (see `app-writes`).
    pub held: Vec<crate::db::Held>,
}

impl<'w> Run<'w> {
    pub fn new(w: &'w World, mode: Mode, sha: Sha) -> Run<'w> {
        Run {
            w,
            mode,
            strategy: w.config.rollback.strategy,
            sha,
            tag: None,
            previous_tag: None,
            previous_tag_source: None,
            fallback_previous_tag: None,
            config_arg: String::new(),
            allow_destructive: false,
            manifest: None,
            journal: Journal::default(),
            notes: Vec::new(),
            started: Instant::now(),
            started_at: Utc::now(),
            lock: None,
            found: Found::default(),
        }
    }

    /// Continues the journal of an earlier run (a manual rollback or restore).
    pub fn resume(w: &'w World, mode: Mode, manifest: Manifest) -> Run<'w> {
        let mut run = Run::new(w, mode, manifest.sha.clone());
        run.tag = manifest.tag.clone();
        run.previous_tag = manifest.previous_tag.clone();
        run.previous_tag_source =
            manifest.previous_tag.as_ref().map(|_| manifest.previous_tag_source.unwrap_or(TagSource::Manifest));
        run.journal = manifest.journal.clone();
        run.found.classification = manifest.classification.clone();
        run.manifest = Some(manifest);
        run
    }

    /// Holds the deploy lock preflight took, until the run ends.
    /// Who this run is, written beside the deploy lock it takes.
    pub fn holder(&self) -> crate::db::Holder {
        crate::db::Holder::here(self.mode.name(), Some(self.sha.as_str()))
    }

    pub fn hold_lock(&mut self, lock: LockGuard) {
        self.lock = Some(lock);
    }

    pub fn manifest(&self) -> Result<&Manifest> {
        self.manifest.as_ref().context("no backup manifest for this run")
    }

    /// The backup's row sums of those of `tables` the dump holds: read from the verified backup
    /// the first time they are asked for, then kept in the manifest.
    pub async fn backup_sums(&mut self, tables: &BTreeSet<String>) -> Result<BTreeMap<String, RowSum>> {
        let m = self.manifest()?;
        let missing: BTreeSet<String> =
            tables.iter().filter(|t| m.dumped(t) && !m.data.contains_key(*t)).cloned().collect();
        if !missing.is_empty() {
            let started = Instant::now();
            let columns = m.tables.clone();
            let stored = m.stored();
            let read = match self.neon_branch().await? {
                // A live copy: its rows are summed where they are.
                Some(branch) => {
                    let mut read = BTreeMap::new();
                    for t in &missing {
                        let cols = columns.get(t).cloned().unwrap_or_default();
                        read.insert(t.clone(), self.w.db.table_sum(&branch, t, &cols).await?);
                    }
                    Ok(read)
                }
                None => crate::backup::sums(self.w.store.as_ref(), &stored, missing.clone()).await,
            }
            .with_context(|| format!("reading the rows of {} table(s) from the backup", missing.len()))?;
            tracing::info!(
                "rows of {} table(s) summed from the backup in {:.1} s",
                missing.len(),
                started.elapsed().as_secs_f64()
            );
            self.manifest.as_mut().expect("checked above").data.extend(read);
        }
        let data = &self.manifest()?.data;
        Ok(tables.iter().filter_map(|t| Some((t.clone(), data.get(t)?.clone()))).collect())
    }

    /// The pre-deploy Neon branch, reachable as the database its name names (None: the backup
    /// is a dump).
    pub async fn neon_branch(&self) -> Result<Option<String>> {
        let Some(b) = self.manifest.as_ref().and_then(|m| m.neon.clone()) else { return Ok(None) };
        let n = self.w.neon.as_ref().context("this backup is a Neon branch, but backup.provider is not neon")?;
        if !self.w.db.is_elsewhere(&b.name) {
            n.reach(&self.w.db, &b.name, &b.id, &b.endpoint_id).await?;
        }
        Ok(Some(b.name))
    }

    /// Writes the journal into the manifest, if there is one yet. A store that fails here does
    /// not stop a rollback: the report still says everything.
    pub async fn persist(&mut self) {
        // The journal is written even when the run is being stopped: it says where it stopped.
        let _shield = crate::exec::cancel::shield();
        if let Some(m) = self.manifest.as_mut() {
            m.journal = self.journal.clone();
            if let Err(e) = m.save(self.w.store.as_ref()).await {
                tracing::warn!("could not update the journal in {}: {e:#}", self.w.store.describe());
            }
            // The offsite copy's manifest follows, so a backup restored from it carries the journal.
            // (On Neon the copy is a dump of the branch with a record of its own.)
            if let (Some(copy), Some(_), None) = (&self.w.copy, &m.copy, &m.neon) {
                if let Err(e) = m.save(copy.as_ref()).await {
                    tracing::warn!("could not update the journal in {}: {e:#}", copy.describe());
                }
            }
        }
    }

    /// Counts what assess found destroyed (rows of a dropped table, values of a dropped column,
    /// rows changed) from the backup's rows, after the steps: on the restore path the decision
    /// did not need them, so reading them did not keep the service down. The broken database is
    /// compared where it is now (kept beside the restored one after a swap).
    async fn count_losses(&mut self) {
        let Some(u) = self.found.assessed.as_mut().and_then(|a| a.uncounted.take()) else { return };
        let data = match self.backup_sums(&u.wanted).await {
            Ok(d) => d,
            Err(e) => {
                self.notes.push(format!("the losses were not counted from the backup: {e:#}"));
                return;
            }
        };
        let swapped = self.journal.entries.iter().any(|e| e.step == Step::Swap && e.state == EntryState::Ok);
        let db = match &self.found.restored {
            Some(names) if swapped => names.failed.clone(),
            _ => self.w.db.name.clone(),
        };
        let mut damage = Damage::assess(&u.before, &u.now, &u.stats, &u.stats_now, &data, &u.renames);
        for t in damage.suspects.clone() {
            let Some(backup) = data.get(&t) else {
                self.notes.push(format!("the rows of {t} were not compared: the backup holds no rows of it to read"));
                continue;
            };
            let (at, columns) = u.renames.now_at(&t, &backup.columns);
            match self.w.db.table_sum(&db, &at, &columns).await {
                Ok(now) => damage.rows_changed(&t, backup, &now),
                Err(e) => self.notes.push(format!("the rows of {t} were not compared: {e:#}")),
            }
        }
        if let Some(a) = self.found.assessed.as_mut() {
            a.destroyed = steps::assess::attribute(damage.destroyed, &u.names);
        }
    }

    /// Runs the engine to its end.
    pub async fn drive(&mut self, strategy: Strategy) -> Outcome {
        self.strategy = strategy;
        let mut engine =
            Engine::new(self.mode, strategy).keep_additive(self.w.config.rollback.additive == Additive::Keep);
        let mut step = engine.first();
        let stop = StopSignal::listen();
        let outcome = loop {
            self.journal.begin(step, Utc::now());
            self.persist().await;
            // A step that must not be cut short does not start once the run was asked to stop (the
            // signal may come while the journal is written).
            if let Some(signal) = stop.received().filter(|_| !spec(step).interruptible()) {
                self.journal.withdraw(step);
                let why = format!(
                    "stopped by {signal} before `{step}` started (it must not be cut short): `{step}` and what \
                     follows did not run"
                );
                break engine.stopped_before(step, why);
            }
            crate::console::group_start(step.name(), step.title());
            tracing::info!("▶ {}: {}", step.name(), step.title());
            // A step that must not be cut short runs to its end even when the run is asked to stop.
            let shield = (!spec(step).interruptible()).then(crate::exec::cancel::shield);
            let performed = spec(step).perform(self).await;
            drop(shield);
            let (result, detail) = match performed {
                Ok(Done::Ok(detail)) => (StepResult::Ok, detail),
                Ok(Done::Warning(w)) => (StepResult::Warning(w.clone()), w),
                Ok(Done::Assessed(a, detail)) => (StepResult::Assessed(a), detail),
                Err(e) => (StepResult::Failed(format!("{e:#}")), format!("{e:#}")),
            };
            let state = match &result {
                StepResult::Ok | StepResult::Assessed(_) => EntryState::Ok,
                StepResult::Warning(_) => EntryState::Warning,
                StepResult::Failed(_) => EntryState::Failed,
            };
            // Details quote tool and app output: no workflow commands from them.
            let shown = crate::console::untrusted(&detail);
            match state {
                EntryState::Failed => tracing::error!("✗ {}: {shown}", step.name()),
                EntryState::Warning => tracing::warn!("! {}: {shown}", step.name()),
                _ => tracing::info!("✓ {}: {shown}", step.name()),
            }
            crate::console::group_end();
            self.journal.end(step, state, detail, Utc::now());
            match engine.next(step, &result) {
                // Asked to stop: the step under way was cut short, or ran to its end; nothing
                // more starts.
                Next::Run(s) if stop.received().is_some() => {
                    let signal = stop.received().unwrap_or("a signal");
                    let how = if state == EntryState::Failed { "was cut short" } else { "finished" };
                    let why = format!("stopped by {signal}: `{step}` {how}, `{s}` and what follows did not run");
                    break engine.stopped_before(s, why);
                }
                Next::Run(s) => {
                    if let Err(why) = self.keep_lock(s).await {
                        break engine.stopped_before(s, why);
                    }
                    step = s;
                }
                Next::Finish(o) => break o,
            }
        };
        self.notes.append(&mut engine.notes);
        if let Some(m) = self.manifest.as_mut() {
            m.outcome = Some(outcome.clone());
            // A run that is stuck again needs a person again, whatever was resolved before.
            if matches!(outcome, Outcome::RollbackFailed { .. }) {
                m.resolved = None;
            }
        }
        self.persist().await;
        // The outcome is recorded first: counting reads the backup, and a run asked to stop
        // does not start it.
        let uncounted = self.found.assessed.as_ref().is_some_and(|a| a.uncounted.is_some());
        if uncounted && stop.received().is_none() {
            self.count_losses().await;
            self.persist().await;
        }
        self.release().await;
        outcome
    }

    /// Before every step after preflight: the deploy lock is still ours, or is taken again when
    /// its connection dropped and no one else took it; `Err` when another run holds it now.
    async fn keep_lock(&mut self, next: Step) -> std::result::Result<(), String> {
        let Some(lock) = self.lock.as_mut() else { return Ok(()) };
        if lock.held().await {
            return Ok(());
        }
        match self.w.db.lock(&self.w.lock_key(), &self.holder()).await {
            Ok(again) => {
                self.lock = Some(again);
                self.notes.push(format!(
                    "the deploy lock was lost before `{next}` (its connection dropped) and taken again: no other run held it"
                ));
                Ok(())
            }
            Err(e) => {
                self.lock = None;
                Err(format!(
                    "lost the deploy lock before `{next}`, and it cannot be taken again ({e:#}); stopped there"
                ))
            }
        }
    }

    /// Releases the deploy lock, if held.
    pub async fn release(&mut self) {
        let _shield = crate::exec::cancel::shield();
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
    }

    /// The kept copy of the broken database, when a swap happened.
    pub fn kept_database(&self) -> Option<&str> {
        self.found.restored.as_ref().map(|s| s.failed.as_str())
    }

    /// The tag whose code runs the migrations.
    pub fn code_tag(&self) -> Result<&str> {
        self.tag.as_deref().context("no tag recorded for this deploy")
    }

    /// The names of this run's restore (scratch and kept databases).
    pub fn db_names(&self) -> Result<DbNames> {
        DbNames::new(&self.w.db.name, &self.sha)
    }

    /// A `deploy-guard …` command line for a person, with this run's `--config`.
    pub fn dg(&self, args: &str) -> String {
        format!("deploy-guard {args}{}", self.config_arg)
    }

    /// The command that runs this restore again: `args` (found by SHA), except for a
    /// point-in-time branch (`restore --at`), found by its key (the SHA finds the deploy's own).
    pub fn restore_again(&self, args: &str) -> String {
        match self.manifest.as_ref().filter(|m| m.neon.as_ref().is_some_and(|b| b.at.is_some())) {
            Some(m) => self.dg(&format!("restore --key {}", crate::exec::quote(&m.key))),
            None => self.dg(args),
        }
    }
}

/// SIGINT or SIGTERM — a cancelled Actions job (the runner sends SIGINT, SIGTERM 7.5 s later,
/// then kills the process 2.5 s after that), or Ctrl-C. The first asks the run to stop
/// (`exec::cancel`): the command under way is cut short where that is safe, the step fails,
/// nothing more starts, and the journal says where it stopped; a step that must not be cut short
/// (the swap) runs to its end first. The runner's SIGTERM changes nothing then; a second Ctrl-C
/// (SIGINT) stops the process at once.
struct StopSignal {
    /// The run is over: a signal now ends the process as it would have without us.
    over: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StopSignal {
    fn listen() -> StopSignal {
        use std::sync::atomic::Ordering;
        use tokio::signal::unix::{signal, SignalKind};
        let over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = StopSignal { over: over.clone() };
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return stop;
        };
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                let first = crate::exec::cancel::asked();
                if over.load(Ordering::SeqCst) || (first == Some("SIGINT") && name == "SIGINT") {
                    eprintln!("{name}: stopping now; the journal shows where things stand");
                    std::process::exit(crate::model::ExitCode::Act.code());
                }
                if first.is_some() {
                    tracing::warn!("{name}: still stopping (the journal is written before this process ends)");
                    continue;
                }
                tracing::warn!(
                    "{name}: stopping: the step under way is cut short where that is safe, and journaled; \
                     nothing more starts (Ctrl-C again stops at once)"
                );
                crate::exec::cancel::ask(name);
            }
        });
        stop
    }

    fn received(&self) -> Option<&'static str> {
        crate::exec::cancel::asked()
    }
}

impl Drop for StopSignal {
    fn drop(&mut self) {
        self.over.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
