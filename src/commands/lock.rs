//! `lock status`: who holds the deploy lock, and whether deploys are frozen.

use anyhow::Result;
use serde::Serialize;

use crate::db::HeldBy;
use crate::record::freeze::{self, Freeze};
use crate::world::World;

#[derive(Debug, Serialize)]
pub struct Status {
    pub lock: String,
    pub held_by: Option<HeldBy>,
    pub frozen: Option<Freeze>,
}

pub async fn status(w: &World) -> Result<Status> {
    let lock = w.lock_key();
    Ok(Status {
        held_by: w.db.lock_holder(&lock).await?,
        frozen: freeze::read(w.store.as_ref(), &w.config.project).await?,
        lock,
    })
}

pub fn render(s: &Status) -> String {
    let mut out = match &s.held_by {
        Some(h) => format!("deploy lock {}: held by {h}\n", s.lock),
        None => format!("deploy lock {}: free\n", s.lock),
    };
    match &s.frozen {
        Some(f) => out.push_str(&format!("{f}\n")),
        None => out.push_str("deploys are not frozen\n"),
    }
    out
}
