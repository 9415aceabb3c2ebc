//! The decision tree, as pure data and logic: which step runs next given how the last one
//! ended. No I/O here; `commands::drive` performs the steps and feeds their results back.

mod engine;
mod journal;
mod outcome;
pub mod plan;

pub use engine::{Assessment, Engine, Mode, Next, StepResult};
pub use journal::{Entry, EntryState, Journal};
pub use outcome::{DbPath, Outcome};

use serde::{Deserialize, Serialize};

/// Every step of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Preflight,
    Backup,
    Record,
    Migrate,
    Deploy,
    Health,
    Assess,
    Revert,
    VerifyRevert,
    StopApp,
    Restore,
    ValidateRestore,
    Swap,
    Redeploy,
    RedeployHealth,
}

impl Step {
    pub const ALL: [Step; 15] = [
        Step::Preflight,
        Step::Backup,
        Step::Record,
        Step::Migrate,
        Step::Deploy,
        Step::Health,
        Step::Assess,
        Step::Revert,
        Step::VerifyRevert,
        Step::StopApp,
        Step::Restore,
        Step::ValidateRestore,
        Step::Swap,
        Step::Redeploy,
        Step::RedeployHealth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::Backup => "backup",
            Step::Record => "record",
            Step::Migrate => "migrate",
            Step::Deploy => "deploy",
            Step::Health => "health",
            Step::Assess => "assess",
            Step::Revert => "revert",
            Step::VerifyRevert => "verify-revert",
            Step::StopApp => "stop-app",
            Step::Restore => "restore",
            Step::ValidateRestore => "validate-restore",
            Step::Swap => "swap",
            Step::Redeploy => "redeploy",
            Step::RedeployHealth => "redeploy-health",
        }
    }

    /// What the step does, for people.
    pub fn title(self) -> &'static str {
        match self {
            Step::Preflight => "Preflight checks",
            Step::Backup => "Back up the database",
            Step::Record => "Record the pre-deploy state",
            Step::Migrate => "Run the migrations",
            Step::Deploy => "Deploy the new tag",
            Step::Health => "Health check",
            Step::Assess => "Assess the damage",
            Step::Revert => "Revert the migrations (fast path)",
            Step::VerifyRevert => "Verify the revert",
            Step::StopApp => "Stop the app (safe path)",
            Step::Restore => "Restore the backup into a scratch database",
            Step::ValidateRestore => "Validate the restored database",
            Step::Swap => "Swap the restored database in",
            Step::Redeploy => "Redeploy the previous tag",
            Step::RedeployHealth => "Health check after redeploy",
        }
    }

    /// True for steps that are part of a rollback.
    pub fn is_rollback(self) -> bool {
        self >= Step::Assess
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
