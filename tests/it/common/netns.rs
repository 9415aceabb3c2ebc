//! Several "VPS" for tests: each host a network namespace of its own with its own address (a veth
//! pair to this one), a real sshd listening there with its own host key, and a directory of its
//! own (a directory of the test's bind-mounted over one shared path in the sshd's mount
//! namespace: the sample app's `state/`, or a compose deployment's files), so each host runs its
//! own tag. The test cluster's PostgreSQL is reached from inside each namespace on the same
//! 127.0.0.1:PORT through a small forwarder; a port published here (a compose app's) is reached
//! on the host's own address the same way. One client key is authorized on every host.
//! Everything is removed on drop.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!("{} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn keygen(path: &Path) -> Result<()> {
    sh(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "deploy-guard", "-f", &path.display().to_string()])
}

/// One host: its namespace, its link, its sshd, its app state.
pub struct NetHost {
    pub netns: String,
    pub addr: String,
    /// The root side of its link: taken down, the host drops off the network.
    veth: String,
    /// Its own copy of the shared directory (what its app runs, read here directly).
    pub state: PathBuf,
    dir: PathBuf,
    /// The shared path its own directory is mounted over.
    own: PathBuf,
    sshd: Option<Child>,
    forwarders: Vec<TcpListener>,
}

/// Hosts sharing one client key.
pub struct Hosts {
    pub hosts: Vec<NetHost>,
    pub client_key: String,
    pub user: String,
    _tmp: tempfile::TempDir,
}

impl Hosts {
    /// `n` hosts, each with its own copy of the directory `own` (what it holds now is each
    /// host's start), reaching PostgreSQL on 127.0.0.1:`pg_port` when given.
    pub fn start(n: usize, own: &Path, pg_port: Option<u16>) -> Result<Hosts> {
        let tmp = tempfile::Builder::new().prefix("dg-hosts-").tempdir()?;
        keygen(&tmp.path().join("client"))?;
        let _ = std::fs::create_dir_all("/run/sshd");
        let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?.trim().to_string();
        let mut hosts = Vec::new();
        for k in 0..n {
            let dir = tmp.path().join(format!("h{k}"));
            std::fs::create_dir_all(&dir)?;
            let state = dir.join("state");
            sh(&["cp", "-a", &own.display().to_string(), &state.display().to_string()])?;
            keygen(&dir.join("host_ed25519"))?;
            std::fs::copy(tmp.path().join("client.pub"), dir.join("authorized_keys"))?;
            let (netns, (a, b)) = claim_subnet()?;
            let subnet = format!("10.{a}.{b}");
            let mut host = NetHost {
                netns,
                addr: format!("{subnet}.2"),
                veth: format!("dgh{a}x{b}"),
                state,
                dir,
                own: own.to_path_buf(),
                sshd: None,
                forwarders: Vec::new(),
            };
            host.link(&subnet)?;
            if let Some(port) = pg_port {
                host.forward("127.0.0.1", port, port)?;
            }
            host.start_sshd()?;
            hosts.push(host);
        }
        let client_key = std::fs::read_to_string(tmp.path().join("client"))?;
        Ok(Hosts { hosts, client_key, user, _tmp: tmp })
    }

    /// The `target:` section naming host 0 as the primary and the others in `target.hosts`, one
    /// known_hosts text pinning them all.
    pub fn target_yaml(&self) -> String {
        let known: Vec<String> = self.hosts.iter().map(|h| h.known_hosts()).collect();
        let mut y = format!(
            "target:\n  host: {}\n  user: {}\n  command_timeout: 30s\n  connect_timeout: 5s\n  known_hosts: \"{}\"\n  hosts:\n",
            self.hosts[0].addr,
            self.user,
            known.join("\\n")
        );
        for h in &self.hosts[1..] {
            y.push_str(&format!("    - host: {}\n", h.addr));
        }
        y
    }

    /// The tag each host's app runs.
    pub fn tags(&self) -> Vec<String> {
        self.hosts.iter().map(NetHost::tag).collect()
    }
}

