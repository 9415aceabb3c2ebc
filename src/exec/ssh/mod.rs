//! Commands on the target over SSH (russh): host key pinned before authentication, the private
//! key taken from the environment and never written anywhere, one connection for the whole run
//! (re-established if it drops; a dropped command is a failure, never retried here).

use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Cmd, Executor, Exit};
use crate::config::Target;

mod pin;
mod remote;

use pin::Client;
pub use pin::{known_hosts_keys, Pin};
use remote::{run_token, RunState};

/// The secrets an SSH target needs, read from the environment by the caller.
pub struct Credentials {
    pub key: String,
    pub passphrase: Option<String>,
}

impl Credentials {
    pub fn from_env() -> Result<Credentials> {
        let key = std::env::var("DEPLOY_GUARD_SSH_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .context("DEPLOY_GUARD_SSH_KEY is not set: put the private key's text there (in Actions, from a secret)")?;
        Ok(Credentials {
            key,
            passphrase: std::env::var("DEPLOY_GUARD_SSH_KEY_PASSPHRASE").ok().filter(|p| !p.is_empty()),
        })
    }
}

/// Where to connect and as whom.
#[derive(Clone, Debug)]
struct Endpoint {
    host: String,
    port: u16,
    user: String,
}

impl Endpoint {
    fn parse(spec: &str, default_user: &str) -> Result<Endpoint> {
        let (user, hostport) = match spec.rsplit_once('@') {
            Some((u, h)) => (u.to_string(), h),
            None => (default_user.to_string(), spec),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().with_context(|| format!("target.jump: port {p:?}"))?),
            None => (hostport.to_string(), 22),
        };
        Ok(Endpoint { host, port, user })
    }

    fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// A connection to the target, and to the jump host carrying it (kept alive with it).
type Conn = (Handle<Client>, Option<Handle<Client>>);

pub struct Ssh {
    target: Target,
    endpoint: Endpoint,
    jump: Option<Endpoint>,
    key: Arc<PrivateKey>,
    /// The live connection (and the jump host's, kept alive with it).
    conn: tokio::sync::Mutex<Option<Conn>>,
}

fn client_config(pin: &Pin) -> Arc<client::Config> {
    let mut preferred = russh::Preferred::default();
    if let Some(algs) = pin.algorithms() {
        preferred.key = Cow::Owned(algs);
    }
    Arc::new(client::Config {
        // Throughput: the defaults (2 MiB window) cap a dump stream well below the link.
        window_size: 32 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        nodelay: true,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        inactivity_timeout: None,
        preferred,
        ..Default::default()
    })
}

impl Ssh {
    /// Connects, checks the host key, authenticates. Nothing runs on a host whose key is not
    /// the pinned one.
    pub async fn connect(target: &Target, creds: &Credentials) -> Result<Ssh> {
        let host = target.host.clone().context("target.host is not set")?;
        let user = target.user.clone().context("target.user is not set")?;
        let key = russh::keys::decode_secret_key(&creds.key, creds.passphrase.as_deref()).map_err(|e| {
            anyhow::anyhow!(
                "DEPLOY_GUARD_SSH_KEY is not a usable private key ({e}){}",
                if creds.passphrase.is_none() {
                    "; if it is encrypted, set DEPLOY_GUARD_SSH_KEY_PASSPHRASE"
                } else {
                    ""
                }
            )
        })?;
        if target.insecure_accept_any_host_key && target.known_hosts.is_none() && target.fingerprint.is_none() {
            tracing::warn!(
                "target.insecure_accept_any_host_key is true: the host key of {host} is NOT checked; anyone on the \
                 path can impersonate it. Pin it with target.known_hosts (ssh-keyscan {host}, verified out of band)."
            );
        }
        let jump = target.jump.as_deref().map(|j| Endpoint::parse(j, &user)).transpose()?;
        let ssh = Ssh {
            target: target.clone(),
            endpoint: Endpoint { host, port: target.port, user },
            jump,
            key: Arc::new(key),
            conn: tokio::sync::Mutex::new(None),
        };
        let c = ssh.open().await?;
        *ssh.conn.lock().await = Some(c);
        Ok(ssh)
    }

    async fn open(&self) -> Result<Conn> {
        let t = self.target.connect_timeout;
        tokio::time::timeout(t, self.open_inner()).await.with_context(|| {
            format!("connecting to {} timed out after {}", self.describe(), humantime::format_duration(t))
        })?
    }

