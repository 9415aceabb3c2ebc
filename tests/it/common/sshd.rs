//! A real OpenSSH server on 127.0.0.1 for tests and benchmarks (not part of the product).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A real OpenSSH server on 127.0.0.1 and a free port, with its own host key and one client
/// key; killed (with its session processes) on drop. For tests and benchmarks.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    /// Private key text of the authorized client key.
    pub client_key: String,
    child: std::process::Child,
}

fn keygen(path: &Path, kind: &str) -> Result<()> {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "deploy-guard", "-f"])
        .arg(path)
        .status()
        .context("ssh-keygen is missing: apt-get install openssh-client")?
        .success();
    if !ok {
        bail!("ssh-keygen -t {kind} failed");
    }
    Ok(())
}

impl Sshd {
    pub fn start() -> Result<Sshd> {
        Sshd::start_with_host_key(None)
    }

    /// A server whose sessions see a disk of their own at `dir` (a tmpfs mounted there in the
    /// server's own mount namespace): what they write there is on "the target" only, invisible to
    /// this process, as on a real remote host. Read it with [`Sshd::target_command`].
    pub fn with_private_dir(dir: &Path) -> Result<Sshd> {
        std::fs::create_dir_all(dir)?;
        let dir = deploy_guard::exec::quote(&dir.to_string_lossy());
        Sshd::start_inner(None, Some(format!("mount -t tmpfs tmpfs {dir}")))
    }

    /// A server whose sessions' `/var/tmp` is a tmpfs of `bytes` of its own: a target short of
    /// disk there.
    pub fn with_small_tmp(bytes: u64) -> Result<Sshd> {
        Sshd::start_inner(None, Some(format!("mount -t tmpfs -o size={bytes} tmpfs /var/tmp")))
    }

    /// A server on a target that lacks the programs at `paths`: each is covered by `/dev/null`
    /// in the server's own mount namespace, so running it fails there as on a host without it.
    pub fn without(paths: &[&str]) -> Result<Sshd> {
        let mounts: Vec<String> =
            paths.iter().map(|p| format!("mount --bind /dev/null {}", deploy_guard::exec::quote(p))).collect();
        Sshd::start_inner(None, Some(mounts.join(" && ")))
    }

    /// A command run in the server's mount namespace (what the target's own shell sees).
    pub fn target_command(&self, script: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.child.id().to_string(), "-m", "--", "sh", "-c", script]);
        c
    }

    /// A server presenting the host key of `other` (an impersonator, for tests).
    pub fn impersonating(other: &Sshd) -> Result<Sshd> {
        Sshd::start_with_host_key(Some(&other.dir.path().join("host_ed25519")))
    }

    fn start_with_host_key(host_key: Option<&Path>) -> Result<Sshd> {
        Sshd::start_inner(host_key, None)
    }

    /// `mounts`: shell commands run in a mount namespace of the server's own before it starts.
    fn start_inner(host_key: Option<&Path>, mounts: Option<String>) -> Result<Sshd> {
        if !Path::new("/usr/sbin/sshd").exists() {
            bail!("/usr/sbin/sshd is missing: apt-get install openssh-server (scripts/setup does)");
        }
        let dir = tempfile::Builder::new().prefix("deploy-guard-sshd-").tempdir()?;
        let p = |n: &str| dir.path().join(n);
        match host_key {
            Some(key) => {
                std::fs::copy(key, p("host_ed25519"))?;
                std::fs::copy(key.with_extension("pub"), p("host_ed25519.pub"))?;
                std::fs::set_permissions(p("host_ed25519"), std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            }
            None => keygen(&p("host_ed25519"), "ed25519")?,
        }
        keygen(&p("client"), "ed25519")?;
        std::fs::copy(p("client.pub"), p("authorized_keys"))?;
        // sshd's privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = deploy_guard::simulate::sandbox::free_port()?;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nMaxSessions 64\nMaxStartups 64\nLogLevel ERROR\n",
            p("host_ed25519").display(),
            p("sshd.pid").display(),
            p("authorized_keys").display()
        );
        std::fs::write(p("sshd_config"), config)?;
        let mut command = match mounts {
            None => Command::new("/usr/sbin/sshd"),
            Some(mounts) => {
                // unshare execs the shell, which execs sshd: the child's pid is sshd's.
                let mut c = Command::new("unshare");
                c.args(["-m", "--propagation", "private", "sh", "-c"])
                    .arg(format!("{mounts} && exec \"$@\""))
                    .args(["sh", "/usr/sbin/sshd"]);
                c
            }
        };
        let child = command
            .args(["-D", "-e", "-f"])
            .arg(p("sshd_config"))
            .stderr(std::fs::File::create(p("sshd.log"))?)
            .spawn()
            .context("cannot start sshd")?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("sshd did not listen: {}", std::fs::read_to_string(p("sshd.log")).unwrap_or_default());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?.trim().to_string();
        let client_key = std::fs::read_to_string(p("client"))?;
        Ok(Sshd { dir, port, user, client_key, child })
    }

    /// The known_hosts line for this server.
    pub fn known_hosts(&self) -> String {
        let pubkey = std::fs::read_to_string(self.dir.path().join("host_ed25519.pub")).unwrap();
        let mut parts = pubkey.split_whitespace();
        format!("[127.0.0.1]:{} {} {}", self.port, parts.next().unwrap(), parts.next().unwrap())
    }

    /// The `target:` section of a deploy-guard.yml for this server.
    pub fn target_yaml(&self) -> String {
        format!(
            "target:\n  host: 127.0.0.1\n  port: {}\n  user: {}\n  known_hosts: \"{}\"\n",
            self.port,
            self.user,
            self.known_hosts()
        )
    }

    /// Kills the server and every session it serves, as a crash or a dropped link would.
    /// (Session processes call setsid, so the process group is not enough: walk /proc.)
    pub fn kill(&mut self) {
        for pid in descendants(self.child.id() as i32) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

/// `root` and every process below it. (Session processes call setsid, so the process group is
/// not enough: walk /proc.)
pub fn descendants(root: i32) -> Vec<i32> {
    let mut pids = vec![root];
    let mut i = 0;
    while i < pids.len() {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let ppid =
                stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(pids[i]) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        i += 1;
    }
    pids
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}
