//! Finding a run's record: every manifest in a store, and the backup to restore for a SHA.

use anyhow::{bail, Context, Result};

use super::Manifest;
use crate::backup::copy_verified;
use crate::model::{BackupKind, BackupName};
use crate::store::Store;

/// The manifests in a store: those that check out, newest first, and those that do not.
pub struct Listing {
    pub manifests: Vec<Manifest>,
    pub unreadable: Vec<Unreadable>,
}

/// A manifest that fails its checks (its signature, a field): nothing it says is trusted.
pub struct Unreadable {
    pub key: String,
    pub why: String,
    /// What it says, unchecked (None: not even JSON).
    said: Option<serde_json::Value>,
}

impl Unreadable {
    /// It may record a rollback of `project`'s `database` that failed and waits for a person:
    /// it says so, or it cannot be read well enough to tell. (What it says is not trusted; but
    /// whoever could forge it could as well have deleted it.)
    pub fn may_wait_for_a_person(&self, project: &str, database: &str) -> bool {
        let Some(m) = self.said.as_ref().filter(|v| v.is_object()) else { return true };
        let other = |field: &str, ours: &str| m.get(field).and_then(|v| v.as_str()).is_some_and(|v| v != ours);
        if other("project", project) || other("database", database) {
            return false;
        }
        m["outcome"]["result"] == "rollback-failed" && m.get("resolved").is_none_or(|r| r.is_null())
    }
}

impl Listing {
    /// Warns once about each manifest that did not check out.
    pub fn warn_unreadable(&self) {
        for u in &self.unreadable {
            tracing::warn!("skipping {}: {}", u.key, u.why);
        }
    }

    /// The manifests that check out, newest first, with a warning about each that does not.
    pub fn checked(self) -> Vec<Manifest> {
        self.warn_unreadable();
        self.manifests
    }
}

/// Every manifest in the store.
pub async fn list(store: &dyn Store) -> Result<Listing> {
    let mut listing = Listing { manifests: Vec::new(), unreadable: Vec::new() };
    for obj in store.list("").await? {
        if !BackupName::is_manifest_key(&obj.key) {
            continue;
        }
        let bytes = store.get_bytes(&obj.key).await?;
        match Manifest::from_bytes(&bytes, &obj.key, super::sign::signing_key()?.as_deref()) {
            Ok(m) => listing.manifests.push(m),
            Err(e) => listing.unreadable.push(Unreadable {
                key: obj.key,
                why: format!("{e:#}"),
                said: serde_json::from_slice(&bytes).ok(),
            }),
        }
    }
    listing.manifests.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.key.cmp(&a.key)));
    Ok(listing)
}

