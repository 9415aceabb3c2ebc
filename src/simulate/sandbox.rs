//! A throwaway PostgreSQL cluster from the machine's own binaries, on 127.0.0.1 and a free port,
//! in a temp dir, stopped on drop (and by a watchdog if this process dies first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub struct Cluster {
    root: tempfile::TempDir,
    pub port: u16,
    pub bin_dir: PathBuf,
    /// `postgres` when running as root (initdb refuses root).
    run_as: Option<String>,
}

/// Finds `initdb`: `$DEPLOY_GUARD_PG_BIN`, then the newest `/usr/lib/postgresql/*/bin` (Debian),
/// then PATH.
pub fn find_bin_dir(prefer: Option<&Path>) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = prefer {
        candidates.push(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("DEPLOY_GUARD_PG_BIN") {
        candidates.push(p.into());
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
            .collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev().map(|(_, p)| p));
    }
    for dir in ["/usr/local/bin", "/usr/bin", "/opt/homebrew/bin"] {
        candidates.push(dir.into());
    }
    candidates.into_iter().find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file()).context(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them \
             (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@17) \
             or set DEPLOY_GUARD_PG_BIN to their directory",
    )
}

#[allow(unsafe_code)]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Cluster {
    /// initdb + start; returns once the server accepts connections.
    pub fn start(bin_dir: Option<&Path>) -> Result<Cluster> {
        let bin_dir = find_bin_dir(bin_dir)?;
        let root = tempfile::Builder::new().prefix("deploy-guard-pg-").tempdir()?;
        let run_as = if is_root() { Some("postgres".to_string()) } else { None };
        set_mode(root.path(), 0o755)?;
        let data = root.path().join("data");
        std::fs::create_dir(&data)?;
        if let Some(user) = &run_as {
            let ok = Command::new("chown").arg("-R").arg(format!("{user}:")).arg(root.path()).status()?.success();
            if !ok {
                bail!("running as root, the cluster must belong to a `{user}` user (initdb refuses root), but chown to it failed: create the user or run as another user");
            }
        }
        let mut cluster = Cluster { root, port: 0, bin_dir, run_as };
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        )?;
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                cluster.port,
                path_str(cluster.root.path())?
            );
            let log = cluster.root.path().join("server.log");
            match cluster
                .run("pg_ctl", &["-D", path_str(&data)?, "-l", path_str(&log)?, "-o", &opts, "-w", "-t", "60", "start"])
            {
                Ok(_) => {
                    cluster.watchdog()?;
                    return Ok(cluster);
                }
                // Most likely the port was taken between choosing and binding it: try another.
                Err(e) => last = format!("{e:#}\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
            }
        }
        bail!("PostgreSQL did not start: {last}")
    }

    fn command(&self, tool: &str) -> Command {
        let bin = self.bin_dir.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.bin_dir.join(tool).display()))?;
        if !out.status.success() {
            bail!("{tool} failed: {}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server if this process dies without dropping the cluster (tests keep one
    /// cluster in a static).
    fn watchdog(&self) -> Result<()> {
        // Runs as this process's user (so `kill -0` may probe it); stops the server as its owner.
        let as_owner = match &self.run_as {
            Some(user) => format!("runuser -u {} -- ", crate::exec::quote(user)),
            None => String::new(),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {as_owner}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {root}",
            pid = std::process::id(),
            pg_ctl = crate::exec::quote(path_str(&self.bin_dir.join("pg_ctl"))?),
            data = crate::exec::quote(path_str(&self.data_dir())?),
            root = crate::exec::quote(path_str(self.root.path())?),
        );
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot start the cluster watchdog")?;
        Ok(())
    }

    /// Restarts the server (`pg_ctl restart -m fast`: every session is ended), as an operator or
    /// a crashed container's restart policy would; returns once it accepts connections again.
    pub fn restart(&self) -> Result<()> {
        let log = self.root.path().join("server.log");
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-l", path_str(&log)?, "-m", "fast", "-w", "-t", "60", "restart"],
        )?;
        Ok(())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Runs SQL as the superuser on `db`; stops at the first error.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        use std::io::Write;
        let mut child = Command::new(self.bin_dir.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", db])
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().expect("piped").write_all(sql.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("psql on {db} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    pub fn database_exists(&self, name: &str) -> Result<bool> {
        Ok(self.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = {};", crate::db::literal(name)),
        )? == "1")
    }

    pub fn create_database(&self, name: &str) -> Result<()> {
        self.psql("postgres", &format!("CREATE DATABASE {};", crate::db::ident(name)))?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(data) = path_str(&self.data_dir()) {
            let _ = self
                .command("pg_ctl")
                .args(["-D", data, "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 temp path")
}
