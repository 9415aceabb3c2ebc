//! `replay`: applies the writes a restore lost (the replay file the restore wrote beside the
//! backup), after checking it is the file the manifest names; `--dry-run` prints it.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::backup::MetaGuard;
use crate::model::{BackupName, ShaPrefix};
use crate::world::World;

pub struct Replayed {
    pub key: String,
    pub sql: Option<String>,
    pub rows: u64,
}

/// What applying the file does, table by table, and why each table is in it or not: SQL
/// comments, so the dry run's output is still the file to apply.
pub fn plan(lost: &crate::record::LostWrites) -> String {
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::from("-- What this file does, table by table:\n");
    for t in &lost.tables {
        let by = if t.by.is_empty() { "primary key" } else { t.by.as_str() };
        let own = match t.migrations_own {
            0 => String::new(),
            n => format!("; {n} row(s) the migrations changed themselves left out"),
        };
        out.push_str(&format!(
            "--   in:  {}: {} inserted, {} updated, {} deleted (rows matched by {by}{own})\n",
            one_line(&t.table),
            t.inserted,
            t.updated,
            t.deleted
        ));
    }
    for t in &lost.held {
        let t = one_line(t);
        out.push_str(&format!(
            "--   out: {t}: the migrations changed its rows too, not yet told apart from the app's\n"
        ));
    }
    for (t, why) in &lost.not_compared {
        out.push_str(&format!("--   out: {}: not compared: {}\n", one_line(t), one_line(why)));
    }
    out
}

pub async fn replay(w: &World, sha: &ShaPrefix, dry_run: bool) -> Result<Replayed> {
    let m = crate::record::find_for(w.store.as_ref(), &w.config.project, &w.db.name, sha.as_str()).await?;
    // A later restore of another record of the same deploy (a point-in-time branch, `restore
    // --at`) wrote its replay file beside that record: the newest restore's file is the one.
    let same = (m.sha.clone(), m.project.clone(), m.database.clone());
    let m = crate::record::list(w.store.as_ref())
        .await?
        .checked()
        .into_iter()
        .filter(|o| (&o.sha, &o.project, &o.database) == (&same.0, &same.1, &same.2))
        .filter(|o| o.lost_writes.is_some())
        .chain([m])
        .max_by_key(|o| o.lost_writes.as_ref().and_then(|l| BackupName::replay_time(&l.key).map(str::to_string)))
        .expect("one at least");
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
        let sql = format!("{}{}", plan(lost), String::from_utf8_lossy(&bytes));
        return Ok(Replayed { key: lost.key.clone(), sql: Some(sql), rows });
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
