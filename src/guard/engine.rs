//! The decision tree of the README as a state machine: `next(step, result)` decides which branch
//! the step took; the tree (`tree::EDGES`) says where that branch leads.

use crate::model::Strategy;

use super::tree::{self, Branch, End, Mode, To};
use super::{DbPath, Outcome, Step};

/// What the assess step found, compared with the recorded pre-deploy state.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Assessment {
    /// Migration rows and schema fingerprint equal the recorded ones.
    pub db_unchanged: bool,
    /// Migrations this deploy applied (rows added since the recorded state).
    pub applied: usize,
    /// The recorded rows are still the first rows of the table (nothing else rewrote history).
    pub history_consistent: bool,
    /// The migration tool reports a dirty or failed state.
    pub dirty: bool,
    /// A revert command is configured.
    pub revert_configured: bool,
    /// Migrations this deploy applied that have no down (Prisma's without `rollback.sql`).
    pub no_down: Vec<String>,
    /// A verified pre-deploy backup exists.
    pub backup_verified: bool,
    /// What the migrations destroyed of the data that existed before (empty: nothing).
    pub destroyed: Vec<String>,
    /// The migrations only added what the previous release can live with.
    pub additive_only: bool,
    /// Their SQL, read before the deploy, has destructive statements (`rollback.destructive:
    /// restore` plans the safe path up front).
    pub classified_destructive: bool,
    /// The rehearsal showed the revert does not bring the schema or the data back.
    pub rehearsed_revert_fails: bool,
}

/// How the step that just ran ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepResult {
    Ok,
    /// Went wrong in a way the tree carries on past (noted in the journal).
    Warning(String),
    Failed(String),
    Assessed(Assessment),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Run(Step),
    Finish(Outcome),
}

#[derive(Clone, Debug)]
pub struct Engine {
    mode: Mode,
    strategy: Strategy,
    failed_step: Option<Step>,
    path: DbPath,
    /// Why the run stops here, when it stops for a person or aborts.
    reason: String,
    /// `rollback.additive: keep`.
    keep_additive: bool,
    /// Why the fast path was not taken or did not hold, for the report.
    pub notes: Vec<String>,
}

impl Engine {
    pub fn new(mode: Mode, strategy: Strategy) -> Engine {
        let path = if mode == Mode::Restore { DbPath::Restore } else { DbPath::None };
        Engine {
            mode,
            strategy,
            failed_step: None,
            path,
            reason: String::new(),
            keep_additive: false,
            notes: Vec::new(),
        }
    }

