use std::fmt;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// A git SHA (7 to 40 hex digits), kept lower-case. Names backups and scratch databases.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha(String);

impl Sha {
    pub fn parse(s: &str) -> Result<Sha> {
        let ok = (7..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            bail!("{s:?}: not a git SHA (7 to 40 hexadecimal digits)");
        }
        Ok(Sha(s.to_ascii_lowercase()))
    }

    /// The first 7 digits, as git shows them.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn starts_with(&self, p: &ShaPrefix) -> bool {
        self.0.starts_with(&p.0)
    }
}

impl TryFrom<String> for Sha {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Sha> {
        Sha::parse(&s)
    }
}

impl From<Sha> for String {
    fn from(s: Sha) -> String {
        s.0
    }
}

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The start of a SHA, for lookups (`rollback --sha abc1`): 4 to 40 hex digits, lower-case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShaPrefix(String);

impl ShaPrefix {
    pub fn parse(s: &str) -> Result<ShaPrefix> {
        let ok = (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            bail!("{s:?}: not a SHA prefix (4 to 40 hexadecimal digits)");
        }
        Ok(ShaPrefix(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShaPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 as the manifest stores it: 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shas_are_validated_and_lower_case() {
        let s = Sha::parse("ABC1234DEF").unwrap();
        assert_eq!((s.as_str(), s.short()), ("abc1234def", "abc1234"));
        for bad in ["abc123", "xyz1234", "", &"a".repeat(41), "abc1234;rm"] {
            assert!(Sha::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Sha>("\"nothex!\"").is_err());
        assert!(s.starts_with(&ShaPrefix::parse("AbC1").unwrap()));
        assert!(ShaPrefix::parse("abc").is_err());
    }
}
