//! Host-key pinning: what the key must be (known_hosts lines, hashed ones too, or SHA-256
//! fingerprints), and the russh handler that refuses any other before authentication — and a
//! key the other hop pins, so a bastion cannot stand in for the target.

use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use russh::client;
use russh::keys::{HashAlg, PublicKey};

use crate::config::Target;

/// What the host key must be.
#[derive(Clone, Debug)]
pub enum Pin {
    /// Keys from known_hosts lines matching the host.
    Keys(Vec<PublicKey>),
    /// `SHA256:…` fingerprints.
    Fingerprints(Vec<String>),
    /// `insecure_accept_any_host_key: true`.
    Any,
}

impl Pin {
    pub fn from_target(t: &Target, host: &str, port: u16) -> Result<Pin> {
        if let Some(fp) = &t.fingerprint {
            return Ok(Pin::Fingerprints(
                fp.split([',', ' ', '\n']).filter(|s| !s.is_empty()).map(str::to_string).collect(),
            ));
        }
        if let Some(kh) = &t.known_hosts {
            return Ok(Pin::Keys(known_hosts_keys(kh, host, port)?));
        }
        if t.insecure_accept_any_host_key {
            return Ok(Pin::Any);
        }
        bail!("target.known_hosts or target.fingerprint is required to pin the host key of {host}")
    }

    /// The jump host's pin: `target.jump_fingerprint`, else `target.jump_known_hosts`, else its
    /// own lines in `target.known_hosts`. `target.fingerprint` never pins a jump host.
    pub fn for_jump(t: &Target, host: &str, port: u16) -> Result<Pin> {
        if let Some(fp) = &t.jump_fingerprint {
            return Ok(Pin::Fingerprints(
                fp.split([',', ' ', '\n']).filter(|s| !s.is_empty()).map(str::to_string).collect(),
            ));
        }
        if let Some(kh) = t.jump_known_hosts.as_ref().or(t.known_hosts.as_ref()) {
            return Ok(Pin::Keys(known_hosts_keys(kh, host, port)?));
        }
        if t.insecure_accept_any_host_key {
            return Ok(Pin::Any);
        }
        bail!("target.jump_fingerprint or target.jump_known_hosts is required to pin the jump host {host}")
    }

    /// Accepts `key` by an actual pin (not by `Any`).
    pub(super) fn pins(&self, key: &PublicKey) -> bool {
        !matches!(self, Pin::Any) && self.accepts(key)
    }

    pub(super) fn expected(&self) -> String {
        match self {
            Pin::Keys(keys) if keys.is_empty() => "no key for this host in target.known_hosts".into(),
            Pin::Keys(keys) => keys.iter().map(describe_key).collect::<Vec<_>>().join(", "),
            Pin::Fingerprints(f) => f.join(", "),
            Pin::Any => "any key".into(),
        }
    }

    pub(super) fn accepts(&self, key: &PublicKey) -> bool {
        match self {
            Pin::Keys(keys) => keys.iter().any(|k| k.key_data() == key.key_data()),
            Pin::Fingerprints(f) => f.iter().any(|f| *f == key.fingerprint(HashAlg::Sha256).to_string()),
            Pin::Any => true,
        }
    }

    /// Host key algorithms to ask for, so a server with several keys shows the pinned one.
    pub(super) fn algorithms(&self) -> Option<Vec<russh::keys::Algorithm>> {
        match self {
            Pin::Keys(keys) if !keys.is_empty() => {
                let mut algs: Vec<_> = Vec::new();
                for k in keys {
                    let a = k.algorithm();
                    if matches!(a, russh::keys::Algorithm::Rsa { .. }) {
                        algs.push(russh::keys::Algorithm::Rsa { hash: Some(HashAlg::Sha512) });
                        algs.push(russh::keys::Algorithm::Rsa { hash: Some(HashAlg::Sha256) });
                    }
                    algs.push(a);
                }
                Some(algs)
            }
            _ => None,
        }
    }
}

pub(super) fn describe_key(k: &PublicKey) -> String {
    format!("{} ({})", k.fingerprint(HashAlg::Sha256), k.algorithm())
}

/// The keys OpenSSH known_hosts `text` lists for `host` (port 22: `host`, else `[host]:port`),
/// hashed entries included. `@revoked` / `@cert-authority` lines are not pins.
pub fn known_hosts_keys(text: &str, host: &str, port: u16) -> Result<Vec<PublicKey>> {
    let name = if port == 22 { host.to_string() } else { format!("[{host}]:{port}") };
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(hosts), Some(_alg), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("target.known_hosts line {}: expected `HOSTS KEYTYPE BASE64`", i + 1);
        };
        if hosts.split(',').any(|p| host_matches(p, &name)) {
            let key = russh::keys::parse_public_key_base64(b64)
                .with_context(|| format!("target.known_hosts line {}: not a public key", i + 1))?;
            keys.push(key);
        }
    }
    Ok(keys)
}

fn host_matches(pattern: &str, name: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("|1|") {
        use base64::Engine;
        use hmac::Mac;
        let Some((salt, hash)) = rest.split_once('|') else { return false };
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else { return false };
        let Ok(mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else { return false };
        return mac.chain_update(name.as_bytes()).verify_slice(&hash).is_ok();
    }
    pattern == name
}

/// russh callbacks: the host key check.
pub(super) struct Client {
    pub(super) pin: Pin,
    /// The other hop's pin (jump host ↔ target): a key it pins is refused here, so that neither
    /// host can stand in for the other.
    pub(super) other: Option<(Pin, &'static str)>,
    pub(super) offered: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKey) -> Result<bool, Self::Error> {
        if let Some((other, whose)) = &self.other {
            if other.pins(key) {
                *self.offered.lock().expect("offered") = Some(format!("{} — the {whose}'s key", describe_key(key)));
                return Ok(false);
            }
        }
        *self.offered.lock().expect("offered") = Some(describe_key(key));
        Ok(self.pin.accepts(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn known_hosts_match_by_name_port_and_hash() {
        let text = format!(
            "# comment\nvps.example.com,10.0.0.1 ssh-ed25519 {ED}\n[vps.example.com]:2222 ssh-ed25519 {ED}\n@revoked * ssh-ed25519 {ED}\n"
        );
        assert_eq!(known_hosts_keys(&text, "vps.example.com", 22).unwrap().len(), 1);
        assert_eq!(known_hosts_keys(&text, "10.0.0.1", 22).unwrap().len(), 1);
        assert_eq!(known_hosts_keys(&text, "vps.example.com", 2222).unwrap().len(), 1);
        assert!(known_hosts_keys(&text, "other", 22).unwrap().is_empty());
        // `ssh-keygen -H` form of "vps.example.com", salt and hash in base64.
        use base64::Engine;
        use hmac::Mac;
        let salt = [7u8; 20];
        let mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap().chain_update(b"vps.example.com");
        let b64 = base64::engine::general_purpose::STANDARD;
        let hashed = format!("|1|{}|{} ssh-ed25519 {ED}\n", b64.encode(salt), b64.encode(mac.finalize().into_bytes()));
        assert_eq!(known_hosts_keys(&hashed, "vps.example.com", 22).unwrap().len(), 1);
        assert!(known_hosts_keys(&hashed, "vps.example.org", 22).unwrap().is_empty());
        assert!(known_hosts_keys("vps ssh-ed25519", "vps", 22).is_err());
    }
}
