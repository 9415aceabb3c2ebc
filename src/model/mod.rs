//! Leaf types used everywhere: a git SHA, the names derived from it (backups, scratch and kept
//! databases), exit codes, sizes, a backup's format and codec, the rollback strategy and the URLs
//! the config holds. Imports nothing of the crate.

mod exit;
mod format;
mod names;
mod sha;
mod size;
mod strategy;
mod urls;
mod when;

pub use exit::{usage, ExitCode, Usage};
pub use format::{Codec, Compression, Format, Verify};
pub use names::{check_live_db_name, random_hex, BackupKind, BackupName, DbNames};
pub use sha::{is_sha256_hex, Sha, ShaPrefix};
pub use size::human_bytes;
pub use strategy::Strategy;
pub use urls::{ConnInfo, SslMode, StoreUrl};
pub use when::PointInTime;
