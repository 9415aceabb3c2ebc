//! What rehearsing a release's migrations on a copy of its backup showed, as the manifest keeps
//! it.

use serde::{Deserialize, Serialize};

use crate::db::locks::HeldLock;

/// What the rehearsal found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rehearsal {
    pub applied: usize,
    pub up_secs: f64,
    pub down_secs: f64,
    pub revert_restores_schema: bool,
    pub revert_restores_data: bool,
    /// What differed after the revert.
    pub differences: Vec<String>,
    /// Each applied migration, in order.
    #[serde(default)]
    pub migrations: Vec<RehearsedMigration>,
    /// Table locks that block reads or writes, held longer than `lock_warn_secs`.
    #[serde(default)]
    pub long_locks: Vec<HeldLock>,
    #[serde(default)]
    pub lock_warn_secs: f64,
    /// What the rehearsal could not observe.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One migration on the copy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RehearsedMigration {
    pub name: String,
    /// Seconds from the previous commit (the first: from the tool's start, its start-up
    /// included) until its migration row was seen committed; within one sampling interval.
    pub up_secs: f64,
    /// How many migrations were first seen committed in the same sample as this one (1: alone):
    /// one transaction, or each faster than the sampling interval; their `up_secs` is then the
    /// group's.
    pub committed_with: usize,
    /// Seconds its revert command took (the tool's start-up included); `None`: not reverted.
    pub down_secs: Option<f64>,
}
