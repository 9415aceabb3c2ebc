//! The decision tree as data: every edge from a step, by how the step ended, to the next step or
//! to an end. The engine follows it; the plan, the flowchart and the runbook are drawn from it.

use serde::Serialize;

use super::Step;

/// What a run was asked to do. Each mode walks its own part of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `deploy`: the whole tree.
    Deploy,
    /// `rollback`: preflight, then straight to assess.
    Rollback,
    /// `restore`: preflight, then the restore by scratch-and-swap.
    Restore,
    /// `backup`: preflight, backup and record.
    Backup,
    /// `rehearse`: a backup, then the release's migrations up and down on a copy of it.
    Rehearse,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Deploy => "deploy",
            Mode::Rollback => "rollback",
            Mode::Restore => "restore",
            Mode::Backup => "backup",
            Mode::Rehearse => "rehearse",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a step ended, as far as the tree cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Branch {
    Ok,
    Failed,
    /// assess: the database is as recorded (the migration rolled back as a whole).
    Unchanged,
    /// assess: the tool's revert can be trusted.
    FastPath,
    /// assess: the migrations only added, and `rollback.additive: keep` keeps them.
    KeepAdditive,
    /// assess: the revert cannot be trusted, or the database cannot be seen.
    NotTrusted,
    /// assess: the release cannot be reverted at all (a migration without a down, a tool that
    /// cannot revert): restore, with no revert tried.
    ForwardOnly,
    /// redeploy-health: the service is back on a restored database.
    Restored,
    /// The safe path is needed but `rollback.strategy: revert` forbids it.
    RestoreForbidden,
    /// The safe path is needed but there is no verified backup.
    NoBackup,
}

impl Branch {
    /// The edge's label in the flowchart and the runbook ("" for the plain way on).
    pub fn label(self) -> &'static str {
        match self {
            Branch::Ok => "",
            Branch::Failed => "fails",
            Branch::Unchanged => "database unchanged",
            Branch::FastPath => "revert trusted",
            Branch::KeepAdditive => "only additions, kept",
            Branch::NotTrusted => "fast path not trusted",
            Branch::ForwardOnly => "no down: restore is the only way back",
            Branch::Restored => "after a restore",
            Branch::RestoreForbidden => "restore not allowed",
            Branch::NoBackup => "no verified backup",
        }
    }
}

/// Where a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    Deployed,
    RolledBack,
    /// A person must act.
    Stuck,
    /// Stopped before anything was changed.
    Aborted,
    BackedUp,
    Restored,
    Rehearsed,
}

