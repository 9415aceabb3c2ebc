//! Backups named by git SHA, their manifests (which are also the run's journal), and lookup.

mod chunks;
mod codec;
mod format;
mod meta_filter;
mod pipeline;
pub mod retention;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db::{Fingerprint, RowSum, TableStats};
use crate::guard::{Journal, Outcome};
use crate::model::{BackupName, Sha};
use crate::store::Store;
use std::collections::BTreeMap;

pub use chunks::Chunks;
pub use codec::Codec;
pub use format::{Format, PlainView, TarGuard};
pub use meta_filter::MetaGuard;
pub use pipeline::{
    copy_verified, human_bytes, restore_stream, room_for, sums, take, take_verified, verify, Packing, Taken, TRAILER,
};

/// The writes made after the backup's snapshot that a restore took away, per table, and the
/// replay file that puts them back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostWrites {
    /// Key of the replay file (SQL), beside the backup.
    pub key: String,
    pub sha256: String,
    /// Tables that lost writes.
    pub tables: Vec<crate::db::TableLoss>,
    /// Tables that saw writes but could not be compared, and why.
    pub not_compared: Vec<(String, String)>,
    /// Tables whose changes include the migrations' own (review before replaying).
    pub touched_by_migrations: Vec<String>,
}

/// The migration table as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationState {
    pub table: Option<String>,
    pub rows: Vec<serde_json::Value>,
}

/// Everything known about one guarded deploy, written beside its backup before each step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub project: String,
    pub sha: Sha,
    /// The tag being deployed.
    pub tag: Option<String>,
    /// The tag that ran before (what a rollback redeploys).
    pub previous_tag: Option<String>,
    /// Where `previous_tag` was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_tag_source: Option<crate::app::TagSource>,
    pub created_at: DateTime<Utc>,
    pub database: String,
    pub server_version: Option<String>,
    /// Key of the compressed dump, relative to the store; its suffix names the format and codec.
    pub key: String,
    /// Size of the dump pg_dump wrote (plain SQL, or the directory format's tar).
    pub dump_bytes: u64,
    /// Size of the stored, compressed object.
    pub size: u64,
    pub sha256: String,
    /// The stored object's SHA-256 piece by piece: a restore checks each piece before psql
    /// reads it. None in manifests of older versions (such a restore checks the whole first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Chunks>,
    /// Set only once the stored object was read back whole and matched.
    pub verified: bool,
    pub migrations: MigrationState,
    pub fingerprint: Option<Fingerprint>,
    /// Each table the dump holds rows for, with its columns as dumped (listed while the backup
    /// was verified). Empty in manifests of older versions, which recorded `data` for every table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, Vec<String>>,
    /// Rows at the backup, as order-independent sums (see `db::RowSum`), of the tables a rollback
    /// or a rehearsal compared: read from the backup when first needed and kept here.
    #[serde(default)]
    pub data: BTreeMap<String, RowSum>,
    /// Each table's storage file and update/delete count before the migrations ran.
    #[serde(default)]
    pub stats: BTreeMap<String, TableStats>,
    /// The results of `verify.queries` before the migrations ran, in order.
    #[serde(default)]
    pub checks: Vec<String>,
    /// The writes a restore of this backup lost, found in the kept database.
    #[serde(default)]
    pub lost_writes: Option<LostWrites>,
    /// The pending migrations' SQL, classified before the deploy.
    #[serde(default)]
    pub classification: Vec<crate::db::lint::Finding>,
    /// What rehearsing the migrations on a copy of this backup showed.
    #[serde(default)]
    pub rehearsal: Option<crate::run::steps::rehearse::Rehearsal>,
    pub journal: Journal,
    /// How the last run on this backup ended; none while a run is under way.
    pub outcome: Option<Outcome>,
    /// What a person did about a `rollback-failed` run (`deploy-guard resolve`). Until it is set,
    /// the next deploy is refused and retention keeps this backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolution>,
    /// Where `backup.copy_to` holds the verified offsite copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
    /// Read with its signature checked (`DEPLOY_GUARD_MANIFEST_KEY`): its hashes are as
    /// trustworthy as the key. Not stored.
    #[serde(skip)]
    pub signed: bool,
}

