//! Leaf types used everywhere: a git SHA, the names derived from it (backups, scratch and kept
//! databases), exit codes, sizes and the URLs the config holds. Imports nothing of the crate.

mod exit;
mod names;
mod sha;
mod size;
mod urls;

pub use exit::{usage, ExitCode, Usage};
pub use names::{check_live_db_name, BackupName, DbNames};
pub use sha::{Sha, ShaPrefix};
pub use size::human_bytes;
pub use urls::{ConnInfo, StoreUrl};