impl End {
    pub fn name(self) -> &'static str {
        match self {
            End::Deployed => "deployed",
            End::RolledBack => "rolled_back",
            End::Stuck => "person",
            End::Aborted => "aborted",
            End::BackedUp => "backed_up",
            End::Restored => "restored",
            End::Rehearsed => "rehearsed",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            End::Deployed => "Deployed",
            End::RolledBack => "Rolled back",
            End::Stuck => "A person must act",
            End::Aborted => "Aborted: nothing changed",
            End::BackedUp => "Backed up",
            End::Restored => "Restored",
            End::Rehearsed => "Rehearsed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum To {
    Run(Step),
    End(End),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub modes: &'static [Mode],
    pub from: Step,
    pub on: Branch,
    pub to: To,
}

use Branch::*;
use Mode::{Backup as B, Deploy as D, Rehearse as RH, Restore as R, Rollback as RB};
use Step::*;

const fn e(modes: &'static [Mode], from: Step, on: Branch, to: To) -> Edge {
    Edge { modes, from, on, to }
}
const fn run(s: Step) -> To {
    To::Run(s)
}
const fn end(e: End) -> To {
    To::End(e)
}

/// Modes that roll back: a deploy that failed, and a manual rollback.
const ROLL: &[Mode] = &[D, RB];
/// Modes that restore a backup.
const REST: &[Mode] = &[D, RB, R];

/// The tree. Order matters only for reading: the first step of a mode is `Preflight`.
pub const EDGES: &[Edge] = &[
    e(&[D, RH], Preflight, Ok, run(Pull)),
    // A registry that refuses the target stops the deploy before the backup, nothing changed.
    e(&[D, RH], Pull, Ok, run(Classify)),
    e(&[D, RH], Pull, Failed, end(End::Aborted)),
    e(&[B], Preflight, Ok, run(Step::Backup)),
    e(&[D, RH], Classify, Ok, run(Step::Backup)),
    e(&[D, RH], Classify, Failed, end(End::Aborted)),
    e(&[RB], Preflight, Ok, run(Assess)),
    e(&[R], Preflight, Ok, run(Step::Restore)),
    e(&[D, B, RH], Preflight, Failed, end(End::Aborted)),
    e(&[RB, R], Preflight, Failed, end(End::Stuck)),
    e(&[D, B, RH], Step::Backup, Ok, run(Record)),
    e(&[D, B, RH], Step::Backup, Failed, end(End::Aborted)),
    e(&[D, RH], Record, Ok, run(Step::Rehearse)),
    e(&[D], Step::Rehearse, Ok, run(Migrate)),
    e(&[RH], Step::Rehearse, Ok, end(End::Rehearsed)),
    // A migration that fails on the copy stops the deploy before production is touched.
    e(&[D, RH], Step::Rehearse, Failed, end(End::Aborted)),
    e(&[B], Record, Ok, end(End::BackedUp)),
    e(&[D, B, RH], Record, Failed, end(End::Aborted)),
    e(&[D], Migrate, Ok, run(Step::Deploy)),
    e(&[D], Migrate, Failed, run(Assess)),
    e(&[D], Step::Deploy, Ok, run(Health)),
    e(&[D], Step::Deploy, Failed, run(Assess)),
    e(&[D], Health, Ok, end(End::Deployed)),
    e(&[D], Health, Failed, run(Assess)),
    e(ROLL, Assess, Unchanged, run(Redeploy)),
    e(ROLL, Assess, FastPath, run(Revert)),
    e(ROLL, Assess, KeepAdditive, run(Redeploy)),
    e(ROLL, Assess, NotTrusted, run(Step::Restore)),
    e(ROLL, Assess, ForwardOnly, run(Step::Restore)),
    e(ROLL, Assess, RestoreForbidden, end(End::Stuck)),
    e(ROLL, Assess, NoBackup, end(End::Stuck)),
    e(ROLL, Revert, Ok, run(VerifyRevert)),
    e(ROLL, Revert, Failed, run(Step::Restore)),
    e(ROLL, Revert, RestoreForbidden, end(End::Stuck)),
    e(ROLL, VerifyRevert, Ok, run(Redeploy)),
    e(ROLL, VerifyRevert, Failed, run(Step::Restore)),
    e(ROLL, VerifyRevert, RestoreForbidden, end(End::Stuck)),
    // The backup is restored and validated into a scratch database while the app still runs:
    // a backup that turns out bad leaves the app as it was.
    e(REST, Step::Restore, Ok, run(ValidateRestore)),
    e(REST, Step::Restore, Failed, end(End::Stuck)),
    e(ROLL, ValidateRestore, Ok, run(StopApp)),
    e(&[R], ValidateRestore, Ok, run(Swap)),
    // Only then is the app stopped; a failed stop is carried past (the swap cuts it off anyway).
    e(ROLL, StopApp, Ok, run(Swap)),
    e(ROLL, StopApp, Failed, run(Swap)),
    e(REST, ValidateRestore, Failed, end(End::Stuck)),
    e(REST, Swap, Ok, run(LostWrites)),
    // Finding lost writes never holds up the recovery: a failure is carried past.
    e(ROLL, LostWrites, Ok, run(Redeploy)),
    e(ROLL, LostWrites, Failed, run(Redeploy)),
    e(&[R], LostWrites, Ok, run(AppWrites)),
    e(&[R], LostWrites, Failed, run(AppWrites)),
    e(REST, Swap, Failed, end(End::Stuck)),
    e(ROLL, Redeploy, Ok, run(RedeployHealth)),
    e(ROLL, Redeploy, Failed, end(End::Stuck)),
    e(ROLL, RedeployHealth, Ok, run(Checks)),
    // Once the service is back on a restored database: in tables the migrations changed rows of,
    // the app's lost writes are told from the migrations' own (a failure is carried past: the
    // tables are named).
    e(ROLL, RedeployHealth, Restored, run(AppWrites)),
    e(REST, AppWrites, Ok, run(Checks)),
    e(REST, AppWrites, Failed, run(Checks)),
    e(ROLL, RedeployHealth, Failed, end(End::Stuck)),
    e(ROLL, Checks, Ok, end(End::RolledBack)),
    e(&[R], Checks, Ok, end(End::Restored)),
    e(REST, Checks, Failed, end(End::Stuck)),
];

/// The edges a mode walks.
pub fn edges(mode: Mode) -> impl Iterator<Item = &'static Edge> {
    EDGES.iter().filter(move |e| e.modes.contains(&mode))
}

