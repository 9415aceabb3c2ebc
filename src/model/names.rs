//! Every name deploy-guard derives: a backup's keys, and the scratch and kept databases of a
//! restore. Said once here; the driver, the plan, the runbook and the next commands use these.

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Sha;
use super::{Codec, Format};

const MANIFEST_SUFFIX: &str = ".manifest.json";
const REPLAY_SUFFIX: &str = ".lost-writes.sql";

/// A backup's name: `{yyyymm}/{yyyymmdd}_{hhmmss}_pre-deploy-{sha7}`, with the data beside its
/// manifest (`….sql.zst`, `….sql.gz`, `….dir.tar.zst`, `….dir.tar.gz`; `….manifest.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupName {
    stem: String,
}

impl BackupName {
    pub fn new(sha: &Sha, at: DateTime<Utc>) -> BackupName {
        BackupName { stem: format!("{}/{}_pre-deploy-{}", at.format("%Y%m"), at.format("%Y%m%d_%H%M%S"), sha.short()) }
    }

    /// The name of a data or manifest key (or a bare stem).
    pub fn from_key(key: &str) -> BackupName {
        let data: Vec<String> = Format::suffixes().collect();
        let others = [MANIFEST_SUFFIX, REPLAY_SUFFIX];
        let stem = data.iter().map(String::as_str).chain(others).find_map(|s| key.strip_suffix(s)).unwrap_or(key);
        BackupName { stem: stem.to_string() }
    }

    pub fn is_manifest_key(key: &str) -> bool {
        key.ends_with(MANIFEST_SUFFIX)
    }

    /// The short SHA a manifest key is named by, if it is one.
    pub fn sha7_of_manifest_key(key: &str) -> Option<&str> {
        key.strip_suffix(MANIFEST_SUFFIX)?.rsplit("pre-deploy-").next()
    }

    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// The data key of a backup in `format`, compressed with `codec`.
    pub fn data_key(&self, format: Format, codec: Codec) -> String {
        format!("{}{}{}", self.stem, format.ext(), codec.ext())
    }

    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.stem)
    }

    /// The replay file of the writes a restore of this backup lost.
    pub fn replay_key(&self) -> String {
        format!("{}{REPLAY_SUFFIX}", self.stem)
    }
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
        };
        let all = [&names.live, &names.scratch, &names.failed, &names.rehearse];
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
    fn backup_names_by_sha_and_time() {
        let at = DateTime::parse_from_rfc3339("2026-05-10T15:00:00Z").unwrap().with_timezone(&Utc);
        let n = BackupName::new(&sha(), at);
        assert_eq!(n.stem(), "202605/20260510_150000_pre-deploy-abc1234");
        assert_eq!(n.data_key(Format::Plain, Codec::Gzip), "202605/20260510_150000_pre-deploy-abc1234.sql.gz");
        assert_eq!(n.data_key(Format::Plain, Codec::Zstd), "202605/20260510_150000_pre-deploy-abc1234.sql.zst");
        assert_eq!(n.manifest_key(), "202605/20260510_150000_pre-deploy-abc1234.manifest.json");
        assert_eq!(BackupName::from_key(&n.manifest_key()), n);
        assert_eq!(BackupName::from_key(&n.data_key(Format::Plain, Codec::Gzip)), n);
        assert_eq!(BackupName::from_key(&n.data_key(Format::Plain, Codec::Zstd)), n);
        let dir = n.data_key(Format::Directory, Codec::Zstd);
        assert_eq!(dir, "202605/20260510_150000_pre-deploy-abc1234.dir.tar.zst");
        assert_eq!(BackupName::from_key(&dir), n);
        assert_eq!(BackupName::sha7_of_manifest_key(&n.manifest_key()), Some("abc1234"));
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
        for bad in ["", "a=b", "x\ny", " station", &"a".repeat(64)] {
            assert!(DbNames::new(bad, &sha()).is_err(), "{bad:?}");
        }
    }
}
