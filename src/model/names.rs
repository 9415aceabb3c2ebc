//! Every name deploy-guard derives: a backup's keys, and the scratch and kept databases of a
//! restore. Said once here; the driver, the plan, the runbook and the next commands use these.

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Sha;
use super::{Codec, Format};

const MANIFEST_SUFFIX: &str = ".manifest.json";
/// The key a Neon backup's manifest names for it: the data is the branch, not an object.
const NEON_SUFFIX: &str = ".neon-branch";
/// `….lost-writes.{yyyymmddhhmmss}.sql` (older: `….lost-writes.sql`).
const REPLAY_MARK: &str = ".lost-writes.";

/// What a backup was taken for: its name says so, and a lookup by SHA prefers the deploy's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupKind {
    /// Taken by a deploy before anything changed: what its rollback restores.
    PreDeploy,
    /// `deploy-guard backup`.
    Backup,
    /// `deploy-guard rehearse`.
    Rehearse,
    /// `deploy-guard restore --at`: a Neon branch of the primary as it was at that moment.
    PointInTime,
}

impl BackupKind {
    pub const ALL: [BackupKind; 4] =
        [BackupKind::PreDeploy, BackupKind::Backup, BackupKind::Rehearse, BackupKind::PointInTime];

    pub fn name(self) -> &'static str {
        match self {
            BackupKind::PreDeploy => "pre-deploy",
            BackupKind::Backup => "backup",
            BackupKind::Rehearse => "rehearse",
            BackupKind::PointInTime => "point-in-time",
        }
    }
}

/// A backup's name: `{yyyymm}/{yyyymmdd}_{hhmmss}_{kind}-{sha7}-{nonce}`, the nonce random, so
/// that two backups of one SHA in the same second are two backups; the data beside its manifest
/// (`….sql.zst`, `….sql.gz`, `….dir.tar.zst`, `….dir.tar.gz`; `….manifest.json`). Names of older
/// versions (`…_pre-deploy-{sha7}`, no nonce) are read too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupName {
    stem: String,
}

impl BackupName {
    pub fn new(kind: BackupKind, sha: &Sha, at: DateTime<Utc>) -> BackupName {
        let stem = format!(
            "{}/{}_{}-{}-{}",
            at.format("%Y%m"),
            at.format("%Y%m%d_%H%M%S"),
            kind.name(),
            sha.short(),
            random_hex(3)
        );
        BackupName { stem }
    }

    /// The name of a data, manifest or replay key (or a bare stem).
    pub fn from_key(key: &str) -> BackupName {
        let data: Vec<String> = Format::suffixes().collect();
        let replay = key.ends_with(".sql").then(|| key.rfind(REPLAY_MARK).map(|at| &key[..at])).flatten();
        let stem = data
            .iter()
            .map(String::as_str)
            .chain([MANIFEST_SUFFIX, NEON_SUFFIX])
            .find_map(|s| key.strip_suffix(s))
            .or(replay)
            .unwrap_or(key);
        BackupName { stem: stem.to_string() }
    }

    pub fn is_manifest_key(key: &str) -> bool {
        key.ends_with(MANIFEST_SUFFIX)
    }

    /// What a manifest key names: the backup's kind and the short SHA, if it is one.
    pub fn of_manifest_key(key: &str) -> Option<(BackupKind, &str)> {
        let stem = key.strip_suffix(MANIFEST_SUFFIX)?;
        let file = stem.rsplit('/').next()?;
        let rest = file.splitn(3, '_').nth(2)?;
        BackupKind::ALL.into_iter().find_map(|kind| {
            let named = rest.strip_prefix(kind.name())?.strip_prefix('-')?;
            let sha7 = named.split('-').next()?;
            (!sha7.is_empty()).then_some((kind, sha7))
        })
    }

    /// The short SHA a manifest key is named by, if it is one.
    pub fn sha7_of_manifest_key(key: &str) -> Option<&str> {
        Self::of_manifest_key(key).map(|(_, sha7)| sha7)
    }

    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// The data key of a backup in `format`, compressed with `codec`.
    pub fn data_key(&self, format: Format, codec: Codec) -> String {
        format!("{}{}{}", self.stem, format.ext(), codec.ext())
    }

