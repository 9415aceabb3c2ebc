//! How a rollback may bring the database back (`rollback.strategy`, `rollback --path`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Revert when it can be trusted, else restore.
    #[default]
    Auto,
    /// Only ever revert; a failed revert stops for a person.
    Revert,
    /// Always restore the backup.
    Restore,
}
