//! How a backup is compressed. The codec is named by the key's suffix (`.zst`, `.gz`),
//! so a backup restores with the codec it was taken with, whatever the setting says today.
//! Over SSH the dump is compressed on the target and a restore decompressed there, with the
//! codec's own command-line tool, when the target has it: the link carries compressed bytes.

use std::pin::Pin;

use anyhow::Result;
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder};
use async_compression::Level;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, BufReader};

use crate::exec::{self, Cmd, Executor};

pub type Reader<'a> = Pin<Box<dyn AsyncRead + Send + 'a>>;

const BUF: usize = 256 * 1024;

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
        super::Format::of_key(key).map(|(_, c)| c)
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

    pub fn encoder<'a>(self, plain: impl AsyncRead + Send + 'a, level: u32) -> Reader<'a> {
        self.encoder_with(plain, level, 0)
    }

    /// [`Self::encoder`] with `workers` compression threads beside the caller's (zstd only; 0:
    /// none). The output is one ordinary stream either way.
    pub fn encoder_with<'a>(self, plain: impl AsyncRead + Send + 'a, level: u32, workers: u32) -> Reader<'a> {
        use async_compression::zstd::CParameter;
        let input = BufReader::with_capacity(BUF, plain);
        let level = Level::Precise(level as i32);
        match self {
            Codec::Zstd if workers > 0 => {
                Box::pin(ZstdEncoder::with_quality_and_params(input, level, &[CParameter::nb_workers(workers)]))
            }
            Codec::Zstd => Box::pin(ZstdEncoder::with_quality(input, level)),
            Codec::Gzip => Box::pin(GzipEncoder::with_quality(input, level)),
        }
    }

    /// Decodes every frame or member, in order (a stream may hold several).
    pub fn decoder<'a>(self, packed: impl AsyncRead + Send + 'a) -> Reader<'a> {
        let input = BufReader::with_capacity(BUF, packed);
        match self {
            Codec::Zstd => {
                let mut d = ZstdDecoder::new(input);
                d.multiple_members(true);
                Box::pin(d)
            }
            Codec::Gzip => {
                let mut d = GzipDecoder::new(input);
                d.multiple_members(true);
                Box::pin(d)
            }
        }
    }

    /// Whether the codec's tool runs on the target (`check` shows it; a backup compresses there
    /// when it does, on this machine when it does not).
    pub async fn on_target(self, exec: &dyn Executor) -> Result<bool> {
        let probe =
            Cmd::new(format!("{} --version", self.name()), format!("{} --version >/dev/null 2>&1", self.name()));
        Ok(exec::capture(exec, &probe).await?.exit.success())
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn each_codec_round_trips_concatenated_frames() {
        for codec in Codec::ALL {
            let mut packed = Vec::new();
            for part in [&b"first\n"[..], b"second\n"] {
                codec.encoder(part, codec.default_level()).read_to_end(&mut packed).await.unwrap();
            }
            let mut plain = Vec::new();
            codec.decoder(&packed[..]).read_to_end(&mut plain).await.unwrap();
            assert_eq!(plain, b"first\nsecond\n", "{codec}");
            assert_eq!(Codec::of_key(&format!("a/b.sql{}", codec.ext())), Some(codec));
        }
        assert_eq!(Codec::of_key("a/b.sql"), None);
    }
}