/// A person's note that a stuck run was dealt with by hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub at: DateTime<Utc>,
    pub note: String,
}

impl Manifest {
    pub const FORMAT: u32 = 1;

    /// The manifest of a backup that was just taken and verified; the caller fills in the rest.
    pub fn verified(project: &str, sha: &Sha, database: &str, created_at: DateTime<Utc>, taken: Taken) -> Manifest {
        Manifest {
            format: Manifest::FORMAT,
            project: project.to_string(),
            sha: sha.clone(),
            tag: None,
            previous_tag: None,
            previous_tag_source: None,
            created_at,
            database: database.to_string(),
            server_version: None,
            key: taken.key,
            dump_bytes: taken.dump_bytes.unwrap_or_default(),
            size: taken.size,
            sha256: taken.sha256,
            chunks: taken.chunks,
            verified: true,
            migrations: MigrationState::default(),
            fingerprint: None,
            tables: taken.columns,
            data: BTreeMap::new(),
            stats: BTreeMap::new(),
            checks: Vec::new(),
            lost_writes: None,
            classification: Vec::new(),
            rehearsal: None,
            journal: Journal::default(),
            outcome: None,
            resolved: None,
            copy: None,
            signed: false,
        }
    }

    /// What was stored, as the read-back checks it.
    pub fn taken(&self) -> Taken {
        Taken {
            key: self.key.clone(),
            dump_bytes: Some(self.dump_bytes),
            size: self.size,
            sha256: self.sha256.clone(),
            columns: BTreeMap::new(),
            chunks: self.chunks.clone(),
        }
    }

    /// Whether the dump holds rows of `table` (`schema.table`, as pg_dump quotes it).
    pub fn dumped(&self, table: &str) -> bool {
        self.tables.contains_key(table) || self.data.contains_key(table)
    }

    /// Every table the dump holds rows for.
    pub fn dumped_tables(&self) -> std::collections::BTreeSet<&String> {
        self.tables.keys().chain(self.data.keys()).collect()
    }

    /// A `rollback-failed` run that no person has yet recorded as dealt with.
    pub fn unresolved_failure(&self) -> bool {
        matches!(self.outcome, Some(Outcome::RollbackFailed { .. })) && self.resolved.is_none()
    }

    pub fn manifest_key(&self) -> String {
        BackupName::from_key(&self.key).manifest_key()
    }

    /// Writes the manifest beside its backup, signed when `DEPLOY_GUARD_MANIFEST_KEY` is set.
    pub async fn save(&self, store: &dyn Store) -> Result<()> {
        let body = self.to_bytes(signing_key()?.as_deref())?;
        store.put_bytes(&self.manifest_key(), &body).await.context("cannot write the backup manifest")?;
        Ok(())
    }

    /// Reads the manifest at `key` and checks it: the store is as trusted as code (a restore pipes
    /// the backup it names into psql), so the signature, when a key is set, and every field that
    /// reaches a command, a name or a lookup are checked before anything uses it.
    pub async fn load(store: &dyn Store, key: &str) -> Result<Manifest> {
        let bytes = store.get_bytes(key).await?;
        Manifest::from_bytes(&bytes, key, signing_key()?.as_deref())
    }

    /// The stored form: pretty JSON, with `signature` (HMAC-SHA256 of the canonical body) when
    /// `key` is given.
    pub fn to_bytes(&self, key: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut value = serde_json::to_value(self)?;
        if let Some(key) = key {
            let mac = sign(key, &serde_json::to_vec(&value)?);
            value.as_object_mut().expect("a manifest is an object").insert(SIGNATURE.into(), mac.into());
        }
        Ok(serde_json::to_vec_pretty(&value)?)
    }

