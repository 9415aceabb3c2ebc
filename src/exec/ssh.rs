//! Commands on the target over SSH (russh): host key pinned before authentication, the private
//! key taken from the environment and never written anywhere, one connection for the whole run
//! (re-established if it drops; a dropped command is a failure, never retried here).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::local::Feed;
use super::{quote, Cmd, Executor, Exit, Tail};
use crate::config::Target;

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
    fn pins(&self, key: &PublicKey) -> bool {
        !matches!(self, Pin::Any) && self.accepts(key)
    }

    fn expected(&self) -> String {
        match self {
            Pin::Keys(keys) if keys.is_empty() => "no key for this host in target.known_hosts".into(),
            Pin::Keys(keys) => keys.iter().map(describe_key).collect::<Vec<_>>().join(", "),
            Pin::Fingerprints(f) => f.join(", "),
            Pin::Any => "any key".into(),
        }
    }

    fn accepts(&self, key: &PublicKey) -> bool {
        match self {
            Pin::Keys(keys) => keys.iter().any(|k| k.key_data() == key.key_data()),
            Pin::Fingerprints(f) => f.iter().any(|f| *f == key.fingerprint(HashAlg::Sha256).to_string()),
            Pin::Any => true,
        }
    }

    /// Host key algorithms to ask for, so a server with several keys shows the pinned one.
    fn algorithms(&self) -> Option<Vec<russh::keys::Algorithm>> {
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

fn describe_key(k: &PublicKey) -> String {
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
struct Client {
    pin: Pin,
    /// The other hop's pin (jump host ↔ target): a key it pins is refused here, so that neither
    /// host can stand in for the other.
    other: Option<(Pin, &'static str)>,
    offered: Arc<Mutex<Option<String>>>,
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

    /// Kills what the command run with `token` left running on the target ([`kill_script`]).
    /// Best effort: the connection may be the reason it ended (the kill is then logged as not done).
    async fn kill_all(&self, cmd: &Cmd, token: &str) {
        let kill = Cmd::new("kill what it started", kill_script(token)).timeout(Duration::from_secs(15));
        let mut out = Vec::new();
        let killed = Box::pin(self.run_as(&kill, &run_token(), &RunState::default(), None, &mut out)).await;
        match killed.map(|exit| (exit, String::from_utf8_lossy(&out).into_owned())) {
            Ok((exit, n)) if exit.success() => {
                let n = n.trim();
                if n != "0" {
                    tracing::info!("`{}` ended: {n} process(es) it started on the target killed", cmd.label);
                }
            }
            Ok((exit, _)) => tracing::warn!(
                "`{}` ended, but what it started on the target could not be killed ({}); it may still run",
                cmd.label,
                exit.describe()
            ),
            Err(e) => tracing::warn!(
                "`{}` ended, but what it started on the target could not be killed: {e:#}; it may still run",
                cmd.label
            ),
        }
    }
}

fn signal_number(s: &Sig) -> i32 {
    match s {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(_) => 0,
    }
}

/// The script with its environment as `export` lines (sshd refuses most env requests), run by
/// `sh` (as on a local target; it reads no startup files) started with [`RUN_VAR`] set to
/// `token` in its environment: `export` alone would not show in the shell's own
/// `/proc/PID/environ`. Only non-secret values travel in `Cmd::env`.
fn remote_script(cmd: &Cmd, token: &str) -> String {
    let mut s = String::new();
    for (k, v) in &cmd.env {
        s.push_str(&format!("export {k}={}; ", quote(v)));
    }
    s.push_str(&cmd.script);
    format!("{RUN_VAR}={token} exec sh -c {}", quote(&s))
}

/// Where a command run on the target got to.
#[derive(Default)]
struct RunState {
    /// The target took the command.
    started: AtomicBool,
    /// What it started was killed already (its input broke off).
    killed: AtomicBool,
}

/// Set for every command run on the target, its value unique to the command. sshd passes a
/// kill on to the command's shell alone: what the shell started (a migration tool, `docker
/// compose up` still pulling) would run on after a timeout, and finish after deploy-guard moved
/// on. Every process that inherited the value is found and killed instead.
const RUN_VAR: &str = "DEPLOY_GUARD_RUN";

/// A value of [`RUN_VAR`] no other command of any run shares.
fn run_token() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START
        .get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{start:x}-{n}", std::process::id())
}

/// Kills every process on the target whose environment holds `RUN_VAR=token`, in rounds for a
/// second: one may fork between two rounds, or not have started yet when the first looks;
/// prints how many it killed.
fn kill_script(token: &str) -> String {
    format!(
        "n=0; for i in 1 2 3 4 5; do \
           pids=$(grep -l -s -z -x -F {entry} /proc/[0-9]*/environ | sed -n 's#^/proc/\\([0-9]*\\)/environ$#\\1#p'); \
           if [ -n \"$pids\" ]; then kill -KILL $pids 2>/dev/null; n=$((n + $(echo $pids | wc -w))); fi; sleep 0.2; \
         done; echo $n",
        entry = quote(&format!("{RUN_VAR}={token}"))
    )
}

#[async_trait]
impl Executor for Ssh {
    async fn run(
        &self,
        cmd: &Cmd,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<Exit> {
        let token = run_token();
        let state = RunState::default();
        let result = self.run_as(cmd, &token, &state, stdin, stdout).await;
        // Timed out, or the connection dropped: nothing it started may run on.
        let failed = matches!(&result, Ok(e) if e.timed_out) || result.is_err();
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

impl Ssh {
    /// Runs `cmd` on a new channel with [`RUN_VAR`] set to `token`.
    async fn run_as(
        &self,
        cmd: &Cmd,
        token: &str,
        state: &RunState,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<Exit> {
        tracing::debug!(label = %cmd.label, script = %cmd.script, "run on {}", self.describe());
        let channel = self.channel().await?;
        channel.exec(true, remote_script(cmd, token)).await.with_context(|| format!("{}: exec failed", cmd.label))?;
        state.started.store(true, Relaxed);
        let (mut read, write) = channel.split();
        let feed = async {
            if let Some(src) = stdin {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match src.read(&mut buf).await {
                        Ok(n) => n,
                        Err(e) => {
                            // The input broke off: the command must not take what it got for the
                            // whole (psql would commit a truncated restore at EOF), nor wait for
                            // more forever. Kill it and all it started (sshd alone does not pass
                            // the KILL on), then close its stdin and the channel.
                            let _ = write.signal(Sig::KILL).await;
                            self.kill_all(cmd, token).await;
                            state.killed.store(true, Relaxed);
                            let _ = write.eof().await;
                            let _ = write.close().await;
                            return Err(Feed::Read(e));
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    write.data(&buf[..n]).await.map_err(|e| Feed::Write(std::io::Error::other(e)))?;
                }
            }
            write.eof().await.map_err(|e| Feed::Write(std::io::Error::other(e)))?;
            Ok::<(), Feed>(())
        };
        let drain = async {
            let mut tail = Tail::new(8 * 1024);
            let (mut code, mut signal) = (None, None);
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => stdout.write_all(&data).await.context("copying stdout")?,
                    ChannelMsg::ExtendedData { data, ext: 1 } => tail.push(&data),
                    ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status as i32),
                    ChannelMsg::ExitSignal { signal_name, .. } => signal = Some(signal_number(&signal_name)),
                    _ => {}
                }
            }
            stdout.flush().await.context("flushing stdout")?;
            if code.is_none() && signal.is_none() {
                bail!(
                    "the connection to {} dropped while `{}` ran: its outcome is unknown (it is not retried)",
                    self.describe(),
                    cmd.label
                );
            }
            Ok(Exit { code, signal, timed_out: false, stderr_tail: tail.text() })
        };
        let both = async {
            let (fed, exit) = tokio::join!(feed, drain);
            match fed {
                // Whatever the command did with part of its input, the run failed.
                Err(Feed::Read(e)) => {
                    Err(anyhow::Error::new(e).context(format!("{}: reading its input failed", cmd.label)))
                }
                // A command that exits without reading all its input is judged by its status.
                Err(Feed::Write(e)) => {
                    let exit = exit?;
                    if exit.success() {
                        return Err(
                            anyhow::Error::new(e).context(format!("{}: stdin could not be sent whole", cmd.label))
                        );
                    }
                    Ok(exit)
                }
                Ok(()) => exit,
            }
        };
        let t = cmd.deadline();
        match tokio::time::timeout(t, both).await {
            Ok(r) => r,
            Err(_) => {
                let _ = write.signal(Sig::KILL).await;
                let _ = write.close().await;
                Ok(Exit {
                    code: None,
                    signal: None,
                    timed_out: true,
                    stderr_tail: format!("{} did not finish within {}", cmd.label, humantime::format_duration(t)),
                })
            }
        }
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

    #[test]
    fn env_goes_into_the_script_quoted() {
        let cmd = Cmd::new("x", "psql").env("PGHOST", "a b").env("PGPORT", "5432");
        assert_eq!(
            remote_script(&cmd, "t-1"),
            r#"DEPLOY_GUARD_RUN=t-1 exec sh -c 'export PGHOST='\''a b'\''; export PGPORT=5432; psql'"#
        );
    }

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("ops@bastion:2200", "deploy").unwrap();
        assert_eq!((e.user.as_str(), e.host.as_str(), e.port), ("ops", "bastion", 2200));
        assert_eq!(Endpoint::parse("bastion", "deploy").unwrap().describe(), "deploy@bastion:22");
    }
}
