//! Streams through the SSH executor vs OpenSSH's `ssh host cat`, same loopback sshd, same run.
//! `cargo bench --bench ssh_throughput` (BENCH_MIB sets the size, default 1024).

use std::time::Instant;

use deploy_guard::exec::ssh::{Credentials, Ssh};
use deploy_guard::exec::{Cmd, Executor};
#[path = "../tests/it/common/sshd.rs"]
#[allow(dead_code, unsafe_code)] // the tests use the rest; it signals the sshd it started
mod sshd;
use sshd::Sshd;
use tokio::io::AsyncReadExt;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn openssh(sshd: &Sshd, remote: &str, input: Option<u64>) -> f64 {
    let kh = sshd.dir.path().join("bench_known_hosts");
    std::fs::write(&kh, format!("{}\n", sshd.known_hosts())).unwrap();
    let ssh = format!(
        "ssh -T -o BatchMode=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -i {} -p {} {}@127.0.0.1 {}",
        kh.display(),
        sshd.dir.path().join("client").display(),
        sshd.port,
        sshd.user,
        deploy_guard::exec::quote(remote)
    );
    let script = match input {
        Some(n) => format!("head -c {n} /dev/zero | {ssh}"),
        None => format!("{ssh} > /dev/null"),
    };
    let t = Instant::now();
    let ok = std::process::Command::new("sh").arg("-c").arg(&script).status().unwrap().success();
    assert!(ok, "openssh run failed: {script}");
    t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::var("BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let bytes = mib * 1024 * 1024;
    let sshd = Sshd::start().expect("sshd");
    let target = deploy_guard::config::Target {
        host: Some("127.0.0.1".into()),
        port: sshd.port,
        user: Some(sshd.user.clone()),
        known_hosts: Some(sshd.known_hosts()),
        ..Default::default()
    };
    let ssh = Ssh::connect(&target, &Credentials { key: sshd.client_key.clone(), passphrase: None }).await.unwrap();

    // Download: remote writes `bytes`, we count them.
    let t = Instant::now();
    let mut sink = tokio::io::sink();
    let exit = ssh.run(&Cmd::new("down", format!("head -c {bytes} /dev/zero")), None, &mut sink).await.unwrap();
    assert!(exit.success());
    let ours_down = t.elapsed().as_secs_f64();
    // Upload: we send `bytes`, remote discards them.
    let t = Instant::now();
    let mut src = tokio::io::repeat(0).take(bytes);
    let exit = ssh.run(&Cmd::new("up", "cat > /dev/null"), Some(&mut src), &mut sink).await.unwrap();
    assert!(exit.success());
    let ours_up = t.elapsed().as_secs_f64();
    let rss = peak_rss_mib();

    let theirs_down = openssh(&sshd, &format!("head -c {bytes} /dev/zero"), None);
    let theirs_up = openssh(&sshd, "cat > /dev/null", Some(bytes));
    let rate = |s: f64| mib as f64 / s;
    println!("| direction | deploy-guard (russh) | OpenSSH `ssh` | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| download {mib} MiB | {:.1} s, {:.0} MiB/s | {:.1} s, {:.0} MiB/s | {:.2}x |",
        ours_down,
        rate(ours_down),
        theirs_down,
        rate(theirs_down),
        theirs_down / ours_down
    );
    println!(
        "| upload {mib} MiB | {:.1} s, {:.0} MiB/s | {:.1} s, {:.0} MiB/s | {:.2}x |",
        ours_up,
        rate(ours_up),
        theirs_up,
        rate(theirs_up),
        theirs_up / ours_up
    );
    println!("\npeak RSS of the bench process (deploy-guard side): {rss:.1} MiB");
}