    /// Parses, authenticates (when `key` is given) and validates the manifest stored at `at`.
    pub fn from_bytes(bytes: &[u8], at: &str, key: Option<&[u8]>) -> Result<Manifest> {
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).with_context(|| format!("{at} is not a deploy-guard manifest"))?;
        let obj = value.as_object_mut().with_context(|| format!("{at} is not a deploy-guard manifest"))?;
        let signature = obj.remove(SIGNATURE);
        let signed = key.is_some();
        match (key, signature) {
            (Some(key), Some(serde_json::Value::String(sig))) => {
                if !verify_signature(key, &serde_json::to_vec(&value)?, &sig) {
                    bail!(
                        "manifest {at} fails its signature check: it was changed after it was written, or signed with another DEPLOY_GUARD_MANIFEST_KEY. Refusing to trust it"
                    );
                }
            }
            (Some(_), _) => bail!(
                "manifest {at} is not signed, but DEPLOY_GUARD_MANIFEST_KEY is set: refusing to trust it (anyone who can write to the store could have written it). If it predates the key, check it by hand"
            ),
            (None, _) => warn_unsigned(),
        }
        let mut m: Manifest =
            serde_json::from_value(value).with_context(|| format!("{at} is not a deploy-guard manifest"))?;
        m.signed = signed;
        m.validate(at)?;
        Ok(m)
    }

    /// Checks every field a command, a database name or a lookup is built from; `at` is the key
    /// the manifest was read from.
    pub fn validate(&self, at: &str) -> Result<()> {
        let bad = |what: String| Err(anyhow::anyhow!("manifest {at} is not trustworthy: {what}"));
        if self.format != Manifest::FORMAT {
            return bad(format!("format {} (this deploy-guard reads format {})", self.format, Manifest::FORMAT));
        }
        for (what, tag) in [("tag", &self.tag), ("previous_tag", &self.previous_tag)] {
            if let Some(t) = tag {
                if let Err(e) = crate::config::check_tag(what, t) {
                    return bad(format!("{e:#}"));
                }
            }
        }
        if !plain_name(&self.project, 64) {
            return bad(format!("project {:?} is not a plain name", self.project));
        }
        if !plain_name(&self.database, 63) {
            return bad(format!("database {:?} is not a plain name", self.database));
        }
        if !BackupName::is_manifest_key(at) {
            return bad("its own key is not a manifest's".into());
        }
        let name = BackupName::from_key(at);
        if Format::of_key(&self.key).is_none_or(|(f, c)| self.key != name.data_key(f, c)) {
            return bad(format!(
                "it names the backup {:?}, not {}.sql.zst (or .sql.gz, .dir.tar.zst, .dir.tar.gz) beside it",
                self.key,
                name.stem()
            ));
        }
        let named = BackupName::sha7_of_manifest_key(at);
        if !named.is_some_and(|n| n.eq_ignore_ascii_case(self.sha.short())) {
            return bad(format!("its name is not that of a backup of {}", self.sha.short()));
        }
        let listed = self.tables.iter().chain(self.data.iter().map(|(t, sum)| (t, &sum.columns)));
        for (table, columns) in listed {
            if !crate::db::safe_ident_list(table) || !columns.iter().all(|c| crate::db::safe_ident_list(c)) {
                return bad(format!("table {table:?} or its columns are not plain or quoted identifiers"));
            }
        }
        if !is_sha256_hex(&self.sha256) {
            return bad(format!("sha256 {:?} is not a SHA-256", self.sha256));
        }
        if self.size == 0 || self.dump_bytes == 0 || self.size > MAX_BYTES || self.dump_bytes > MAX_BYTES {
            return bad(format!(
                "sizes {} (stored) and {} (dump) are not those of a backup",
                self.size, self.dump_bytes
            ));
        }
        if self.chunks.as_ref().is_some_and(|c| !c.fits(self.size)) {
            return bad(format!("its pieces' SHA-256s do not describe an object of {} bytes", self.size));
        }
        Ok(())
    }
}