    /// What a Neon backup's manifest names as its key (the data is a branch).
    pub fn neon_key(&self) -> String {
        format!("{}{NEON_SUFFIX}", self.stem)
    }

    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.stem)
    }

    /// The replay file of the writes a restore of this backup at `at` lost: each restore its own.
    pub fn replay_key(&self, at: DateTime<Utc>) -> String {
        format!("{}{REPLAY_MARK}{}.sql", self.stem, at.format("%Y%m%d%H%M%S"))
    }

    /// When the restore that wrote replay file `key` ran (`yyyymmddhhmmss`, in order as text);
    /// none for an older version's file.
    pub fn replay_time(key: &str) -> Option<&str> {
        let (_, rest) = key.rsplit_once(REPLAY_MARK)?;
        rest.strip_suffix(".sql").filter(|t| t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// `bytes` random bytes in lower-case hex (from the kernel; the clock and pid, hashed, if it
/// cannot be read).
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if read.is_err() {
        use sha2::{Digest, Sha256};
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        let digest = Sha256::digest(seed.as_bytes());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = digest[i % digest.len()];
        }
    }
    hex::encode(buf)
}

/// PostgreSQL's identifier limit: longer names are silently truncated by the server.
const MAX_IDENT: usize = 63;

/// A live database name as resolved (after `${VAR}`): what the server and libpq take literally.
pub fn check_live_db_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_IDENT {
        bail!("database name {name:?}: must be 1 to {MAX_IDENT} bytes (PostgreSQL truncates longer names)");
    }
    if name.contains('=') {
        bail!("database name {name:?}: contains '=', which psql and pg_dump read as a connection string");
    }
    // libpq reads a name with a URI's prefix as a whole connection string (another host, user…).
    if ["postgresql:", "postgres:"].iter().any(|p| name.get(..p.len()).is_some_and(|n| n.eq_ignore_ascii_case(p))) {
        bail!("database name {name:?}: psql and pg_dump read it as a connection URI, which can name another server");
    }
    if name.chars().any(|c| c.is_control()) || name.trim() != name {
        bail!("database name {name:?}: contains control characters or surrounding spaces");
    }
    Ok(())
}

/// The databases a restore involves: the live one, the scratch one the backup is restored
/// into, and the name the live one is kept under once the scratch one is swapped in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbNames {
    pub live: String,
    pub scratch: String,
    /// What the live database is renamed to, kept for forensics.
    pub failed: String,
    /// Where a rehearsal runs the release's migrations on a copy of the backup.
    #[serde(default)]
    pub rehearse: String,
    /// Where the release's migrations run on a copy of the backup after a restore, to tell the
    /// app's lost writes from the migrations' own.
    #[serde(default)]
    pub apart: String,
}

impl DbNames {
    /// `{live}__restore_{sha7}` and `{live}__failed_{sha7}`, shortened (with a hash of the live
    /// name) to stay within 63 bytes and always different from the live name.
    pub fn new(live: &str, sha: &Sha) -> Result<DbNames> {
        check_live_db_name(live)?;
        let names = DbNames {
            live: live.to_string(),
            scratch: derived(live, &format!("__restore_{}", sha.short())),
            failed: derived(live, &format!("__failed_{}", sha.short())),
            rehearse: derived(live, &format!("__rehearse_{}", sha.short())),
            apart: derived(live, &format!("__apart_{}", sha.short())),
        };
        let all = [&names.live, &names.scratch, &names.failed, &names.rehearse, &names.apart];
        if all.iter().enumerate().any(|(i, a)| all[i + 1..].contains(a)) {
            bail!("database name {live:?}: its scratch and kept names would collide with it");
        }
        Ok(names)
    }

    /// The kept name when an earlier restore of the same deploy already used it.
    pub fn with_failed_suffix(mut self, sha: &Sha, at: DateTime<Utc>) -> DbNames {
        self.failed = derived(&self.live, &format!("__failed_{}_{}", sha.short(), at.format("%Y%m%d%H%M%S")));
        self
    }
}

