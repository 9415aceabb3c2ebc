//! The SSH executor against a real OpenSSH server on loopback.

use std::pin::Pin;
use std::task::{Context, Poll};

use deploy_guard::exec::ssh::Ssh;
use deploy_guard::exec::{self, Cmd, Executor};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite};

use crate::common;
use common::{Sshd, SshdExt};

async fn connect(sshd: &Sshd) -> Ssh {
    Ssh::connect(&sshd.target(), &sshd.credentials()).await.unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test]
async fn runs_commands_with_output_exit_codes_signals_and_stdin() {
    let sshd = Sshd::start().unwrap();
    let ssh = connect(&sshd).await;
    let out = exec::capture(&ssh, &Cmd::new("t", "echo hello; echo oops >&2; exit 3")).await.unwrap();
    assert_eq!(out.stdout, "hello\n");
    assert_eq!((out.exit.code, out.exit.signal), (Some(3), None));
    assert_eq!(out.exit.stderr_tail, "oops\n");
    let killed = exec::capture(&ssh, &Cmd::new("t", "kill -9 $$")).await.unwrap();
    assert_eq!(killed.exit.signal, Some(9), "{killed:?}");
    assert!(!killed.exit.success());
    let echoed = exec::capture_with_input(&ssh, &Cmd::new("t", "tr a-z A-Z"), b"stdin works").await.unwrap();
    assert_eq!(echoed.stdout, "STDIN WORKS");
    let env = exec::capture(&ssh, &Cmd::new("t", "printf %s \"$PGHOST\"").env("PGHOST", "db host")).await.unwrap();
    assert_eq!(env.stdout, "db host");
    let slow = exec::capture(&ssh, &Cmd::new("slow", "sleep 30").timeout(std::time::Duration::from_millis(300))).await;
    assert!(slow.unwrap().exit.timed_out);
    // What a timed-out command started dies with it (sshd passes a kill on to the shell alone):
    // its shell, a background job, and the command the shell was waiting on. (Its stderr goes
    // elsewhere, so that a shell left alive does not die of writing to the closed channel.)
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late");
    let script = format!("exec 2>/dev/null; (sleep 2; touch {0}) & sleep 2; touch {0}", late.display());
    let slow = exec::capture(&ssh, &Cmd::new("slow", script).timeout(std::time::Duration::from_millis(300))).await;
    assert!(slow.unwrap().exit.timed_out);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(!late.exists(), "a process the timed-out command started ran on after it");
    // The one connection is reused for everything above, and still works.
    assert_eq!(exec::run_ok(&ssh, &Cmd::new("t", "echo again")).await.unwrap(), "again\n");
}

/// Hashes what is written to it.
#[derive(Default)]
struct HashSink {
    sha: Sha256,
    n: u64,
}

