//! Performs the engine's steps against the world, journaling each before it runs.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::World;
use crate::backup::{self, Manifest, MigrationState};
use crate::db::{LockGuard, SwapNames};
use crate::exec;
use crate::guard::{Assessment, Engine, EntryState, Journal, Next, Outcome, Step, StepResult};
use crate::migrate::applied_since;

/// One guarded run (deploy or rollback) and everything the report needs from it.
pub struct Run<'w> {
    pub w: &'w World,
    pub sha: String,
    /// The tag deployed (deploy) or whose code reverts its migrations (rollback).
    pub tag: Option<String>,
    /// What a rollback redeploys.
    pub previous_tag: Option<String>,
    /// Used when the runtime cannot tell which tag runs.
    pub fallback_previous_tag: Option<String>,
    /// Read in preflight, recorded in the manifest.
    server_version: Option<String>,
    pub manifest: Option<Manifest>,
    pub journal: Journal,
    pub rows_after: Option<Vec<Value>>,
    pub app_status: Option<String>,
    pub app_logs: Option<String>,
    pub notes: Vec<String>,
    pub drift: Vec<String>,
    pub started: Instant,
    pub started_at: DateTime<Utc>,
    lock: Option<LockGuard>,
    applied: usize,
    swap: Option<SwapNames>,
}

