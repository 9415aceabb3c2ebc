use serde::{Deserialize, Serialize};

use super::Step;

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
}

impl Outcome {
    /// The `result` output: deployed, rolled-back, rollback-failed, aborted.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Deployed => "deployed",
            Outcome::RolledBack { .. } => "rolled-back",
            Outcome::RollbackFailed { .. } => "rollback-failed",
            Outcome::Aborted { .. } => "aborted",
        }
    }

    pub fn path(&self) -> DbPath {
        match self {
            Outcome::RolledBack { path, .. } | Outcome::RollbackFailed { path, .. } => *path,
            _ => DbPath::None,
        }
    }

    /// Exit code of `deploy`: 0 deployed, 1 rolled back, 3 a person must act, 4 aborted.
    pub fn deploy_exit_code(&self) -> i32 {
        match self {
            Outcome::Deployed => 0,
            Outcome::RolledBack { .. } => 1,
            Outcome::RollbackFailed { .. } => 3,
            Outcome::Aborted { .. } => 4,
        }
    }

    /// Exit code of `rollback`: 0 when the service was restored, else 3.
    pub fn rollback_exit_code(&self) -> i32 {
        match self {
            Outcome::RolledBack { .. } | Outcome::Deployed => 0,
            _ => 3,
        }
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(Outcome::Deployed.deploy_exit_code(), 0);
        let rb = Outcome::RolledBack { failed_step: Some(Step::Health), path: DbPath::Revert };
        assert_eq!(rb.deploy_exit_code(), 1);
        assert_eq!(rb.rollback_exit_code(), 0);
        let stuck = Outcome::RollbackFailed {
            failed_step: None,
            stuck_at: Step::Swap,
            path: DbPath::Restore,
            reason: "x".into(),
        };
        assert_eq!(stuck.deploy_exit_code(), 3);
        assert_eq!(stuck.rollback_exit_code(), 3);
        assert_eq!(Outcome::Aborted { at: Step::Backup, reason: "x".into() }.deploy_exit_code(), 4);
        assert_eq!(rb.result(), "rolled-back");
        assert_eq!(rb.path().name(), "revert");
    }
}