/// The backup to restore for the deploy of `project` on `database` whose SHA starts with
/// `prefix`. Backups of the same SHA written by another project or for another database (a
/// shared bucket, a staging deploy of the same commit) are never chosen; when only such backups
/// exist the error names them. Among this deploy's own backups, the one its deploy took comes
/// before any later `backup` of the same SHA (a nightly backup holds the migrated schema).
pub async fn find_for(store: &dyn Store, project: &str, database: &str, prefix: &str) -> Result<Manifest> {
    let (mine, others): (Vec<Manifest>, Vec<Manifest>) =
        matching(store, prefix).await?.into_iter().partition(|m| m.project == project && m.database == database);
    if mine.is_empty() && !others.is_empty() {
        bail!(
            "no backup of project {project}, database {database} matches SHA {prefix} in {}; the backups of that SHA \
             there belong to another project or database and are never restored here: {}",
            store.describe(),
            others
                .iter()
                .map(|m| format!("{} (project {}, database {})", m.key, m.project, m.database))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !others.is_empty() {
        tracing::info!(
            "ignoring {} backup(s) of SHA {prefix} written by another project or for another database",
            others.len()
        );
    }
    // A deploy's own backup is named pre-deploy and records the tag it deployed (older names
    // say pre-deploy for every backup: the tag tells them apart).
    let by_deploy = |m: &Manifest| {
        m.tag.is_some()
            && BackupName::of_manifest_key(&m.manifest_key()).is_some_and(|(k, _)| k == BackupKind::PreDeploy)
    };
    let (deploys, backups): (Vec<Manifest>, Vec<Manifest>) = mine.into_iter().partition(by_deploy);
    if deploys.iter().any(|m| m.verified) {
        if !backups.is_empty() {
            tracing::info!(
                "using the backup taken by the deploy of {prefix}, not another backup of that SHA (`backup`, `rehearse`)"
            );
        }
        return newest_verified(store, prefix, deploys);
    }
    let mut all = deploys;
    all.extend(backups);
    newest_verified(store, prefix, all)
}

/// [`find_for`] in `backup.store`, else in `backup.copy_to`: a backup found only in the copy (the
/// target's disk was lost, or the store was emptied) is first copied back into the store and
/// verified there, so the run goes on exactly as with any other backup.
pub async fn find_here_or_copy(
    store: &dyn Store,
    copy: Option<&dyn Store>,
    project: &str,
    database: &str,
    prefix: &str,
) -> Result<Manifest> {
    let err = match find_for(store, project, database, prefix).await {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let Some(copy) = copy else { return Err(err) };
    let m = find_for(copy, project, database, prefix)
        .await
        .map_err(|copy_err| anyhow::anyhow!("{err:#}; and in backup.copy_to {}: {copy_err:#}", copy.describe()))?;
    tracing::warn!("{err:#}; the offsite copy {} has it: copying it back", copy.location(&m.key));
    let home = async {
        copy_verified(copy, store, &m.stored().taken()).await?;
        m.create(store).await
    };
    home.await.with_context(|| {
        format!(
            "{} is in backup.copy_to but could not be copied back into {}; to restore straight from the copy, \
             run again with DEPLOY_GUARD_BACKUP_STORE={} (and DEPLOY_GUARD_BACKUP_COPY_TO unset)",
            m.key,
            store.describe(),
            copy.describe()
        )
    })?;
    Ok(m)
}

/// Every manifest whose SHA starts with `prefix` (each one validated as it is read).
async fn matching(store: &dyn Store, prefix: &str) -> Result<Vec<Manifest>> {
    let prefix = prefix.to_ascii_lowercase();
    let short = &prefix[..7.min(prefix.len())];
    let mut found = Vec::new();
    for obj in store.list("").await? {
        let Some(sha7) = BackupName::sha7_of_manifest_key(&obj.key) else {
            continue;
        };
        let sha7 = sha7.to_ascii_lowercase();
        if !sha7.starts_with(short) {
            continue;
        }
        let m = Manifest::load(store, &obj.key).await?;
        if m.sha.as_str().starts_with(&prefix) {
            found.push(m);
        }
    }
    Ok(found)
}

/// The newest verified of `found`, which must all be of one SHA.
fn newest_verified(store: &dyn Store, prefix: &str, mut found: Vec<Manifest>) -> Result<Manifest> {
    let prefix = prefix.to_ascii_lowercase();
    let mut shas: Vec<&str> = found.iter().map(|m| m.sha.as_str()).collect();
    shas.sort();
    shas.dedup();
    match shas.len() {
        0 => bail!(
            "no backup for a deploy of SHA {prefix} in {}; `deploy-guard backups` lists what there is",
            store.describe()
        ),
        1 => {}
        _ => bail!("SHA prefix {prefix} is ambiguous: it matches {}; give more digits", shas.join(", ")),
    }
    found.sort_by_key(|m| std::cmp::Reverse(m.created_at));
    let verified = found.iter().find(|m| m.verified).cloned();
    verified.ok_or_else(|| {
        anyhow::anyhow!(
            "the backups of {} were never verified ({}): they cannot be trusted for a restore",
            found[0].sha,
            found.iter().map(|m| m.key.as_str()).collect::<Vec<_>>().join(", ")
        )
    })
}
