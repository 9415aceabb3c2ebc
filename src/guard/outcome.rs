use serde::{Deserialize, Serialize};

use super::{End, Mode, Step};
use crate::model::ExitCode;

/// How the database was brought back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DbPath {
    /// Nothing to bring back (or nothing went wrong).
    #[default]
    None,
    /// The migration tool's revert, verified.
    Revert,
    /// The pre-deploy backup, restored by scratch-and-swap.
    Restore,
}

impl DbPath {
    pub fn name(self) -> &'static str {
        match self {
            DbPath::None => "none",
            DbPath::Revert => "revert",
            DbPath::Restore => "restore",
        }
    }
}

/// How a guarded run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// The new tag runs and is healthy.
    Deployed,
    /// Something failed and the service was restored.
    RolledBack { failed_step: Option<Step>, path: DbPath },
    /// The rollback could not finish: a person must act.
    RollbackFailed { failed_step: Option<Step>, stuck_at: Step, path: DbPath, reason: String },
    /// Stopped before anything was changed.
    Aborted { at: Step, reason: String },
    /// `backup`: a verified backup was taken and the state recorded.
    BackedUp,
    /// `restore`: the backup was restored and swapped in.
    Restored,
    /// `rehearse`: the migrations ran up and down on a copy of a fresh backup.
    Rehearsed,
}

impl Outcome {
    /// The `result` output: deployed, rolled-back, rollback-failed, aborted.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Deployed => "deployed",
            Outcome::RolledBack { .. } => "rolled-back",
            Outcome::RollbackFailed { .. } => "rollback-failed",
            Outcome::Aborted { .. } => "aborted",
            Outcome::BackedUp => "backed-up",
            Outcome::Restored => "restored",
            Outcome::Rehearsed => "rehearsed",
        }
    }

    /// Where in the tree the run ended.
    pub fn end(&self) -> End {
        match self {
            Outcome::Deployed => End::Deployed,
            Outcome::RolledBack { .. } => End::RolledBack,
            Outcome::RollbackFailed { .. } => End::Stuck,
            Outcome::Aborted { .. } => End::Aborted,
            Outcome::BackedUp => End::BackedUp,
            Outcome::Restored => End::Restored,
            Outcome::Rehearsed => End::Rehearsed,
        }
    }

    pub fn path(&self) -> DbPath {
        match self {
            Outcome::RolledBack { path, .. } | Outcome::RollbackFailed { path, .. } => *path,
            _ => DbPath::None,
        }
    }

    /// The exit code of a run in `mode`: `deploy` 0 deployed, 1 rolled back, 3 a person must
    /// act, 4 aborted; the other commands 0 when they did what was asked, else 3.
    pub fn exit_code(&self, mode: Mode) -> ExitCode {
        match (self, mode) {
            (Outcome::RolledBack { .. }, Mode::Deploy) => ExitCode::RolledBack,
            (Outcome::Aborted { .. }, Mode::Deploy) => ExitCode::Aborted,
            (Outcome::RollbackFailed { .. } | Outcome::Aborted { .. }, _) => ExitCode::Act,
            _ => ExitCode::Ok,
        }
    }

    /// The run ended with a healthy service, the database as it must be.
    pub fn is_success(&self) -> bool {
        !matches!(self, Outcome::RollbackFailed { .. } | Outcome::Aborted { .. })
    }

    /// One line for the top of the summary.
    pub fn headline(&self) -> String {
        match self {
            Outcome::Deployed => "Deployed: the new tag is live and healthy.".into(),
            Outcome::RolledBack { failed_step, path } => format!(
                "Rolled back{}: the service runs the previous tag again ({}).",
                failed_step.map(|s| format!(" after `{s}` failed")).unwrap_or_default(),
                match path {
                    DbPath::None => "the database needed no change",
                    DbPath::Revert => "migrations reverted and verified",
                    DbPath::Restore => "database restored from the pre-deploy backup",
                }
            ),
            Outcome::RollbackFailed { stuck_at, reason, .. } => {
                format!(
                    "ROLLBACK COULD NOT FINISH at `{stuck_at}`: {reason}. A person must act — see “What to do now”."
                )
            }
            Outcome::Aborted { at, reason } => {
                format!("Aborted at `{at}` before any change: {reason}. Nothing was changed.")
            }
            Outcome::BackedUp => "Backed up: a verified backup was taken and the state recorded.".into(),
            Outcome::Restored => {
                "Restored: the backup was restored, validated and swapped in; the old database is kept.".into()
            }
            Outcome::Rehearsed => {
                "Rehearsed: the migrations ran up and back down on a copy of production's data; production was not touched.".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        let code = |o: &Outcome, m| o.exit_code(m).code();
        assert_eq!(code(&Outcome::Deployed, Mode::Deploy), 0);
        let rb = Outcome::RolledBack { failed_step: Some(Step::Health), path: DbPath::Revert };
        assert_eq!(code(&rb, Mode::Deploy), 1);
        assert_eq!(code(&rb, Mode::Rollback), 0);
        let stuck = Outcome::RollbackFailed {
            failed_step: None,
            stuck_at: Step::Swap,
            path: DbPath::Restore,
            reason: "x".into(),
        };
        assert_eq!(code(&stuck, Mode::Deploy), 3);
        assert_eq!(code(&stuck, Mode::Rollback), 3);
        let aborted = Outcome::Aborted { at: Step::Backup, reason: "x".into() };
        assert_eq!(code(&aborted, Mode::Deploy), 4);
        assert_eq!(code(&aborted, Mode::Backup), 3);
        assert_eq!(code(&Outcome::BackedUp, Mode::Backup), 0);
        assert_eq!(code(&Outcome::Restored, Mode::Restore), 0);
        assert_eq!(rb.result(), "rolled-back");
        assert_eq!(rb.path().name(), "revert");
    }
}