/// `live + suffix`, with `live` cut (at a char boundary) and tagged with a short hash of the
/// whole name when the result would pass the identifier limit.
fn derived(live: &str, suffix: &str) -> String {
    if live.len() + suffix.len() <= MAX_IDENT {
        return format!("{live}{suffix}");
    }
    use sha2::{Digest, Sha256};
    let hash = hex::encode(&Sha256::digest(live.as_bytes())[..3]);
    let mut keep = MAX_IDENT - suffix.len() - hash.len() - 1;
    while !live.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}_{hash}{suffix}", &live[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha() -> Sha {
        Sha::parse("abc1234def").unwrap()
    }

    #[test]
    fn backup_names_by_kind_sha_time_and_a_nonce() {
        let at = DateTime::parse_from_rfc3339("2026-05-10T15:00:00Z").unwrap().with_timezone(&Utc);
        let n = BackupName::new(BackupKind::PreDeploy, &sha(), at);
        assert!(n.stem().starts_with("202605/20260510_150000_pre-deploy-abc1234-"), "{}", n.stem());
        assert_eq!(n.stem().len(), "202605/20260510_150000_pre-deploy-abc1234-".len() + 6);
        // Two in the same second are two names.
        assert_ne!(n, BackupName::new(BackupKind::PreDeploy, &sha(), at));
        for (format, codec, ext) in [
            (Format::Plain, Codec::Gzip, ".sql.gz"),
            (Format::Plain, Codec::Zstd, ".sql.zst"),
            (Format::Directory, Codec::Zstd, ".dir.tar.zst"),
        ] {
            let key = n.data_key(format, codec);
            assert_eq!(key, format!("{}{ext}", n.stem()));
            assert_eq!(BackupName::from_key(&key), n);
        }
        assert_eq!(BackupName::from_key(&n.manifest_key()), n);
        let replay = n.replay_key(at);
        assert_eq!(replay, format!("{}.lost-writes.20260510150000.sql", n.stem()));
        assert_eq!(BackupName::from_key(&replay), n);
        assert_eq!(BackupName::replay_time(&replay), Some("20260510150000"));
        assert_eq!(BackupName::replay_time(&format!("{}.lost-writes.sql", n.stem())), None);
        assert_eq!(BackupName::of_manifest_key(&n.manifest_key()), Some((BackupKind::PreDeploy, "abc1234")));
        let b = BackupName::new(BackupKind::Backup, &sha(), at);
        assert_eq!(BackupName::of_manifest_key(&b.manifest_key()), Some((BackupKind::Backup, "abc1234")));
        let p = BackupName::new(BackupKind::PointInTime, &sha(), at);
        assert_eq!(BackupName::of_manifest_key(&p.manifest_key()), Some((BackupKind::PointInTime, "abc1234")));
        // Names of older versions.
        let old = "202605/20260510_150000_pre-deploy-abc1234";
        assert_eq!(BackupName::sha7_of_manifest_key(&format!("{old}.manifest.json")), Some("abc1234"));
        assert_eq!(BackupName::from_key(&format!("{old}.lost-writes.sql")).stem(), old);
        assert_eq!(BackupName::from_key(&format!("{old}.sql.gz")).stem(), old);
        assert_eq!(BackupName::sha7_of_manifest_key("202605/x.manifest.json"), None);
    }

    #[test]
    fn database_names_stay_within_the_limit_and_apart_from_the_live_one() {
        let n = DbNames::new("station", &sha()).unwrap();
        assert_eq!((n.scratch.as_str(), n.failed.as_str()), ("station__restore_abc1234", "station__failed_abc1234"));
        for live in ["a".repeat(63), "b".repeat(47), "é".repeat(31)] {
            let n = DbNames::new(&live, &sha()).unwrap();
            for derived in [&n.scratch, &n.failed, &n.clone().with_failed_suffix(&sha(), Utc::now()).failed] {
                assert!(derived.len() <= 63, "{derived}");
                assert_ne!(derived, &live);
                assert!(derived.contains("abc1234"), "{derived}");
            }
        }
        for bad in ["", "a=b", "x\ny", " station", &"a".repeat(64), "postgresql://other-host/shop", "postgres:shop"] {
            assert!(DbNames::new(bad, &sha()).is_err(), "{bad:?}");
        }
    }
}
