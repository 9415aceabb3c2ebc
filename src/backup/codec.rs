//! The codec's streams. Over SSH the dump is compressed on the target and a restore
//! decompressed there, with the codec's own command-line tool, when the target has it: the link
//! carries compressed bytes. Here, the same in this process when it does not.

use std::pin::Pin;

use anyhow::Result;
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder};
use async_compression::Level;
use tokio::io::{AsyncRead, BufReader};

use crate::exec::{self, Cmd, Executor};
use crate::model::Codec;

pub type Reader<'a> = Pin<Box<dyn AsyncRead + Send + 'a>>;

const BUF: usize = 256 * 1024;

pub fn encoder<'a>(codec: Codec, plain: impl AsyncRead + Send + 'a, level: u32) -> Reader<'a> {
    encoder_with(codec, plain, level, 0)
}

/// [`encoder`] with `workers` compression threads beside the caller's (zstd only; 0: none). The
/// output is one ordinary stream either way.
pub fn encoder_with<'a>(codec: Codec, plain: impl AsyncRead + Send + 'a, level: u32, workers: u32) -> Reader<'a> {
    use async_compression::zstd::CParameter;
    let input = BufReader::with_capacity(BUF, plain);
    let level = Level::Precise(level as i32);
    match codec {
        Codec::Zstd if workers > 0 => {
            Box::pin(ZstdEncoder::with_quality_and_params(input, level, &[CParameter::nb_workers(workers)]))
        }
        Codec::Zstd => Box::pin(ZstdEncoder::with_quality(input, level)),
        Codec::Gzip => Box::pin(GzipEncoder::with_quality(input, level)),
    }
}

/// Decodes every frame or member, in order (a stream may hold several).
pub fn decoder<'a>(codec: Codec, packed: impl AsyncRead + Send + 'a) -> Reader<'a> {
    let input = BufReader::with_capacity(BUF, packed);
    match codec {
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

/// Whether the codec's tool runs on the target (`check` shows it; a backup compresses there when
/// it does, on this machine when it does not).
pub async fn on_target(codec: Codec, exec: &dyn Executor) -> Result<bool> {
    let name = codec.name();
    let probe = Cmd::new(format!("{name} --version"), format!("{name} --version >/dev/null 2>&1"));
    Ok(exec::capture(exec, &probe).await?.exit.success())
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
                encoder(codec, part, codec.default_level()).read_to_end(&mut packed).await.unwrap();
            }
            let mut plain = Vec::new();
            decoder(codec, &packed[..]).read_to_end(&mut plain).await.unwrap();
            assert_eq!(plain, b"first\nsecond\n", "{codec}");
            assert_eq!(Codec::of_key(&format!("a/b.sql{}", codec.ext())), Some(codec));
        }
        assert_eq!(Codec::of_key("a/b.sql"), None);
    }
}