    async fn open_inner(&self) -> Result<Conn> {
        match &self.jump {
            None => {
                let stream = tokio::net::TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
                    .await
                    .with_context(|| format!("cannot reach {}", self.describe()))?;
                let pin = Pin::from_target(&self.target, &self.endpoint.host, self.endpoint.port)?;
                Ok((self.handshake(&self.endpoint, stream, pin, None).await?, None))
            }
            Some(jump) => {
                let stream = tokio::net::TcpStream::connect((jump.host.as_str(), jump.port))
                    .await
                    .with_context(|| format!("cannot reach the jump host {}", jump.describe()))?;
                let jump_pin = Pin::for_jump(&self.target, &jump.host, jump.port)?;
                let target_pin = Pin::from_target(&self.target, &self.endpoint.host, self.endpoint.port)?;
                let jh = self.handshake(jump, stream, jump_pin.clone(), Some((target_pin.clone(), "target"))).await?;
                let channel = jh
                    .channel_open_direct_tcpip(self.endpoint.host.clone(), self.endpoint.port as u32, "127.0.0.1", 0)
                    .await
                    .with_context(|| {
                        format!("the jump host {} would not forward to {}", jump.describe(), self.describe())
                    })?;
                let h = self
                    .handshake(&self.endpoint, channel.into_stream(), target_pin, Some((jump_pin, "jump host")))
                    .await?;
                Ok((h, Some(jh)))
            }
        }
    }

    async fn handshake<S>(
        &self,
        ep: &Endpoint,
        stream: S,
        pin: Pin,
        other: Option<(Pin, &'static str)>,
    ) -> Result<Handle<Client>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let offered = Arc::new(Mutex::new(None));
        let client = Client { pin: pin.clone(), other, offered: offered.clone() };
        let mut handle = match client::connect_stream(client_config(&pin), stream, client).await {
            Ok(h) => h,
            Err(e) => {
                let offered = offered.lock().expect("offered").clone();
                return Err(match (e, offered) {
                    (russh::Error::UnknownKey, Some(offered)) => anyhow::anyhow!(
                        "host key of {} is not the pinned one: it offered {offered}, expected {}. Nothing was run. \
                         If the host was rebuilt, check its new key out of band and update target.known_hosts",
                        ep.describe(),
                        pin.expected()
                    ),
                    (russh::Error::NoCommonAlgo { .. }, _) => anyhow::anyhow!(
                        "{} offers no host key of the pinned type ({}). Nothing was run",
                        ep.describe(),
                        pin.expected()
                    ),
                    (e, _) => anyhow::Error::new(e).context(format!("SSH handshake with {} failed", ep.describe())),
                });
            }
        };
        let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
        let auth = handle
            .authenticate_publickey(ep.user.clone(), PrivateKeyWithHashAlg::new(self.key.clone(), hash))
            .await
            .with_context(|| format!("authenticating to {}", ep.describe()))?;
        if !auth.success() {
            bail!(
                "{} refused the key in DEPLOY_GUARD_SSH_KEY ({}): is its public key in ~{}/.ssh/authorized_keys?",
                ep.describe(),
                self.key.public_key().fingerprint(HashAlg::Sha256),
                ep.user
            );
        }
        Ok(handle)
    }

    /// A session channel on the live connection, reconnecting if it dropped.
    async fn channel(&self) -> Result<russh::Channel<client::Msg>> {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_none_or(|(h, _)| h.is_closed()) {
            tracing::warn!("connection to {} was lost; reconnecting", self.describe());
            *conn = Some(self.open().await?);
        }
        let (h, _) = conn.as_ref().expect("connected");
        h.channel_open_session().await.with_context(|| format!("cannot open a channel on {}", self.describe()))
    }
}

#[async_trait]
impl Executor for Ssh {
    async fn run(
        &self,
        cmd: &Cmd,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<Exit> {
        if let Some(why) = super::cancel::stopping().filter(|_| !cmd.lasts_the_run) {
            return Ok(Exit::stopped(why));
        }
        let token = run_token();
        let state = RunState::default();
        let result = self.run_as(cmd, &token, &state, stdin, stdout).await;
        // Timed out, or the connection dropped: nothing it started may run on.
        let failed = matches!(&result, Ok(e) if e.timed_out || e.stopped.is_some()) || result.is_err();
        if failed && state.started.load(Relaxed) && !state.killed.load(Relaxed) {
            self.kill_all(cmd, &token).await;
        }
        result
    }

    fn remote(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.endpoint.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("ops@bastion:2200", "deploy").unwrap();
        assert_eq!((e.user.as_str(), e.host.as_str(), e.port), ("ops", "bastion", 2200));
        assert_eq!(Endpoint::parse("bastion", "deploy").unwrap().describe(), "deploy@bastion:22");
    }
}
