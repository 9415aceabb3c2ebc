//! How a backup is laid out and compressed, named by its key's suffixes (`.sql.zst`,
//! `.dir.tar.gz`): a backup restores with the layout and codec it was taken with, whatever the
//! settings say today. The streams that do the work are in `backup`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `pg_dump --format=plain`, restored by `psql --single-transaction`.
    #[default]
    Plain,
    /// `pg_dump --format=directory -j N`, tarred; restored by `pg_restore -j N`.
    Directory,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Plain, Format::Directory];

    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Directory => "directory",
        }
    }

    /// The data key's suffix before the codec's.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Plain => ".sql",
            Format::Directory => ".dir.tar",
        }
    }

    /// The layout and codec a data key was written with.
    pub fn of_key(key: &str) -> Option<(Format, Codec)> {
        Format::ALL
            .into_iter()
            .flat_map(|f| Codec::ALL.map(|c| (f, c)))
            .find(|(f, c)| key.strip_suffix(c.ext()).is_some_and(|k| k.ends_with(f.ext())))
    }

    /// Every data key suffix (`.sql.zst`, …).
    pub fn suffixes() -> impl Iterator<Item = String> {
        Format::ALL.into_iter().flat_map(|f| Codec::ALL.map(move |c| format!("{}{}", f.ext(), c.ext())))
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// zstd: at level 1, 4.5× zlib-rs gzip -6's speed, and smaller (docs/PERFORMANCE.md).
    #[default]
    Zstd,
    /// gzip, for people who want `.sql.gz`.
    Gzip,
}

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::Zstd, Codec::Gzip];

    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        }
    }

    /// The data key's last suffix (after the format's: `.sql.zst`).
    pub fn ext(self) -> &'static str {
        match self {
            Codec::Zstd => ".zst",
            Codec::Gzip => ".gz",
        }
    }

    /// The codec a data key was written with.
    pub fn of_key(key: &str) -> Option<Codec> {
        Format::of_key(key).map(|(_, c)| c)
    }

    pub fn default_level(self) -> u32 {
        match self {
            // Measured on a 438 MiB dump: -1 is the fastest and, on that data, the smallest too.
            Codec::Zstd => 1,
            Codec::Gzip => 6,
        }
    }

    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Codec::Zstd => 1..=19,
            Codec::Gzip => 1..=9,
        }
    }

    /// The shell filter that compresses stdin to stdout on the target.
    pub fn compress_sh(self, level: u32) -> String {
        match self {
            // One thread: the target's other cores serve pg_dump (-T0 measured slower on 2 cores).
            Codec::Zstd => format!("zstd -q -c -{level}"),
            Codec::Gzip => format!("gzip -c -{level}"),
        }
    }

    /// The shell filter that decompresses stdin to stdout (the runbook's manual restore too).
    pub fn decompress_sh(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd -q -d -c",
            Codec::Gzip => "gzip -d -c",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A backup's codec and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compression {
    pub codec: Codec,
    /// None: the codec's default.
    pub level: Option<u32>,
}

impl Compression {
    pub fn level(&self) -> u32 {
        self.level.unwrap_or(self.codec.default_level())
    }

    pub fn parse(s: &str) -> Result<Compression, String> {
        let s = s.trim();
        let bad = || format!("{s:?}: expected zstd, gzip, zstd:LEVEL or gzip:LEVEL");
        if let Ok(n) = s.parse::<u32>() {
            return Ok(Compression { codec: Codec::Gzip, level: Some(n) });
        }
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l.trim().parse::<u32>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let codec = Codec::ALL.into_iter().find(|c| c.name() == name.trim()).ok_or_else(bad)?;
        Ok(Compression { codec, level })
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.codec, self.level())
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Compression { codec: Codec::Gzip, level: Some(n) }),
            Raw::S(s) => Compression::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// How a new backup is verified once stored (`backup.verify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// What the dump holds is checked as it passes to the compressor; what is read back is the
    /// stored bytes alone (length, SHA-256, each piece's). The full read-back when the dump never
    /// passes through deploy-guard.
    #[default]
    Stored,
    /// The stored object read back whole, decompressed and checked again.
    Full,
}
