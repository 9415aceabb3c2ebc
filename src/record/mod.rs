//! The saved record of a run: the manifest written beside each backup (its schema, signing and
//! validation), which is also the run's journal; finding it again by SHA; retention. The backup
//! pipeline below hands it a [`crate::backup::Taken`] and takes back a [`crate::backup::Stored`].

pub mod freeze;
mod lookup;
mod manifest;
mod rehearsal;
pub mod retention;
mod sign;

pub use lookup::{find_for, find_here_or_copy, list, Listing, Unreadable};
pub use manifest::{LostWrites, Manifest, MigrationState, Resolution};
pub use rehearsal::{Rehearsal, RehearsedMigration};
pub use sign::{signing_key_set, MANIFEST_KEY_VAR};
