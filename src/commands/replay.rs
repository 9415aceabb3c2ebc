//! `replay`: applies the writes a restore lost (the replay file the restore wrote beside the
//! backup), after checking it is the file the manifest names; `--dry-run` prints it.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::backup::MetaGuard;
use crate::model::ShaPrefix;
use crate::world::World;

pub struct Replayed {
    pub key: String,
    pub sql: Option<String>,
    pub rows: u64,
}

pub async fn replay(w: &World, sha: &ShaPrefix, dry_run: bool) -> Result<Replayed> {
    let m = crate::record::find_for(w.store.as_ref(), &w.config.project, &w.db.name, sha.as_str()).await?;
    let Some(lost) = &m.lost_writes else {
        bail!("the deploy of {} has no replay file: no restore of its backup looked for lost writes", m.sha)
    };
    if lost.tables.is_empty() {
        bail!("the restore of {} lost no writes: nothing to replay", m.sha);
    }
    let bytes = w.store.get_bytes(&lost.key).await.with_context(|| format!("cannot read {}", lost.key))?;
    if hex::encode(Sha256::digest(&bytes)) != lost.sha256 {
        bail!("{} is not the replay file the manifest names (sha256 differs): refusing to apply it", lost.key);
    }
    let rows = lost.tables.iter().map(|t| t.total()).sum();
    if dry_run {
        return Ok(Replayed { key: lost.key.clone(), sql: Some(String::from_utf8_lossy(&bytes).into_owned()), rows });
    }
    // One transaction, stopping at the first error; psql meta-commands refused, by this filter
    // and by psql itself, restricted.
    let restricted = crate::backup::psql_restricts(&w.db, m.signed, crate::model::Format::Plain).await?;
    let mut input = MetaGuard::new(&bytes[..]);
    w.db.restore_into(&w.db.name, &mut input, restricted)
        .await
        .with_context(|| format!("applying {} failed; nothing was applied", lost.key))?;
    Ok(Replayed { key: lost.key.clone(), sql: None, rows })
}