/// Field holding the manifest's HMAC.
const SIGNATURE: &str = "signature";
/// Larger than any backup: sizes above it are corrupt or hostile.
const MAX_BYTES: u64 = 1 << 50;
/// The environment variable holding the manifest signing key.
pub const MANIFEST_KEY_VAR: &str = "DEPLOY_GUARD_MANIFEST_KEY";

/// A SHA-256 as the manifest stores it: 64 lower-case hex digits.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Letters, digits, `_`, `-`, `.`; at most `max` bytes.
fn plain_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The signing key from `DEPLOY_GUARD_MANIFEST_KEY`, when set.
fn signing_key() -> Result<Option<Vec<u8>>> {
    match std::env::var(MANIFEST_KEY_VAR) {
        Ok(k) if k.len() >= 16 => Ok(Some(k.into_bytes())),
        Ok(k) if k.is_empty() => Ok(None),
        Ok(_) => bail!("{MANIFEST_KEY_VAR} is too short to be a key: use 32 random bytes (openssl rand -hex 32)"),
        Err(_) => Ok(None),
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn sign(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    format!("hmac-sha256:{}", hex::encode(mac.chain_update(body).finalize().into_bytes()))
}

fn verify_signature(key: &[u8], body: &[u8], signature: &str) -> bool {
    use hmac::Mac;
    let Some(Ok(tag)) = signature.strip_prefix("hmac-sha256:").map(hex::decode) else {
        return false;
    };
    let mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    // Constant time.
    mac.chain_update(body).verify_slice(&tag).is_ok()
}

/// Says once per run that manifests are read without a signature check.
fn warn_unsigned() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "backup manifests are unsigned: anyone who can write to the backup store can forge one. Set {MANIFEST_KEY_VAR} (a secret, e.g. `openssl rand -hex 32`) to sign them and refuse forgeries"
        )
    });
}

