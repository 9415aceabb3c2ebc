use serde::{Deserialize, Serialize};

/// Declares the steps once: the enum, its order, names and titles.
macro_rules! steps {
    ($($v:ident => $name:literal, $title:literal;)+) => {
        /// Every step of the tree, in the order the tree meets them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
        #[serde(rename_all = "kebab-case")]
        pub enum Step { $($v,)+ }

        impl Step {
            pub const ALL: &'static [Step] = &[$(Step::$v,)+];

            pub fn name(self) -> &'static str {
                match self { $(Step::$v => $name,)+ }
            }

            /// What the step does, for people.
            pub fn title(self) -> &'static str {
                match self { $(Step::$v => $title,)+ }
            }
        }
    };
}

steps! {
    Preflight => "preflight", "Preflight checks";
    Pull => "pull", "Pull the new image on the target";
    Classify => "classify", "Classify the pending migrations' SQL";
    Backup => "backup", "Back up the database";
    Record => "record", "Record the pre-deploy state";
    Rehearse => "rehearse", "Rehearse the migrations on a copy of the backup";
    Migrate => "migrate", "Run the migrations";
    Deploy => "deploy", "Deploy the new tag";
    Health => "health", "Health check";
    Assess => "assess", "Assess the damage";
    Revert => "revert", "Revert the migrations (fast path)";
    VerifyRevert => "verify-revert", "Verify the revert";
    Restore => "restore", "Restore the backup into a scratch database (safe path)";
    ValidateRestore => "validate-restore", "Validate the restored database";
    StopApp => "stop-app", "Stop the app (the backup is good)";
    Swap => "swap", "Swap the restored database in";
    LostWrites => "lost-writes", "Find the writes the restore took away";
    AppWrites => "app-writes", "Tell the app's lost writes from the migrations' own";
    Redeploy => "redeploy", "Redeploy the previous tag";
    RedeployHealth => "redeploy-health", "Health check after redeploy";
    Checks => "checks", "Run the user's checks (verify.queries, verify.commands)";
}

impl Step {
    /// True for steps that are part of a rollback (drawn from the tree's edges).
    pub fn is_rollback(self) -> bool {
        super::tree::is_rollback(self)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