impl AsyncWrite for HashSink {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.sha.update(buf);
        self.n += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const BIG: u64 = 256 * 1024 * 1024;

#[tokio::test]
async fn streams_256_mib_each_way_intact() {
    let sshd = Sshd::start().unwrap();
    let ssh = connect(&sshd).await;
    let mut expected = HashSink::default();
    tokio::io::copy(&mut tokio::io::repeat(b'x').take(BIG), &mut expected).await.unwrap();
    let expected = hex::encode(expected.sha.finalize());

    let mut up = tokio::io::repeat(b'x').take(BIG);
    let mut out = Vec::new();
    let exit = ssh.run(&Cmd::new("upload", "sha256sum"), Some(&mut up), &mut out).await.unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(String::from_utf8(out).unwrap().split_whitespace().next().unwrap(), expected);

    let mut down = HashSink::default();
    let exit =
        ssh.run(&Cmd::new("download", format!("head -c {BIG} /dev/zero | tr '\\0' x")), None, &mut down).await.unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!((down.n, hex::encode(down.sha.finalize())), (BIG, expected));
}

fn marker(sshd: &Sshd) -> std::path::PathBuf {
    sshd.dir.path().join("marker")
}

/// Connecting with `target` must be refused with `message`, and nothing may run.
async fn refused(
    sshd: &Sshd,
    target: deploy_guard::config::Target,
    creds: deploy_guard::exec::ssh::Credentials,
    message: &str,
) {
    match Ssh::connect(&target, &creds).await {
        Ok(ssh) => {
            let _ = exec::capture(&ssh, &Cmd::new("marker", format!("touch {}", marker(sshd).display()))).await;
            panic!("connected; expected {message:?}");
        }
        Err(e) => {
            let e = format!("{e:#}");
            assert!(e.contains(message), "expected {message:?} in {e}");
        }
    }
    assert!(!marker(sshd).exists(), "a command ran");
}

#[tokio::test]
async fn host_keys_are_pinned() {
    let sshd = Sshd::start().unwrap();
    let other = common::tempdir();
    let keygen = |kind: &str, name: &str| {
        let path = other.path().join(name);
        assert!(std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(&path)
            .status()
            .unwrap()
            .success());
        let pubkey = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let parts: Vec<&str> = pubkey.split_whitespace().collect();
        format!("{} {}", parts[0], parts[1])
    };
    // A different key of the same type.
    let mut t = sshd.target();
    t.known_hosts = Some(format!("[127.0.0.1]:{} {}", sshd.port, keygen("ed25519", "wrong")));
    refused(&sshd, t, sshd.credentials(), "is not the pinned one: it offered SHA256:").await;
    // No entry for this host at all.
    let mut t = sshd.target();
    t.known_hosts = Some(sshd.known_hosts().replace("[127.0.0.1]", "[10.9.9.9]"));
    refused(&sshd, t, sshd.credentials(), "no key for this host in target.known_hosts").await;
    // A key of another type than the server has.
    let mut t = sshd.target();
    t.known_hosts = Some(format!("[127.0.0.1]:{} {}", sshd.port, keygen("ecdsa", "ecdsa")));
    refused(&sshd, t, sshd.credentials(), "offers no host key of the pinned type").await;
    // A wrong fingerprint.
    let mut t = sshd.target();
    t.known_hosts = None;
    t.fingerprint = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    refused(&sshd, t, sshd.credentials(), "is not the pinned one").await;
    // The right fingerprint works.
    let fp = String::from_utf8(
        std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(sshd.dir.path().join("host_ed25519.pub"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut t = sshd.target();
    t.known_hosts = None;
    t.fingerprint = Some(fp.split_whitespace().nth(1).unwrap().to_string());
    Ssh::connect(&t, &sshd.credentials()).await.unwrap();
}

#[tokio::test]
async fn a_wrong_client_key_is_a_clear_auth_error() {
    let sshd = Sshd::start().unwrap();
    let dir = common::tempdir();
    let key = dir.path().join("stranger");
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let creds = deploy_guard::exec::ssh::Credentials { key: std::fs::read_to_string(&key).unwrap(), passphrase: None };
    refused(&sshd, sshd.target(), creds, "refused the key in DEPLOY_GUARD_SSH_KEY").await;
    let garbage = deploy_guard::exec::ssh::Credentials { key: "not a key".into(), passphrase: None };
    refused(&sshd, sshd.target(), garbage, "DEPLOY_GUARD_SSH_KEY is not a usable private key").await;
}

#[tokio::test]
async fn an_encrypted_key_needs_its_passphrase() {
    let sshd = Sshd::start().unwrap();
    let key = sshd.dir.path().join("client");
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "s3cret", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let text = std::fs::read_to_string(&key).unwrap();
    let without = deploy_guard::exec::ssh::Credentials { key: text.clone(), passphrase: None };
    refused(&sshd, sshd.target(), without, "set DEPLOY_GUARD_SSH_KEY_PASSPHRASE").await;
    let with = deploy_guard::exec::ssh::Credentials { key: text, passphrase: Some("s3cret".into()) };
    Ssh::connect(&sshd.target(), &with).await.unwrap();
}

#[tokio::test]
async fn hostile_values_pass_literally() {
    let sshd = Sshd::start().unwrap();
    let ssh = connect(&sshd).await;
    let m = marker(&sshd).display().to_string();
    for hostile in [
        format!("v1; touch {m}"),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("'; touch {m}; '"),
        format!("\"; touch {m}; \""),
        format!("v1\ntouch {m}"),
    ] {
        let out =
            exec::capture(&ssh, &Cmd::new("echo", exec::fill("printf %s {tag}", &[("tag", &hostile)]))).await.unwrap();
        assert_eq!(out.stdout, hostile);
    }
    assert!(!marker(&sshd).exists(), "a hostile value ran");
}

#[tokio::test]
async fn a_dropped_connection_is_a_failure_never_a_success() {
    let mut sshd = Sshd::start().unwrap();
    let ssh = connect(&sshd).await;
    // Read a little of an endless stream, then kill the server mid-stream.
    struct KillAfter<'a> {
        sshd: &'a mut Sshd,
        n: usize,
    }
    impl AsyncWrite for KillAfter<'_> {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            self.n += buf.len();
            if self.n > 4 * 1024 * 1024 && self.n - buf.len() <= 4 * 1024 * 1024 {
                self.sshd.kill();
            }
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    let mut sink = KillAfter { sshd: &mut sshd, n: 0 };
    let r = ssh.run(&Cmd::new("dump", "yes deploy-guard"), None, &mut sink).await;
    let e = format!("{:#}", r.expect_err("a dropped stream must not end well"));
    assert!(e.contains("dropped") || e.contains("outcome is unknown"), "{e}");
    // The next command cannot silently succeed either.
    let again = exec::capture(&ssh, &Cmd::new("next", "true")).await;
    assert!(again.is_err() || !again.unwrap().exit.success());
}

#[tokio::test]
async fn reaches_the_target_through_a_jump_host() {
    let jump = Sshd::start().unwrap();
    let target = Sshd::start().unwrap();
    // One key for both hops, as with a bastion: authorize the jump's client key on the target.
    let key = std::fs::read_to_string(jump.dir.path().join("client.pub")).unwrap();
    std::fs::write(target.dir.path().join("authorized_keys"), key).unwrap();
    let mut t = target.target();
    t.jump = Some(format!("{}@127.0.0.1:{}", jump.user, jump.port));
    t.known_hosts = Some(format!("{}\n{}\n", jump.known_hosts(), target.known_hosts()));
    let ssh = Ssh::connect(&t, &jump.credentials()).await.unwrap_or_else(|e| panic!("{e:#}"));
    let out = exec::run_ok(&ssh, &Cmd::new("t", "echo through")).await.unwrap();
    assert_eq!(out, "through\n");
    // The jump host's key is pinned too.
    t.known_hosts = Some(format!("{}\n", target.known_hosts()));
    let e = format!("{:#}", Ssh::connect(&t, &jump.credentials()).await.err().expect("unpinned jump host accepted"));
    assert!(e.contains("no key for this host"), "{e}");
}

#[tokio::test]
async fn a_host_that_never_answers_times_out() {
    // Accepts TCP, never speaks SSH.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let sshd = Sshd::start().unwrap();
    let mut t = sshd.target();
    t.port = port;
    t.known_hosts = Some(sshd.known_hosts().replace(&sshd.port.to_string(), &port.to_string()));
    t.connect_timeout = std::time::Duration::from_millis(500);
    let e = format!("{:#}", Ssh::connect(&t, &sshd.credentials()).await.err().expect("connected to a mute host"));
    assert!(e.contains("timed out after 500ms"), "{e}");
}

#[tokio::test]
async fn rsa_and_ecdsa_client_keys_work_too() {
    let sshd = Sshd::start().unwrap();
    for kind in ["rsa", "ecdsa"] {
        let key = sshd.dir.path().join(format!("client_{kind}"));
        assert!(std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success());
        std::fs::write(sshd.dir.path().join("authorized_keys"), std::fs::read(key.with_extension("pub")).unwrap())
            .unwrap();
        let creds =
            deploy_guard::exec::ssh::Credentials { key: std::fs::read_to_string(&key).unwrap(), passphrase: None };
        let ssh = Ssh::connect(&sshd.target(), &creds).await.unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        assert_eq!(exec::run_ok(&ssh, &Cmd::new("t", "echo ok")).await.unwrap(), "ok\n", "{kind}");
    }
}

/// The fingerprint (`SHA256:…`) of `sshd`'s host key.
fn fingerprint(sshd: &Sshd) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(sshd.dir.path().join("host_ed25519.pub"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().nth(1).unwrap().to_string()
}

/// Connects with `t` (through `bastion`); the error, as connecting must fail.
async fn through_impersonator(target: &Sshd, bastion: &Sshd, t: deploy_guard::config::Target) -> String {
    match Ssh::connect(&t, &bastion.credentials()).await {
        Ok(ssh) => {
            let _ = exec::capture(&ssh, &Cmd::new("marker", format!("touch {}", marker(target).display()))).await;
            panic!("connected through a bastion presenting the target's key");
        }
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn a_jump_host_presenting_the_targets_key_is_refused() {
    let target = Sshd::start().unwrap();
    // The bastion holds the target's host key: it could answer for the target itself.
    let bastion = Sshd::impersonating(&target).unwrap();
    let key = std::fs::read_to_string(bastion.dir.path().join("client.pub")).unwrap();
    std::fs::write(target.dir.path().join("authorized_keys"), key).unwrap();
    let jump = format!("{}@127.0.0.1:{}", bastion.user, bastion.port);
    // target.fingerprint pins the target; the jump host presenting that key is refused, even when
    // a careless jump_fingerprint lists the target's key too.
    let mut t = target.target();
    t.known_hosts = None;
    t.fingerprint = Some(fingerprint(&target));
    t.jump = Some(jump.clone());
    t.jump_fingerprint = Some(format!("{},{}", fingerprint(&bastion), fingerprint(&target)));
    let e = through_impersonator(&target, &bastion, t.clone()).await;
    assert!(e.contains("the target's key"), "{e}");
    // Without a jump pin, target.fingerprint no longer pins the jump host.
    t.jump_fingerprint = None;
    let e = through_impersonator(&target, &bastion, t.clone()).await;
    assert!(e.contains("target.jump_fingerprint or target.jump_known_hosts is required"), "{e}");
    // known_hosts with a line for each: the bastion's line carries the target's key.
    let mut t = target.target();
    t.jump = Some(jump);
    t.known_hosts = Some(format!("{}\n{}\n", bastion.known_hosts(), target.known_hosts()));
    let e = through_impersonator(&target, &bastion, t).await;
    assert!(e.contains("the target's key"), "{e}");
    assert!(!marker(&target).exists() && !marker(&bastion).exists(), "a command ran");
}

#[tokio::test]
async fn each_hop_is_pinned_by_its_own_fingerprint() {
    let bastion = Sshd::start().unwrap();
    let target = Sshd::start().unwrap();
    let key = std::fs::read_to_string(bastion.dir.path().join("client.pub")).unwrap();
    std::fs::write(target.dir.path().join("authorized_keys"), key).unwrap();
    let mut t = target.target();
    t.known_hosts = None;
    t.fingerprint = Some(fingerprint(&target));
    t.jump = Some(format!("{}@127.0.0.1:{}", bastion.user, bastion.port));
    t.jump_fingerprint = Some(fingerprint(&bastion));
    let ssh = Ssh::connect(&t, &bastion.credentials()).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(exec::run_ok(&ssh, &Cmd::new("t", "echo through")).await.unwrap(), "through\n");
    // The pins swapped: both hops refuse.
    t.fingerprint = Some(fingerprint(&bastion));
    t.jump_fingerprint = Some(fingerprint(&target));
    let e = format!("{:#}", Ssh::connect(&t, &bastion.credentials()).await.err().expect("swapped pins accepted"));
    assert!(e.contains("is not the pinned one"), "{e}");
}
