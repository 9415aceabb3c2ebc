//! S3's own SHA-256 checksums (`backup.checksums`): every part is sent with its
//! `x-amz-checksum-sha256`, which S3 checks as it receives the part (refusing bytes that differ)
//! and keeps. The stored object's checksum — for a multipart upload the checksum of its parts'
//! checksums, `…-N` — is then asked for (`ChecksumMode`) and compared with what was sent, in
//! place of reading the object back across the network.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// What one upload sent, as S3 will report it.
#[derive(Clone, Debug)]
pub(super) struct Sent {
    pub size: u64,
    /// The whole object's, in hex (as manifests hold it).
    pub sha256: String,
    /// `ChecksumSHA256` as S3 reports it: base64, and `-N` after a multipart upload of N parts.
    pub checksum: String,
}

/// An upload's checksums, summed part by part as the parts are sent.
#[derive(Default)]
pub(super) struct Sums {
    whole: Sha256,
    parts: Vec<[u8; 32]>,
    size: u64,
}

impl Sums {
    /// Takes the next part; returns its `x-amz-checksum-sha256`.
    pub fn part(&mut self, bytes: &[u8]) -> String {
        self.whole.update(bytes);
        self.size += bytes.len() as u64;
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        self.parts.push(digest);
        STANDARD.encode(digest)
    }

    /// The upload as sent: one PUT, or a multipart upload of the parts taken.
    pub fn sent(self, multipart: bool) -> Sent {
        let checksum = if multipart {
            let mut of_parts = Sha256::new();
            for p in &self.parts {
                of_parts.update(p);
            }
            format!("{}-{}", STANDARD.encode(of_parts.finalize()), self.parts.len())
        } else {
            STANDARD.encode(self.parts.first().copied().unwrap_or_else(|| Sha256::digest(b"").into()))
        };
        Sent { size: self.size, sha256: hex::encode(self.whole.finalize()), checksum }
    }
}

/// Whether S3's checksum is the one sent: the same digest, and the same part count where S3
/// gives one (some servers leave the `-N` out).
pub(super) fn same(theirs: &str, sent: &str) -> bool {
    let ((theirs, their_parts), (sent, sent_parts)) = (split(theirs), split(sent));
    theirs == sent && (their_parts.is_none() || their_parts == sent_parts)
}

/// A checksum and its part count (base64 has no `-`: what follows one is the count).
fn split(c: &str) -> (&str, Option<&str>) {
    match c.rsplit_once('-') {
        Some((digest, n)) if !n.is_empty() && n.bytes().all(|d| d.is_ascii_digit()) => (digest, Some(n)),
        _ => (c, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_put_is_its_sha256_and_a_multipart_upload_the_sha256_of_its_parts() {
        let mut one = Sums::default();
        let header = one.part(b"abc");
        let sent = one.sent(false);
        // SHA-256("abc"), the FIPS 180-2 example, in base64 and in hex.
        assert_eq!(header, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        assert_eq!((sent.checksum.as_str(), sent.size), (header.as_str(), 3));
        assert_eq!(sent.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

        let mut two = Sums::default();
        two.part(b"ab");
        two.part(b"c");
        let sent = two.sent(true);
        assert_eq!(sent.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let mut parts = Sha256::new();
        parts.update(Sha256::digest(b"ab"));
        parts.update(Sha256::digest(b"c"));
        assert_eq!(sent.checksum, format!("{}-2", STANDARD.encode(parts.finalize())));
    }

    #[test]
    fn the_part_count_is_compared_only_where_s3_gives_one() {
        assert!(same("q83vEjRWeJA=-3", "q83vEjRWeJA=-3"));
        assert!(same("q83vEjRWeJA=", "q83vEjRWeJA=-3"));
        assert!(!same("q83vEjRWeJA=-2", "q83vEjRWeJA=-3"));
        assert!(!same("AAAAEjRWeJA=-3", "q83vEjRWeJA=-3"));
        assert!(!same("q83vEjRWeJA=-3", "q83vEjRWeJA="));
    }
}