    /// Under `rollback.additive: keep`, additive-only migrations stay and the previous tag is
    /// redeployed alone.
    pub fn keep_additive(mut self, keep: bool) -> Engine {
        self.keep_additive = keep;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn first(&self) -> Step {
        Step::Preflight
    }

    /// The deploy step whose failure started the rollback.
    pub fn failed_step(&self) -> Option<Step> {
        self.failed_step
    }

    /// Why the fast path cannot be trusted here (empty: it can).
    pub fn fast_path_blockers(&self, a: &Assessment) -> Vec<String> {
        let mut why = Vec::new();
        if self.strategy == Strategy::Restore {
            why.push("rollback strategy is restore".to_string());
        }
        if !a.revert_configured {
            why.push("no revert command is configured".to_string());
        }
        if !a.no_down.is_empty() {
            why.push(format!("{} cannot be reverted (no down migration)", a.no_down.join(", ")));
        }
        if a.dirty {
            why.push("the migration tool reports a dirty or failed state".to_string());
        }
        if !a.history_consistent {
            why.push("the migration table no longer starts with the recorded rows".to_string());
        }
        if a.rehearsed_revert_fails {
            why.push("the rehearsal showed the revert does not bring everything back".into());
        }
        if a.classified_destructive {
            why.push(
                "the migrations' SQL was classified destructive before the deploy (rollback.destructive: restore)"
                    .into(),
            );
        }
        if !a.destroyed.is_empty() {
            why.push(format!("the migrations destroyed data a revert cannot bring back: {}", a.destroyed.join("; ")));
        }
        if a.applied == 0 && !a.db_unchanged {
            why.push("the schema changed but no migration was recorded as applied".to_string());
        }
        why
    }

    /// The fast path did not hold: the safe path, unless the strategy forbids it.
    fn fast_path_failed(&mut self, at: Step, reason: &str) -> Branch {
        self.notes.push(format!("{at}: {reason}"));
        if self.strategy == Strategy::Revert {
            self.reason = format!("{reason} (rollback strategy is revert, so no restore was tried)");
            return Branch::RestoreForbidden;
        }
        self.path = DbPath::Restore;
        Branch::NotTrusted
    }

    /// Which branch of the tree `step` took.
    fn branch(&mut self, step: Step, result: &StepResult) -> Branch {
        match (step, result) {
            (Step::Assess, StepResult::Assessed(a)) => self.assess(a),
            (Step::Assess, StepResult::Failed(why)) => {
                // Cannot see the database: only a restore is safe, if allowed.
                self.fast_path_failed(step, &format!("could not assess the database: {why}"))
            }
            (Step::Assess, _) => {
                self.reason = "assess returned no assessment".into();
                Branch::RestoreForbidden
            }
            (Step::Revert | Step::VerifyRevert, StepResult::Failed(why)) => {
                let b = self.fast_path_failed(step, why);
                if b == Branch::NotTrusted {
                    Branch::Failed
                } else {
                    b
                }
            }
            (_, StepResult::Failed(why)) => {
                if step == Step::StopApp {
                    self.notes.push(format!("stop-app: {why}"));
                }
                self.reason = why.clone();
                Branch::Failed
            }
            (_, StepResult::Warning(w)) => {
                self.notes.push(format!("{step}: {w}"));
                self.ok_after(step)
            }
            _ => self.ok_after(step),
        }
    }

    /// `step` ended well: after a restore, the service back is where the app's lost writes
    /// are told from the migrations' own.
    fn ok_after(&self, step: Step) -> Branch {
        if step == Step::RedeployHealth && self.path == DbPath::Restore {
            Branch::Restored
        } else {
            Branch::Ok
        }
    }

    fn assess(&mut self, a: &Assessment) -> Branch {
        if a.db_unchanged && (self.strategy != Strategy::Restore || self.mode == Mode::Deploy) {
            // Nothing to restore: the migration rolled back as a whole.
            self.path = DbPath::None;
            return Branch::Unchanged;
        }
        if self.keep_additive && a.additive_only && self.strategy != Strategy::Restore {
            self.path = DbPath::None;
            return Branch::KeepAdditive;
        }
        let blockers = self.fast_path_blockers(a);
        if blockers.is_empty() {
            self.path = DbPath::Revert;
            return Branch::FastPath;
        }
        if self.strategy != Strategy::Restore || self.mode == Mode::Deploy {
            self.notes.push(format!("fast path not taken: {}", blockers.join("; ")));
        }
        if self.strategy == Strategy::Revert {
            self.reason = format!("revert is not safe here: {}", blockers.join("; "));
            return Branch::RestoreForbidden;
        }
        if !a.backup_verified {
            self.reason = "no verified backup to restore".into();
            return Branch::NoBackup;
        }
        self.path = DbPath::Restore;
        // A release without a down is known before any revert is tried: no revert step is run.
        if !a.revert_configured || !a.no_down.is_empty() {
            return Branch::ForwardOnly;
        }
        Branch::NotTrusted
    }

    pub fn next(&mut self, step: Step, result: &StepResult) -> Next {
        let branch = self.branch(step, result);
        if branch == Branch::Failed && tree::rollback_triggers(self.mode).contains(&step) {
            self.failed_step = Some(step);
        }
        match tree::follow(self.mode, step, branch) {
            Some(To::Run(s)) => Next::Run(s),
            Some(To::End(end)) => Next::Finish(self.finish(end, step)),
            None => Next::Finish(Outcome::RollbackFailed {
                failed_step: self.failed_step,
                stuck_at: step,
                path: self.path,
                reason: format!("the tree has no `{}` edge from `{step}` in {} mode", branch.label(), self.mode.name()),
            }),
        }
    }

    /// The run stopped before `next` for `reason` (a signal, the deploy lock lost to another run).
    pub fn stopped_before(&self, next: Step, reason: String) -> Outcome {
        Outcome::RollbackFailed { failed_step: self.failed_step, stuck_at: next, path: self.path, reason }
    }

    fn finish(&self, end: End, at: Step) -> Outcome {
        let reason = self.reason.clone();
        match end {
            End::Deployed => Outcome::Deployed,
            End::RolledBack => Outcome::RolledBack { failed_step: self.failed_step, path: self.path },
            End::Stuck => {
                Outcome::RollbackFailed { failed_step: self.failed_step, stuck_at: at, path: self.path, reason }
            }
            End::Aborted => Outcome::Aborted { at, reason },
            End::BackedUp => Outcome::BackedUp,
            End::Restored => Outcome::Restored,
            End::Rehearsed => Outcome::Rehearsed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> StepResult {
        StepResult::Ok
    }
    fn fail() -> StepResult {
        StepResult::Failed("boom".into())
    }
    fn assessed(f: impl FnOnce(&mut Assessment)) -> StepResult {
        let mut a = Assessment {
            db_unchanged: false,
            applied: 1,
            history_consistent: true,
            dirty: false,
            revert_configured: true,
            no_down: Vec::new(),
            backup_verified: true,
            destroyed: Vec::new(),
            additive_only: false,
            classified_destructive: false,
            rehearsed_revert_fails: false,
        };
        f(&mut a);
        StepResult::Assessed(a)
    }

    /// Drives the engine with scripted results; returns the steps run and the outcome.
    fn drive(mode: Mode, strategy: Strategy, mut results: impl FnMut(Step) -> StepResult) -> (Vec<Step>, Outcome) {
        let mut e = Engine::new(mode, strategy);
        let mut steps = vec![];
        let mut step = e.first();
        loop {
            steps.push(step);
            match e.next(step, &results(step)) {
                Next::Run(s) => step = s,
                Next::Finish(o) => return (steps, o),
            }
        }
    }

    use Step::*;

    #[test]
    fn happy_path_deploys() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Auto, |_| ok());
        assert_eq!(steps, vec![Preflight, Pull, Classify, Backup, Record, Rehearse, Migrate, Deploy, Health]);
        assert_eq!(o, Outcome::Deployed);
    }

    #[test]
    fn preflight_backup_or_record_failure_aborts_before_any_change() {
        for bad in [Preflight, Pull, Classify, Backup, Record, Rehearse] {
            let (steps, o) = drive(Mode::Deploy, Strategy::Auto, |s| if s == bad { fail() } else { ok() });
            assert_eq!(*steps.last().unwrap(), bad);
            assert!(!steps.contains(&Migrate));
            assert_eq!(o.exit_code(Mode::Deploy).code(), 4, "{bad}");
        }
    }

    #[test]
    fn migration_that_rolled_back_skips_to_redeploy() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Auto, |s| match s {
            Migrate => fail(),
            Assess => assessed(|a| {
                a.db_unchanged = true;
                a.applied = 0
            }),
            _ => ok(),
        });
        assert_eq!(
            steps,
            vec![
                Preflight,
                Pull,
                Classify,
                Backup,
                Record,
                Rehearse,
                Migrate,
                Assess,
                Redeploy,
                RedeployHealth,
                Checks
            ]
        );
        assert_eq!(o, Outcome::RolledBack { failed_step: Some(Migrate), path: DbPath::None });
    }

    #[test]
    fn failed_health_reverts_and_verifies() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Auto, |s| match s {
            Health => fail(),
            Assess => assessed(|_| {}),
            _ => ok(),
        });
        assert_eq!(
            steps,
            vec![
                Preflight,
                Pull,
                Classify,
                Backup,
                Record,
                Rehearse,
                Migrate,
                Deploy,
                Health,
                Assess,
                Revert,
                VerifyRevert,
                Redeploy,
                RedeployHealth,
                Checks
            ]
        );
        assert_eq!(o, Outcome::RolledBack { failed_step: Some(Health), path: DbPath::Revert });
        assert_eq!(o.exit_code(Mode::Deploy).code(), 1);
    }

    #[test]
    fn additive_migrations_stay_under_keep() {
        let run = |keep: bool| {
            let mut e = Engine::new(Mode::Deploy, Strategy::Auto).keep_additive(keep);
            let mut steps = vec![];
            let mut step = e.first();
            loop {
                steps.push(step);
                let r = match step {
                    Health => fail(),
                    Assess => assessed(|a| a.additive_only = true),
                    _ => ok(),
                };
                match e.next(step, &r) {
                    Next::Run(s) => step = s,
                    Next::Finish(o) => return (steps, o),
                }
            }
        };
        let (steps, o) = run(true);
        assert_eq!(&steps[9..], &[Assess, Redeploy, RedeployHealth, Checks]);
        assert_eq!(o, Outcome::RolledBack { failed_step: Some(Health), path: DbPath::None });
        let (steps, o) = run(false);
        assert!(steps.contains(&Revert));
        assert_eq!(o.path(), DbPath::Revert);
    }

    #[test]
    fn failed_deploy_step_also_rolls_back() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Auto, |s| match s {
            Deploy => fail(),
            Assess => assessed(|_| {}),
            _ => ok(),
        });
        assert!(steps.contains(&Revert) && !steps.contains(&Health));
        assert_eq!(o.path(), DbPath::Revert);
    }

    #[test]
    fn revert_error_falls_back_to_restore() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Auto, |s| match s {
            Health | Revert => fail(),
            Assess => assessed(|_| {}),
            _ => ok(),
        });
        assert_eq!(
            &steps[10..],
            &[Revert, Restore, ValidateRestore, StopApp, Swap, LostWrites, Redeploy, RedeployHealth, AppWrites, Checks]
        );
        assert_eq!(o, Outcome::RolledBack { failed_step: Some(Health), path: DbPath::Restore });
    }

    #[test]
    fn drift_after_revert_falls_back_to_restore() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Auto, |s| match s {
            Health | VerifyRevert => fail(),
            Assess => assessed(|_| {}),
            _ => ok(),
        });
        assert!(steps.contains(&VerifyRevert) && steps.contains(&Swap));
        assert_eq!(o.path(), DbPath::Restore);
    }

    #[test]
    fn untrusted_fast_path_goes_straight_to_restore() {
        type Tweak = Box<dyn Fn(&mut Assessment)>;
        let cases: Vec<Tweak> = vec![
            Box::new(|a| a.dirty = true),
            Box::new(|a| a.revert_configured = false),
            Box::new(|a| a.history_consistent = false),
            Box::new(|a| a.applied = 0),
            Box::new(|a| a.destroyed = vec!["dropped column public.users.bio".into()]),
            Box::new(|a| a.classified_destructive = true),
        ];
        for f in cases {
            let (steps, o) = drive(Mode::Deploy, Strategy::Auto, |s| match s {
                Migrate => fail(),
                Assess => assessed(|a| f(a)),
                _ => ok(),
            });
            assert!(!steps.contains(&Revert));
            assert!(steps.contains(&Restore));
            assert_eq!(o.path(), DbPath::Restore);
        }
    }

    #[test]
    fn restore_strategy_never_reverts() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Restore, |s| match s {
            Health => fail(),
            Assess => assessed(|_| {}),
            _ => ok(),
        });
        assert!(!steps.contains(&Revert) && steps.contains(&Swap));
        assert_eq!(o.path(), DbPath::Restore);
    }

    #[test]
    fn revert_strategy_stops_for_a_person_instead_of_restoring() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Revert, |s| match s {
            Health | Revert => fail(),
            Assess => assessed(|_| {}),
            _ => ok(),
        });
        assert!(!steps.contains(&Restore));
        assert!(matches!(o, Outcome::RollbackFailed { stuck_at: Revert, .. }));
        assert_eq!(o.exit_code(Mode::Deploy).code(), 3);
        let (_, o) = drive(Mode::Deploy, Strategy::Revert, |s| match s {
            Health => fail(),
            Assess => assessed(|a| a.dirty = true),
            _ => ok(),
        });
        assert!(matches!(o, Outcome::RollbackFailed { stuck_at: Assess, .. }));
    }

    #[test]
    fn stop_app_failure_is_carried_past() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Restore, |s| match s {
            Health | StopApp => fail(),
            Assess => assessed(|_| {}),
            _ => ok(),
        });
        assert!(steps.contains(&Swap));
        assert_eq!(o.path(), DbPath::Restore);
    }

    #[test]
    fn safe_path_failures_stop_for_a_person() {
        for bad in [Restore, ValidateRestore, Swap, Redeploy, RedeployHealth, Checks] {
            let (steps, o) = drive(Mode::Deploy, Strategy::Restore, |s| match s {
                Health => fail(),
                Assess => assessed(|_| {}),
                s if s == bad => fail(),
                _ => ok(),
            });
            assert_eq!(*steps.last().unwrap(), bad);
            assert!(matches!(o, Outcome::RollbackFailed { stuck_at, .. } if stuck_at == bad));
        }
    }

    #[test]
    fn assess_that_cannot_see_the_database_restores() {
        let (steps, o) = drive(Mode::Deploy, Strategy::Auto, |s| match s {
            Migrate | Assess => fail(),
            _ => ok(),
        });
        assert!(steps.contains(&Swap));
        assert_eq!(o.path(), DbPath::Restore);
    }

    #[test]
    fn no_verified_backup_means_no_restore() {
        let (_, o) = drive(Mode::Rollback, Strategy::Auto, |s| match s {
            Assess => assessed(|a| {
                a.dirty = true;
                a.backup_verified = false
            }),
            _ => ok(),
        });
        assert!(matches!(o, Outcome::RollbackFailed { stuck_at: Assess, .. }));
    }

    #[test]
    fn manual_rollback_starts_at_assess() {
        let (steps, o) = drive(Mode::Rollback, Strategy::Auto, |s| match s {
            Assess => assessed(|_| {}),
            _ => ok(),
        });
        assert_eq!(steps, vec![Preflight, Assess, Revert, VerifyRevert, Redeploy, RedeployHealth, Checks]);
        assert_eq!(o.exit_code(Mode::Rollback).code(), 0);
        assert_eq!(o.path(), DbPath::Revert);
    }

    #[test]
    fn manual_restore_restores_even_an_unchanged_database() {
        let (steps, o) = drive(Mode::Rollback, Strategy::Restore, |s| match s {
            Assess => assessed(|a| {
                a.db_unchanged = true;
                a.applied = 0
            }),
            _ => ok(),
        });
        assert!(steps.contains(&Swap));
        assert_eq!(o.path(), DbPath::Restore);
    }

    #[test]
    fn manual_rollback_preflight_failure_needs_a_person() {
        let (_, o) = drive(Mode::Rollback, Strategy::Auto, |_| fail());
        assert!(matches!(o, Outcome::RollbackFailed { stuck_at: Preflight, .. }));
    }
}
