//! The manifest: everything known about one guarded deploy, written beside its backup before
//! each step (it is the run's journal too), and checked field by field when it is read back.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::sign;
use super::Rehearsal;
use crate::app::{ServiceState, TagSource};
use crate::backup::{Chunks, Stored, Taken};
use crate::db::{Fingerprint, Identities, RowSum, TableStats};
use crate::guard::{Journal, Outcome};
use crate::model::{is_sha256_hex, BackupName, Format, Sha};
use crate::store::{Put, Store};

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
    /// Tables the migrations changed rows of, whose lost writes wait to be told from the
    /// migrations' own (the `app-writes` step, once the service is back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
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
    pub previous_tag_source: Option<TagSource>,
    /// Each service's image and replicas before the deploy (swarm), what a rollback puts back;
    /// the replicas are read again just before the writers are scaled to 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceState>,
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
    /// Set only once the dump's content was checked and the stored object read back and matched.
    pub verified: bool,
    pub migrations: MigrationState,
    pub fingerprint: Option<Fingerprint>,
    /// The catalog identities of the schema's objects before the migrations: a rename is told
    /// from a drop and an add by them. None in manifests of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Identities>,
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
    /// The tables whose rows the migrations changed (updated, deleted, rewrote), read from the
    /// statistics around the migrate step; None when it did not run or they could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated: Option<std::collections::BTreeSet<String>>,
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
    pub rehearsal: Option<Rehearsal>,
    pub journal: Journal,
    /// How the last run on this backup ended; none while a run is under way.
    pub outcome: Option<Outcome>,
    /// What a person did about a `rollback-failed` run (`deploy-guard resolve`). Until it is set,
    /// the next deploy is refused and retention keeps this backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolution>,
    /// `backup.provider: neon`: the backup is this branch (`key` is then the stem's `.neon-branch`
    /// and there is no object, size or hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neon: Option<crate::backup::NeonBranch>,
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
            services: Vec::new(),
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
            identities: None,
            migrated: None,
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
            neon: None,
            signed: false,
        }
    }

    /// The same record for `taken`, a dump of this Neon backup's branch (its offsite copy): an
    /// ordinary backup, restored as any other.
    pub fn as_dump(&self, taken: Taken) -> Manifest {
        let mut m = self.clone();
        m.neon = None;
        m.copy = None;
        m.key = taken.key;
        m.dump_bytes = taken.dump_bytes.unwrap_or_default();
        m.size = taken.size;
        m.sha256 = taken.sha256;
        m.chunks = taken.chunks;
        m.tables = taken.columns;
        m.verified = true;
        m
    }

    /// What was stored, as a read, a restore or a copy checks it.
    pub fn stored(&self) -> Stored {
        Stored {
            key: self.key.clone(),
            dump_bytes: self.dump_bytes,
            size: self.size,
            sha256: self.sha256.clone(),
            chunks: self.chunks.clone(),
            verified: self.verified,
            signed: self.signed,
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

    /// Writes the manifest's first version beside its backup: never over another manifest.
    pub async fn create(&self, store: &dyn Store) -> Result<()> {
        self.write(store, Put::New).await
    }

    /// Writes the manifest's next version (the journal), signed when `DEPLOY_GUARD_MANIFEST_KEY`
    /// is set.
    pub async fn save(&self, store: &dyn Store) -> Result<()> {
        self.write(store, Put::Replace).await
    }

    async fn write(&self, store: &dyn Store, mode: Put) -> Result<()> {
        let body = self.to_bytes(sign::signing_key()?.as_deref())?;
        store.put_bytes(&self.manifest_key(), &body, mode).await.context("cannot write the backup manifest")?;
        Ok(())
    }

    /// Reads the manifest at `key` and checks it: the store is as trusted as code (a restore pipes
    /// the backup it names into psql), so the signature, when a key is set, and every field that
    /// reaches a command, a name or a lookup are checked before anything uses it.
    pub async fn load(store: &dyn Store, key: &str) -> Result<Manifest> {
        let bytes = store.get_bytes(key).await?;
        Manifest::from_bytes(&bytes, key, sign::signing_key()?.as_deref())
    }

    /// The stored form: pretty JSON, with `signature` (HMAC-SHA256 of the canonical body) when
    /// `key` is given.
    pub fn to_bytes(&self, key: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut value = serde_json::to_value(self)?;
        if let Some(key) = key {
            let mac = sign::sign(key, &serde_json::to_vec(&value)?);
            value.as_object_mut().expect("a manifest is an object").insert(sign::SIGNATURE.into(), mac.into());
        }
        Ok(serde_json::to_vec_pretty(&value)?)
    }

    /// Parses, authenticates (when `key` is given) and validates the manifest stored at `at`.
    pub fn from_bytes(bytes: &[u8], at: &str, key: Option<&[u8]>) -> Result<Manifest> {
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).with_context(|| format!("{at} is not a deploy-guard manifest"))?;
        let obj = value.as_object_mut().with_context(|| format!("{at} is not a deploy-guard manifest"))?;
        let signature = obj.remove(sign::SIGNATURE);
        let signed = key.is_some();
        match (key, signature) {
            (Some(key), Some(serde_json::Value::String(sig))) => {
                if !sign::verify_signature(key, &serde_json::to_vec(&value)?, &sig) {
                    bail!(
                        "manifest {at} fails its signature check: it was changed after it was written, or signed with another DEPLOY_GUARD_MANIFEST_KEY. Refusing to trust it"
                    );
                }
            }
            (Some(_), _) => bail!(
                "manifest {at} is not signed, but DEPLOY_GUARD_MANIFEST_KEY is set: refusing to trust it (anyone who can write to the store could have written it). If it predates the key, check it by hand"
            ),
            (None, _) => sign::warn_unsigned(),
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
        for s in &self.services {
            if let Err(e) = s.check() {
                return bad(format!("{e:#}"));
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
        if let Some(n) = &self.neon {
            n.validate().or_else(|e| bad(format!("{e:#}")))?;
            if self.key != name.neon_key() {
                return bad(format!("it names the backup {:?}, not {} beside it", self.key, name.neon_key()));
            }
        } else if Format::of_key(&self.key).is_none_or(|(f, c)| self.key != name.data_key(f, c)) {
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
        if self.neon.is_none() && !is_sha256_hex(&self.sha256) {
            return bad(format!("sha256 {:?} is not a SHA-256", self.sha256));
        }
        let bad_size = self.size == 0 || self.dump_bytes == 0 || self.size > MAX_BYTES || self.dump_bytes > MAX_BYTES;
        if self.neon.is_none() && bad_size {
            return bad(format!(
                "sizes {} (stored) and {} (dump) are not those of a backup",
                self.size, self.dump_bytes
            ));
        }
        if let Some(lost) = self.lost_writes.as_ref().filter(|l| !l.key.is_empty()) {
            let after = lost.key.strip_prefix(name.stem()).and_then(|k| k.strip_prefix(".lost-writes."));
            let replay_key = after.is_some_and(|a| {
                a == "sql"
                    || a.strip_suffix(".sql").is_some_and(|t| t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()))
            });
            if !replay_key || !is_sha256_hex(&lost.sha256) {
                return bad(format!("its replay file {:?} is not the one beside this backup", lost.key));
            }
        }
        if self.chunks.as_ref().is_some_and(|c| !c.fits(self.size)) {
            return bad(format!("its pieces' SHA-256s do not describe an object of {} bytes", self.size));
        }
        Ok(())
    }
}

/// Larger than any backup: sizes above it are corrupt or hostile.
const MAX_BYTES: u64 = 1 << 50;
/// Letters, digits, `_`, `-`, `.`; at most `max` bytes.
fn plain_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Codec;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const STEM: &str = "202605/20260510_150000_pre-deploy-abc1234-0a1b2c";
    const AT: &str = "202605/20260510_150000_pre-deploy-abc1234-0a1b2c.manifest.json";

    fn sha() -> Sha {
        Sha::parse("abc1234def5678abc1234def5678abc1234def56").unwrap()
    }

    fn manifest() -> Manifest {
        let at = DateTime::parse_from_rfc3339("2026-05-10T15:00:00Z").unwrap().with_timezone(&Utc);
        let taken = Taken {
            key: BackupName::from_key(STEM).data_key(Format::Plain, Codec::Gzip),
            dump_bytes: Some(1000),
            size: 300,
            sha256: "9f".repeat(32),
            columns: Default::default(),
            chunks: Some(Chunks { piece: Chunks::piece_for(300), sha256: vec!["ab".repeat(32)] }),
            checked: true,
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

    /// The signature is over the manifest as read back: every duration must read back as the
    /// very number that was written (19,933 of 200,000 did not, before).
    #[test]
    fn a_signed_manifest_with_a_rehearsal_reads_back_whatever_its_durations() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let secs = (next() % 10_000_000) as f64 / 1000.0 + (next() % 1000) as f64 * 1e-13;
            let back: f64 = serde_json::from_str(&serde_json::to_string(&secs).unwrap()).unwrap();
            assert_eq!(back.to_bits(), secs.to_bits(), "{secs}");
        }
        let mut m = manifest();
        m.rehearsal = Some(Rehearsal {
            up_secs: 0.1 + 0.2,
            down_secs: 1.0 / 3.0,
            long_locks: vec![crate::db::locks::HeldLock { secs: 7.000000000000001, ..Default::default() }],
            lock_warn_secs: 5.0,
            ..Default::default()
        });
        let signed = m.to_bytes(Some(KEY)).unwrap();
        let back = Manifest::from_bytes(&signed, AT, Some(KEY)).unwrap();
        assert_eq!(back.rehearsal, m.rehearsal);
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
            (
                Box::new(
                    |v| v["lost_writes"] = json!({"key": "../../etc/passwd", "sha256": "ab".repeat(32), "tables": [], "not_compared": [], "touched_by_migrations": []}),
                ),
                "its replay file",
            ),
            (
                Box::new(
                    |v| v["lost_writes"] = json!({"key": format!("{STEM}.lost-writes.20260510150000.sql"), "sha256": "x", "tables": [], "not_compared": [], "touched_by_migrations": []}),
                ),
                "its replay file",
            ),
            (Box::new(|v| v["tables"] = json!({"t) TO PROGRAM 'id'": ["a"]})), "not plain or quoted"),
            (Box::new(|v| v["tables"] = json!({"public.t": ["a; DROP TABLE x"]})), "not plain or quoted"),
        ];
        for (f, why) in cases {
            refused(&edited(f), None, why);
        }
        Manifest::from_bytes(&edited(|_| {}), AT, None).unwrap();
        let replay = format!("{STEM}.lost-writes.20260510150000.sql");
        let ok = edited(
            |v| v["lost_writes"] = serde_json::json!({"key": replay, "sha256": "ab".repeat(32), "tables": [], "not_compared": [], "touched_by_migrations": []}),
        );
        Manifest::from_bytes(&ok, AT, None).unwrap();
        // A manifest read from another name than its own.
        let e = Manifest::from_bytes(&edited(|_| {}), "202605/x_pre-deploy-abc1234.manifest.json", None).unwrap_err();
        assert!(format!("{e:#}").contains("names the backup"), "{e:#}");
    }
}