/// Every manifest in the store, newest first.
pub async fn list(store: &dyn Store) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for obj in store.list("").await? {
        if BackupName::is_manifest_key(&obj.key) {
            match Manifest::load(store, &obj.key).await {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!("skipping {}: {e:#}", obj.key),
            }
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.key.cmp(&a.key)));
    Ok(out)
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
    let (deploys, backups): (Vec<Manifest>, Vec<Manifest>) = mine.into_iter().partition(|m| m.tag.is_some());
    if deploys.iter().any(|m| m.verified) {
        if !backups.is_empty() {
            tracing::info!("using the backup taken by the deploy of {prefix}, not a later `backup` of that SHA");
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
        copy_verified(copy, store, &m.taken()).await?;
        m.save(store).await
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const AT: &str = "202605/20260510_150000_pre-deploy-abc1234.manifest.json";

    fn sha() -> Sha {
        Sha::parse("abc1234def5678abc1234def5678abc1234def56").unwrap()
    }

    fn manifest() -> Manifest {
        let at = DateTime::parse_from_rfc3339("2026-05-10T15:00:00Z").unwrap().with_timezone(&Utc);
        let taken = Taken {
            key: BackupName::new(&sha(), at).data_key(Format::Plain, Codec::Gzip),
            dump_bytes: Some(1000),
            size: 300,
            sha256: "9f".repeat(32),
            columns: Default::default(),
            chunks: Some(Chunks { piece: Chunks::piece_for(300), sha256: vec!["ab".repeat(32)] }),
        };
        let mut m = Manifest::verified("station", &sha(), "shop", at, taken);
        m.tag = Some("v2".into());
        m.previous_tag = Some("v1".into());
        m
    }

    /// The manifest as JSON, changed by `f`, stored unsigned.
    fn edited(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = serde_json::to_value(manifest()).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    fn refused(bytes: &[u8], key: Option<&[u8]>, why: &str) {
        let e = format!("{:#}", Manifest::from_bytes(bytes, AT, key).expect_err(why));
        assert!(e.contains(why), "expected {why:?} in {e}");
    }

    #[test]
    fn signed_manifests_round_trip_and_tampering_is_refused() {
        let signed = manifest().to_bytes(Some(KEY)).unwrap();
        let m = Manifest::from_bytes(&signed, AT, Some(KEY)).unwrap();
        assert_eq!((m.tag.as_deref(), m.sha256.as_str()), (Some("v2"), "9f".repeat(32).as_str()));
        // Unsigned readers still read it (with the once-per-run warning).
        Manifest::from_bytes(&signed, AT, None).unwrap();
        // One byte of the body changed: the previous tag an attacker wants redeployed.
        let text = String::from_utf8(signed.clone()).unwrap();
        let tampered = text.replace("\"previous_tag\": \"v1\"", "\"previous_tag\": \"v0\"");
        assert_ne!(tampered, text);
        refused(tampered.as_bytes(), Some(KEY), "fails its signature check");
        // The checksum replaced so that a forged backup would verify.
        let forged = text.replace(&"9f".repeat(32), &"00".repeat(32));
        refused(forged.as_bytes(), Some(KEY), "fails its signature check");
        // Another key, a stripped signature, a mangled one.
        refused(&signed, Some(b"another key, another deployment!"), "fails its signature check");
        refused(&manifest().to_bytes(None).unwrap(), Some(KEY), "is not signed");
        let mangled = text.replace("hmac-sha256:", "hmac-sha256:zz");
        refused(mangled.as_bytes(), Some(KEY), "fails its signature check");
    }

    #[test]
    fn hostile_fields_are_refused_on_read() {
        use serde_json::json;
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|v| v["tag"] = json!("v2; touch /tmp/pwned")), "not a valid image tag"),
            (Box::new(|v| v["previous_tag"] = json!("$(id)")), "not a valid image tag"),
            (Box::new(|v| v["sha"] = json!("abc1234'; touch x")), "not a git SHA"),
            (Box::new(|v| v["sha"] = json!("abc12")), "not a git SHA"),
            (
                Box::new(|v| v["sha"] = json!("def1234def5678abc1234def5678abc1234def56")),
                "not that of a backup of def1234",
            ),
            (Box::new(|v| v["key"] = json!("../../etc/passwd")), "names the backup"),
            (Box::new(|v| v["key"] = json!("202605/20260101_000000_pre-deploy-abc1234.sql.gz")), "names the backup"),
            (Box::new(|v| v["database"] = json!("shop\" OR 1=1")), "not a plain name"),
            (Box::new(|v| v["project"] = json!("")), "not a plain name"),
            (Box::new(|v| v["size"] = json!(0)), "are not those of a backup"),
            (Box::new(|v| v["dump_bytes"] = json!(u64::MAX)), "are not those of a backup"),
            (Box::new(|v| v["sha256"] = json!("xyz")), "not a SHA-256"),
            (Box::new(|v| v["chunks"]["piece"] = json!(1u64 << 40)), "pieces' SHA-256s"),
            (Box::new(|v| v["chunks"]["sha256"][0] = json!("$(id)")), "pieces' SHA-256s"),
            (Box::new(|v| v["format"] = json!(99)), "format 99"),
            (Box::new(|v| v["tables"] = json!({"t) TO PROGRAM 'id'": ["a"]})), "not plain or quoted"),
            (Box::new(|v| v["tables"] = json!({"public.t": ["a; DROP TABLE x"]})), "not plain or quoted"),
        ];
        for (f, why) in cases {
            refused(&edited(f), None, why);
        }
        Manifest::from_bytes(&edited(|_| {}), AT, None).unwrap();
        // A manifest read from another name than its own.
        let e = Manifest::from_bytes(&edited(|_| {}), "202605/x_pre-deploy-abc1234.manifest.json", None).unwrap_err();
        assert!(format!("{e:#}").contains("names the backup"), "{e:#}");
    }
}
