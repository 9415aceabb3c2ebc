//! Manifests signed with `DEPLOY_GUARD_MANIFEST_KEY` (HMAC-SHA256): a store anyone can write to
//! can then not forge the record a restore trusts.

use anyhow::{bail, Result};

/// Field holding the manifest's HMAC.
pub(super) const SIGNATURE: &str = "signature";
/// The environment variable holding the manifest signing key.
pub const MANIFEST_KEY_VAR: &str = "DEPLOY_GUARD_MANIFEST_KEY";

/// Manifests are signed (a usable `DEPLOY_GUARD_MANIFEST_KEY` is set).
pub fn signing_key_set() -> bool {
    signing_key().is_ok_and(|k| k.is_some())
}

/// The signing key from `DEPLOY_GUARD_MANIFEST_KEY`, when set.
pub(super) fn signing_key() -> Result<Option<Vec<u8>>> {
    match std::env::var(MANIFEST_KEY_VAR) {
        Ok(k) if k.len() >= 16 => Ok(Some(k.into_bytes())),
        Ok(k) if k.is_empty() => Ok(None),
        Ok(_) => bail!("{MANIFEST_KEY_VAR} is too short to be a key: use 32 random bytes (openssl rand -hex 32)"),
        Err(_) => Ok(None),
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub(super) fn sign(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    format!("hmac-sha256:{}", hex::encode(mac.chain_update(body).finalize().into_bytes()))
}

pub(super) fn verify_signature(key: &[u8], body: &[u8], signature: &str) -> bool {
    use hmac::Mac;
    let Some(Ok(tag)) = signature.strip_prefix("hmac-sha256:").map(hex::decode) else {
        return false;
    };
    let mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    // Constant time.
    mac.chain_update(body).verify_slice(&tag).is_ok()
}

/// Says once per run that manifests are read without a signature check.
pub(super) fn warn_unsigned() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "backup manifests are unsigned: anyone who can write to the backup store can forge one. Set {MANIFEST_KEY_VAR} (a secret, e.g. `openssl rand -hex 32`) to sign them and refuse forgeries"
        )
    });
}
