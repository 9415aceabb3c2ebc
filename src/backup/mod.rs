//! The streaming pipeline of a backup: pg_dump → compress (on the target when it can) → store →
//! verify, and back again for a restore; the codec's streams, the pieces' hashes, the plain-SQL
//! view of the directory format and the psql meta-command filter. What a backup is recorded as
//! (its manifest, the run's journal) is `record`'s: it hands this layer a [`Stored`].

mod chunks;
pub mod codec;
mod format;
mod listing;
mod meta_filter;
pub mod neon;
mod pipeline;
mod restore;

use std::collections::BTreeMap;

pub use chunks::Chunks;
pub use format::{PlainView, TarGuard};
pub use meta_filter::MetaGuard;
pub use neon::{Neon, NeonBranch};
pub use pipeline::{copy_verified, room_for, sums, take, take_verified, verify, Packing, Taken, TRAILER};
pub use restore::{psql_restricts, restore_stream};

/// A stored backup as its record describes it: what a read, a restore or a copy checks the
/// object against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    /// Bytes pg_dump wrote (plain SQL, or the directory format's tar).
    pub dump_bytes: u64,
    /// Bytes stored (compressed).
    pub size: u64,
    pub sha256: String,
    /// The object's SHA-256 piece by piece; none in the records of older versions.
    pub chunks: Option<Chunks>,
    /// Its content was checked and its stored bytes read back and matched when it was taken.
    pub verified: bool,
    /// Its record's signature was checked: its hashes are as trustworthy as the key.
    pub signed: bool,
}

impl Stored {
    /// What was stored, as a read-back checks it.
    pub fn taken(&self) -> Taken {
        Taken {
            key: self.key.clone(),
            dump_bytes: Some(self.dump_bytes),
            size: self.size,
            sha256: self.sha256.clone(),
            columns: BTreeMap::new(),
            chunks: self.chunks.clone(),
            checked: self.verified,
        }
    }
}