/// Where `from` leads on `on` in `mode`; `None` when the tree has no such edge.
pub fn follow(mode: Mode, from: Step, on: Branch) -> Option<To> {
    edges(mode).find(|e| e.from == from && e.on == on).map(|e| e.to)
}

/// The steps `mode` can run, in tree order.
pub fn steps(mode: Mode) -> Vec<Step> {
    Step::ALL.iter().copied().filter(|s| edges(mode).any(|e| e.from == *s)).collect()
}

/// The steps run when nothing fails, in order.
pub fn straight_path(mode: Mode) -> Vec<Step> {
    let mut out = vec![Preflight];
    while let Some(To::Run(next)) = follow(mode, *out.last().expect("non-empty"), Ok) {
        if out.contains(&next) {
            break;
        }
        out.push(next);
    }
    out
}

/// The steps of `mode`'s straight path whose failure starts a rollback: their failed edge leads
/// on to another step, not to an end.
pub fn rollback_triggers(mode: Mode) -> Vec<Step> {
    straight_path(mode).into_iter().filter(|s| matches!(follow(mode, *s, Failed), Some(To::Run(_)))).collect()
}

/// Whether `step` is part of a rollback: a deploy reaches it only once a trigger failed.
pub fn is_rollback(step: Step) -> bool {
    let mut seen: Vec<Step> = Vec::new();
    let mut todo: Vec<Step> = rollback_triggers(D)
        .into_iter()
        .filter_map(|s| match follow(D, s, Failed) {
            Some(To::Run(next)) => Some(next),
            _ => None,
        })
        .collect();
    while let Some(s) = todo.pop() {
        if seen.contains(&s) {
            continue;
        }
        seen.push(s);
        todo.extend(edges(D).filter(|e| e.from == s).filter_map(|e| match e.to {
            To::Run(next) => Some(next),
            To::End(_) => None,
        }));
    }
    seen.contains(&step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_of_a_mode_has_an_ok_and_a_failed_edge_and_is_reachable() {
        for mode in [D, RB, R, B, RH] {
            let steps = steps(mode);
            for s in &steps {
                if *s != Assess {
                    assert!(follow(mode, *s, Ok).is_some(), "{mode:?} {s}: no ok edge");
                    assert!(follow(mode, *s, Failed).is_some(), "{mode:?} {s}: no failed edge");
                }
                let reachable = *s == Preflight || edges(mode).any(|e| e.to == To::Run(*s));
                assert!(reachable, "{mode:?} {s}: unreachable");
            }
            for e in edges(mode) {
                assert_eq!(edges(mode).filter(|o| o.from == e.from && o.on == e.on).count(), 1, "{e:?}");
            }
        }
        assert_eq!(
            straight_path(D),
            vec![Preflight, Pull, Classify, Step::Backup, Record, Step::Rehearse, Migrate, Step::Deploy, Health]
        );
        assert_eq!(straight_path(B), vec![Preflight, Step::Backup, Record]);
        assert_eq!(rollback_triggers(D), vec![Migrate, Step::Deploy, Health]);
        let rolling: Vec<Step> = Step::ALL.iter().copied().filter(|s| is_rollback(*s)).collect();
        assert_eq!(rolling.first(), Some(&Assess));
        assert!(rolling.contains(&Step::Restore) && rolling.contains(&Checks) && !rolling.contains(&Health));
        assert_eq!(
            straight_path(R),
            vec![Preflight, Step::Restore, ValidateRestore, Swap, LostWrites, AppWrites, Checks]
        );
    }
}