impl NetHost {
    fn link(&self, subnet: &str) -> Result<()> {
        let peer = self.peer();
        sh(&["ip", "link", "add", &self.veth, "type", "veth", "peer", "name", &peer])?;
        sh(&["ip", "link", "set", &peer, "netns", &self.netns])?;
        sh(&["ip", "addr", "add", &format!("{subnet}.1/24"), "dev", &self.veth])?;
        sh(&["ip", "link", "set", &self.veth, "up"])?;
        let inside = |args: &[&str]| {
            let mut a = vec!["ip", "netns", "exec", &self.netns];
            a.extend_from_slice(args);
            sh(&a)
        };
        inside(&["ip", "addr", "add", &format!("{}/24", self.addr), "dev", &peer])?;
        inside(&["ip", "link", "set", &peer, "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])
    }

    /// Starts (or starts again) its sshd, with the same host key.
    pub fn start_sshd(&mut self) -> Result<()> {
        let p = |n: &str| self.dir.join(n).display().to_string();
        let config = format!(
            "Port 22\nListenAddress {}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             MaxSessions 64\nMaxStartups 64\nLogLevel ERROR\n",
            self.addr,
            p("host_ed25519"),
            p("sshd.pid"),
            p("authorized_keys")
        );
        std::fs::write(self.dir.join("sshd_config"), config)?;
        let mount = format!(
            "mount --bind {} {} && exec /usr/sbin/sshd -D -e -f {}",
            deploy_guard::exec::quote(&self.state.display().to_string()),
            deploy_guard::exec::quote(&self.own.display().to_string()),
            deploy_guard::exec::quote(&p("sshd_config"))
        );
        // ip netns exec, unshare and sh each exec the next: the child's pid is sshd's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "unshare", "-m", "--propagation", "private", "sh", "-c", &mount])
            .stderr(std::fs::File::create(self.dir.join("sshd.log"))?)
            .spawn()
            .context("cannot start sshd")?;
        self.sshd = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while TcpStream::connect((self.addr.as_str(), 22)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("sshd on {} did not listen: {}", self.addr, std::fs::read_to_string(p("sshd.log"))?);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    /// Carries connections to `addr`:`port` inside the host (its own address, or its loopback)
    /// to 127.0.0.1:`to` here, until the host is dropped.
    pub fn forward(&mut self, addr: &str, port: u16, to: u16) -> Result<()> {
        self.forwarders.push(forward(&self.netns, addr, port, to)?);
        Ok(())
    }

    /// The pid of its listening sshd.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.sshd.as_ref().map(Child::id)
    }

    /// Kills its sshd and every session it serves, as a crash would.
    pub fn kill_sshd(&mut self) {
        let Some(mut child) = self.sshd.take() else { return };
        for pid in super::sshd::descendants(child.id() as i32) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = child.wait();
    }

    /// Takes its link down: nothing reaches it any more.
    pub fn link_down(&self) {
        sh(&["ip", "link", "set", &self.veth, "down"]).unwrap();
    }

    /// The host's own end of its link (what a command on the host takes down to cut itself off).
    pub fn peer(&self) -> String {
        format!("{}p", self.veth)
    }

    /// Brings both ends of its link up again, and waits until its sshd can be reached: the
    /// kernel brings the route back only once it sees the carrier (up to a second later, more
    /// under load), and until then a connection fails with "No route to host".
    pub fn link_up(&self) {
        sh(&["ip", "link", "set", &self.veth, "up"]).unwrap();
        sh(&["ip", "netns", "exec", &self.netns, "ip", "link", "set", &self.peer(), "up"]).unwrap();
        if self.sshd.is_none() {
            return;
        }
        let to = std::net::SocketAddr::new(self.addr.parse().expect("an IP address"), 22);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while TcpStream::connect_timeout(&to, std::time::Duration::from_secs(1)).is_err() {
            assert!(std::time::Instant::now() < deadline, "{} unreachable 20 s after its link came up", self.addr);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn known_hosts(&self) -> String {
        let pubkey = std::fs::read_to_string(self.dir.join("host_ed25519.pub")).unwrap();
        let mut parts = pubkey.split_whitespace();
        format!("{} {} {}", self.addr, parts.next().unwrap(), parts.next().unwrap())
    }

    pub fn tag(&self) -> String {
        std::fs::read_to_string(self.state.join("tag")).unwrap().trim().to_string()
    }

    pub fn running(&self) -> bool {
        self.state.join("running").exists()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("log")).unwrap_or_default()
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        self.kill_sshd();
        for l in self.forwarders.drain(..) {
            unsafe {
                libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        let _ = sh(&["ip", "link", "del", &self.veth]);
        let _ = sh(&["ip", "netns", "del", &self.netns]);
    }
}

/// Creates the namespace of a host on a 10.a.b.0/24 no other host uses, in this test process or
/// another (the shell and the compose hosts tests run in two processes at once): the namespace is
/// named after its subnet, and `ip netns add` fails when that name exists.
fn claim_subnet() -> Result<(String, (usize, usize))> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const N: usize = 50 * 250;
    let start = std::process::id() as usize * 31;
    for _ in 0..N {
        let i = (start + NEXT.fetch_add(1, Ordering::SeqCst)) % N;
        let (a, b) = (200 + i / 250, i % 250);
        let netns = format!("dgh-{a}-{b}");
        let out = Command::new("ip").args(["netns", "add", &netns]).output().context("cannot run ip")?;
        if out.status.success() {
            return Ok((netns, (a, b)));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.contains("exists") {
            bail!("ip netns add {netns} failed: {err}");
        }
    }
    bail!("every 10.200-249.x.0/24 has a test host: remove the stale ones (`ip netns list | grep dgh-`)")
}

/// A listener on `addr`:`port` inside `netns` whose connections are carried to 127.0.0.1:`to`
/// here: the socket is made in the namespace by a thread that enters it and comes back.
fn forward(netns: &str, addr: &str, port: u16, to: u16) -> Result<TcpListener> {
    let ns = std::fs::File::open(format!("/run/netns/{netns}"))?;
    let netns = netns.to_string();
    let addr = addr.to_string();
    let listener = std::thread::spawn(move || -> Result<TcpListener> {
        let home = std::fs::File::open("/proc/thread-self/ns/net")?;
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns into {netns}: {}", std::io::Error::last_os_error());
        }
        let l = TcpListener::bind((addr.as_str(), port));
        if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            panic!("setns back: {}", std::io::Error::last_os_error());
        }
        Ok(l?)
    })
    .join()
    .unwrap()?;
    let accepting = listener.try_clone()?;
    std::thread::spawn(move || {
        while let Ok((inside, _)) = accepting.accept() {
            let Ok(here) = TcpStream::connect(("127.0.0.1", to)) else { continue };
            pipe(inside.try_clone().unwrap(), here.try_clone().unwrap());
            pipe(here, inside);
        }
    });
    Ok(listener)
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