impl<'w> Run<'w> {
    pub fn new(w: &'w World, sha: &str) -> Run<'w> {
        Run {
            w,
            sha: sha.to_ascii_lowercase(),
            tag: None,
            previous_tag: None,
            fallback_previous_tag: None,
            server_version: None,
            manifest: None,
            journal: Journal::default(),
            rows_after: None,
            app_status: None,
            app_logs: None,
            notes: Vec::new(),
            drift: Vec::new(),
            started: Instant::now(),
            started_at: Utc::now(),
            lock: None,
            applied: 0,
            swap: None,
        }
    }

    /// Continues the journal of an earlier deploy (manual rollback).
    pub fn resume(w: &'w World, manifest: Manifest) -> Run<'w> {
        let mut run = Run::new(w, &manifest.sha.clone());
        run.tag = manifest.tag.clone();
        run.previous_tag = manifest.previous_tag.clone();
        run.journal = manifest.journal.clone();
        run.manifest = Some(manifest);
        run
    }

    pub fn sha7(&self) -> &str {
        &self.sha[..7.min(self.sha.len())]
    }

    /// Writes the journal into the manifest, if there is one yet. A store that fails here does
    /// not stop a rollback: the report still says everything.
    async fn persist(&mut self) {
        if let Some(m) = self.manifest.as_mut() {
            m.journal = self.journal.clone();
            if let Err(e) = m.save(self.w.store.as_ref()).await {
                tracing::warn!("could not update the journal in {}: {e:#}", self.w.store.describe());
            }
        }
    }

    /// Runs the engine to its end.
    pub async fn drive(&mut self, mut engine: Engine) -> Outcome {
        let mut step = engine.first();
        let outcome = loop {
            self.journal.begin(step, Utc::now());
            self.persist().await;
            crate::report::actions::group_start(step);
            tracing::info!("▶ {}: {}", step.name(), step.title());
            let (result, detail) = self.perform(step, &engine).await;
            let state = match &result {
                StepResult::Ok | StepResult::Assessed(_) => EntryState::Ok,
                StepResult::Warning(_) => EntryState::Warning,
                StepResult::Failed(_) => EntryState::Failed,
            };
            match state {
                EntryState::Failed => tracing::error!("✗ {}: {detail}", step.name()),
                EntryState::Warning => tracing::warn!("! {}: {detail}", step.name()),
                _ => tracing::info!("✓ {}: {detail}", step.name()),
            }
            crate::report::actions::group_end();
            self.journal.end(step, state, detail, Utc::now());
            match engine.next(step, &result) {
                Next::Run(s) => step = s,
                Next::Finish(o) => break o,
            }
        };
        self.notes.append(&mut engine.notes);
        if let Some(m) = self.manifest.as_mut() {
            m.outcome = Some(outcome.result().to_string());
        }
        self.persist().await;
        self.release().await;
        outcome
    }

    async fn perform(&mut self, step: Step, engine: &Engine) -> (StepResult, String) {
        let r = match step {
            Step::Preflight if self.manifest.is_some() => self.rollback_preflight().await,
            Step::Preflight => self.preflight().await,
            Step::Backup => self.backup().await,
            Step::Record => self.record().await,
            Step::Migrate => self.migrate().await,
            Step::Deploy => self.deploy_tag().await,
            Step::Health | Step::RedeployHealth => self.w.health.wait().await,
            Step::Assess => {
                return match self.assess(engine).await {
                    Ok((a, detail)) => (StepResult::Assessed(a), detail),
                    Err(e) => (StepResult::Failed(format!("{e:#}")), format!("{e:#}")),
                }
            }
            Step::Revert => self.revert().await,
            Step::VerifyRevert => self.verify_revert().await,
            Step::StopApp => {
                return match self.w.runtime.stop().await {
                    Ok(()) => (StepResult::Ok, "app stopped".into()),
                    Err(e) => (
                        StepResult::Warning(format!("{e:#}")),
                        format!("{e:#}; carrying on: the swap cuts the app off"),
                    ),
                }
            }
            Step::Restore => self.restore().await,
            Step::ValidateRestore => self.validate_restore().await,
            Step::Swap => self.swap().await,
            Step::Redeploy => self.redeploy().await,
        };
        match r {
            Ok(detail) => (StepResult::Ok, detail),
            Err(e) => {
                let why = format!("{e:#}");
                (StepResult::Failed(why.clone()), why)
            }
        }
    }

    fn manifest(&self) -> Result<&Manifest> {
        self.manifest.as_ref().context("no backup manifest for this run")
    }

    /// Deploy preflight: reach everything, take the lock, refuse unsafe starting states.
    async fn preflight(&mut self) -> Result<String> {
        let w = self.w;
        w.store.check().await.with_context(|| format!("backup store {} is not usable", w.store.describe()))?;
        let version =
            w.db.server_version(&w.db.name)
                .await
                .with_context(|| format!("database {} is not reachable", w.db.name))?;
        self.server_version = Some(version.clone());
        w.migration_rows(&w.db.name).await?;
        self.lock = Some(w.db.lock(&w.lock_key()).await?);
        self.refuse_unfinished_runs().await?;
        if self.previous_tag.is_none() {
            self.previous_tag = w.runtime.current_tag().await.context("cannot read the running tag")?;
            if self.previous_tag.is_none() {
                self.previous_tag = self.fallback_previous_tag.clone();
            }
        }
        let Some(prev) = &self.previous_tag else {
            bail!("cannot tell which tag runs now (app.commands.current_tag printed nothing); pass --previous-tag TAG");
        };
        crate::config::check_tag("the running tag", prev)?;
        Ok(format!(
            "store {} ok; PostgreSQL {version} ok; deploy lock taken{}",
            w.store.describe(),
            self.previous_tag.as_ref().map(|t| format!("; running tag {t}")).unwrap_or_default()
        ))
    }

    /// A deploy that stopped half-way (job cancelled, runner lost) must be rolled back or
    /// inspected first: never stack a deploy on top of an unknown state.
    async fn refuse_unfinished_runs(&self) -> Result<()> {
        let mut unfinished = backup::list(self.w.store.as_ref())
            .await?
            .into_iter()
            .filter(|m| m.project == self.w.config.project && m.outcome.is_none() && m.tag.is_some());
        if let Some(m) = unfinished.next() {
            let at = m.journal.interrupted().map(|e| e.step.name()).unwrap_or("an unknown step");
            bail!(
                "an earlier deploy of {} (sha {}) stopped during `{at}` and never finished; \
                 run `deploy-guard rollback --sha {}` (or inspect and re-run it) first",
                m.tag.as_deref().unwrap_or("?"),
                m.sha,
                m.sha7()
            );
        }
        Ok(())
    }

    /// Rollback preflight: the database is reachable and the lock is ours.
    pub(super) async fn rollback_preflight(&mut self) -> Result<String> {
        let w = self.w;
        let version =
            w.db.server_version(&w.db.maintenance_db).await.context("the database server is not reachable")?;
        self.lock = Some(w.db.lock(&w.lock_key()).await?);
        Ok(format!("PostgreSQL {version} ok; deploy lock taken"))
    }

    async fn backup(&mut self) -> Result<String> {
        let w = self.w;
        let stem = backup::stem(&self.sha, self.started_at);
        let key = backup::data_key(&stem);
        let taken = backup::take_verified(&w.db, w.store.as_ref(), &key, w.config.backup.compression).await?;
        let detail = format!(
            "{} ({} of SQL), sha256 {}, verified",
            backup::human_bytes(taken.size),
            backup::human_bytes(taken.dump_bytes),
            &taken.sha256[..16]
        );
        let mut m = Manifest::verified(&w.config.project, &self.sha, &w.db.name, self.started_at, taken);
        m.tag = self.tag.clone();
        m.previous_tag = self.previous_tag.clone();
        m.server_version = self.server_version.clone();
        self.manifest = Some(m);
        self.persist().await;
        Ok(detail)
    }

    async fn record(&mut self) -> Result<String> {
        let w = self.w;
        let rows = w.migration_rows(&w.db.name).await?;
        let fp = w.db.fingerprint(&w.db.name).await?;
        let detail =
            format!("{} migration rows; schema fingerprint {} ({} objects)", rows.len(), fp.short(), fp.items.len());
        let m = self.manifest.as_mut().context("no manifest")?;
        m.migrations = MigrationState { table: w.migrator.table.clone(), rows };
        m.fingerprint = Some(fp);
        self.persist().await;
        Ok(detail)
    }

    /// The migration tool's command, with the database named in libpq's variables.
    fn tool_cmd(&self, label: &str, tag: &str, script: &str) -> exec::Cmd {
        let mut cmd = self.w.runtime.tool_cmd(label, tag, script).timeout(self.w.migrator.timeout);
        if self.w.config.is_local() {
            cmd.env.extend(self.w.db.conn_env());
        }
        cmd
    }

    fn code_tag(&self) -> Result<&str> {
        self.tag.as_deref().context("no tag recorded for this deploy")
    }

    async fn migrate(&mut self) -> Result<String> {
        let w = self.w;
        let tag = self.code_tag()?;
        let script = w.migrator.run_script(tag, &self.sha);
        let cmd = self.tool_cmd("migrate", tag, &script);
        let out = exec::capture(w.exec.as_ref(), &cmd).await?;
        out.exit.check("the migration command")?;
        Ok(last_lines(&out.stdout, 3).unwrap_or_else(|| "migrations applied".into()))
    }

    async fn deploy_tag(&mut self) -> Result<String> {
        let tag = self.code_tag()?.to_string();
        self.w.runtime.deploy(&tag).await?;
        Ok(format!("{tag} started"))
    }

    async fn assess(&mut self, engine: &Engine) -> Result<(Assessment, String)> {
        let w = self.w;
        self.app_status = Some(w.runtime.status().await.unwrap_or_else(|e| format!("(status failed: {e:#})")));
        self.app_logs = w.runtime.logs(30).await.ok().filter(|l| !l.trim().is_empty());
        let m = self.manifest()?.clone();
        let rows_now = w.migration_rows(&w.db.name).await?;
        let fp_now = w.db.fingerprint(&w.db.name).await?;
        let applied = applied_since(&m.migrations.rows, &rows_now);
        let fp_same = m.fingerprint.as_ref() == Some(&fp_now);
        if let Some(before) = &m.fingerprint {
            self.drift = before.diff(&fp_now);
        }
        let a = Assessment {
            db_unchanged: fp_same && rows_now == m.migrations.rows,
            applied: applied.map(|a| a.len()).unwrap_or(0),
            history_consistent: applied.is_some() && m.fingerprint.is_some(),
            dirty: false,
            revert_configured: w.migrator.revert.is_some() && w.migrator.table.is_some(),
            backup_verified: m.verified,
        };
        self.applied = a.applied;
        self.rows_after = Some(rows_now);
        let mut detail = if a.db_unchanged {
            "database unchanged since the backup (the migration rolled back as a whole)".to_string()
        } else {
            format!(
                "{} migration(s) applied by this deploy; schema changed in {} place(s)",
                a.applied,
                self.drift.len()
            )
        };
        let blockers = engine.fast_path_blockers(&a);
        if !a.db_unchanged && !blockers.is_empty() {
            detail.push_str(&format!("; fast path not trusted: {}", blockers.join("; ")));
        }
        Ok((a, detail))
    }

    async fn revert(&mut self) -> Result<String> {
        let w = self.w;
        let tag = self.code_tag()?.to_string();
        let table = w.migrator.table.clone().context("no migration table")?;
        let script = w.migrator.revert_script(&tag, &self.sha).context("no revert command")?;
        let mut rows = w.db.migration_rows(&w.db.name, &table, &w.migrator.order_by).await?;
        for i in 0..self.applied {
            let cmd = self.tool_cmd("revert", &tag, &script);
            let out = exec::capture(w.exec.as_ref(), &cmd).await?;
            out.exit.check(&format!("revert {} of {}", i + 1, self.applied))?;
            let now = w.db.migration_rows(&w.db.name, &table, &w.migrator.order_by).await?;
            if now.len() + 1 != rows.len() || now[..] != rows[..now.len()] {
                bail!(
                    "revert {} of {} exited 0 but the migration table went from {} to {} rows instead of dropping the last one",
                    i + 1,
                    self.applied,
                    rows.len(),
                    now.len()
                );
            }
            rows = now;
        }
        Ok(format!("{} migration(s) reverted with the code of {tag}", self.applied))
    }

    async fn verify_revert(&mut self) -> Result<String> {
        let w = self.w;
        let m = self.manifest()?.clone();
        if let Some(t) = &w.migrator.table {
            let rows = w.db.migration_rows(&w.db.name, t, &w.migrator.order_by).await?;
            if rows != m.migrations.rows {
                bail!(
                    "the migration table has {} rows, the recorded pre-deploy state {}",
                    rows.len(),
                    m.migrations.rows.len()
                );
            }
        }
        let before = m.fingerprint.as_ref().context("no recorded fingerprint to compare with")?;
        let now = w.db.fingerprint(&w.db.name).await?;
        self.drift = before.diff(&now);
        if !self.drift.is_empty() {
            bail!("schema drift after revert: {}", self.drift.join("; "));
        }
        Ok(format!("migration table and schema fingerprint {} equal the recorded ones", now.short()))
    }

    pub(super) async fn restore(&mut self) -> Result<String> {
        let w = self.w;
        let m = self.manifest()?.clone();
        let names = w.db.swap_names(m.sha7()).await?;
        w.db.create_scratch(&names.scratch).await?;
        match backup::restore_stream(&w.db, w.store.as_ref(), &m, &names.scratch).await {
            Ok(sql_bytes) => {
                self.swap = Some(names.clone());
                Ok(format!("{} restored into {} ({} of SQL)", m.key, names.scratch, backup::human_bytes(sql_bytes)))
            }
            Err(e) => {
                let _ = w.db.drop_database(&names.scratch).await;
                Err(e.context(format!("{} is untouched", names.live)))
            }
        }
    }

    pub(super) async fn validate_restore(&mut self) -> Result<String> {
        let w = self.w;
        let m = self.manifest()?.clone();
        let names = self.swap.clone().context("no scratch database")?;
        let check = async {
            if let Some(t) = &m.migrations.table {
                let rows = w.db.migration_rows(&names.scratch, t, &w.migrator.order_by).await?;
                if rows != m.migrations.rows {
                    bail!("restored migration table has {} rows, the recorded {}", rows.len(), m.migrations.rows.len());
                }
            }
            let fp = w.db.fingerprint(&names.scratch).await?;
            match &m.fingerprint {
                Some(before) if *before != fp => {
                    bail!("restored schema differs: {}", before.diff(&fp).join("; "))
                }
                Some(_) => {
                    Ok(format!("fingerprint {} and migration rows equal the recorded pre-deploy state", fp.short()))
                }
                None => Ok(format!("restored (fingerprint {}; no recorded state to compare with)", fp.short())),
            }
        }
        .await;
        if check.is_err() {
            let _ = w.db.drop_database(&names.scratch).await;
        }
        check.map_err(|e| e.context(format!("{} is untouched", names.live)))
    }

    pub(super) async fn swap(&mut self) -> Result<String> {
        let names = self.swap.clone().context("no scratch database")?;
        self.w.db.swap(&names).await?;
        Ok(format!("{} is now the restored backup; the broken one is kept as {}", names.live, names.failed))
    }

    async fn redeploy(&mut self) -> Result<String> {
        let tag = self.previous_tag.clone().context("no previous tag known; rerun with --to-tag TAG")?;
        self.w.runtime.deploy(&tag).await?;
        Ok(format!("{tag} started"))
    }

    /// Releases the deploy lock, if held.
    pub async fn release(&mut self) {
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
    }

    /// The kept copy of the broken database, when a swap happened.
    pub fn kept_database(&self) -> Option<&str> {
        self.swap.as_ref().map(|s| s.failed.as_str())
    }
}

fn last_lines(text: &str, n: usize) -> Option<String> {
    // TypeORM and others echo every SQL statement as `query: …`: not what a person wants here.
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("query:")).collect();
    (!lines.is_empty()).then(|| lines[lines.len().saturating_sub(n)..].join(" | "))
}
