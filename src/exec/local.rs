//! Commands on this machine: `sh -c` in its own process group, killed whole on timeout.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use anyhow::{Context, Result};
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;

use super::{Cmd, Executor, Exit, Tail};

/// Secrets of deploy-guard itself that child commands (migrations, deploy, health and app
/// commands, pg_dump, psql) never need. The backup store's credentials are among them: a release
/// being deployed must not be able to delete or rewrite its own backups, nor mint the
/// credentials to (the Actions OIDC token request pair can be traded for a cloud role).
pub const WITHHELD: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "GITHUB_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_RUNTIME_TOKEN",
    "DEPLOY_GUARD_SSH_KEY",
    "DEPLOY_GUARD_SSH_KEY_PASSPHRASE",
    "DEPLOY_GUARD_MANIFEST_KEY",
    "NEON_API_KEY",
];

#[derive(Clone, Debug, Default)]
pub struct Local;

#[async_trait]
impl Executor for Local {
    async fn run(
        &self,
        cmd: &Cmd,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<Exit> {
        tracing::debug!(label = %cmd.label, script = %cmd.script, "run locally");
        if let Some(why) = super::cancel::stopping().filter(|_| !cmd.lasts_the_run) {
            return Ok(Exit::stopped(why));
        }
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&cmd.script)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for name in WITHHELD {
            command.env_remove(name);
        }
        for (k, v) in &cmd.env {
            command.env(k, v);
        }
        let mut child = command.spawn().with_context(|| format!("{}: cannot start sh", cmd.label))?;
        let pid = child.id();
        let mut child_in = child.stdin.take();
        let child_out = child.stdout.take().expect("piped");
        let mut child_err = child.stderr.take().expect("piped");

        let feed = async {
            // Owned here so that stdin closes however feeding ends: a command waiting for more
            // input must see EOF, else it would never exit.
            let dst = child_in.take();
            if let (Some(src), Some(mut dst)) = (stdin, dst) {
                match copy_input(src, &mut dst).await {
                    Ok(()) => {}
                    // The command stopped reading (it failed or finished early): its exit
                    // status tells what happened.
                    Err(Feed::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    Err(Feed::Write(e)) => return Err(anyhow::Error::new(e).context("feeding stdin")),
                    Err(Feed::Read(e)) => {
                        // The input broke off: the command must not take what it got for the
                        // whole (psql would commit a truncated restore at EOF). Kill it first,
                        // then stdin closes as `dst` drops.
                        kill_group(pid);
                        return Err(anyhow::Error::new(e).context("reading the input"));
                    }
                }
                let _ = dst.shutdown().await;
            }
            Ok(())
        };
        let drain_out = async {
            // Owned here so that the pipe closes when copying stops (the reader went away): the
            // command then sees a broken pipe and ends instead of blocking on a full pipe.
            let mut child_out = child_out;
            let n = tokio::io::copy(&mut child_out, stdout).await.context("copying stdout")?;
            stdout.flush().await.context("flushing stdout")?;
            Ok::<u64, anyhow::Error>(n)
        };
        let drain_err = async {
            let mut tail = Tail::new(8 * 1024);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match child_err.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => tail.push(&buf[..n]),
                }
            }
            tail
        };
        let all = async {
            let (fed, out, tail) = tokio::join!(feed, drain_out, drain_err);
            let status = child.wait().await.context("waiting for the command")?;
            fed?;
            out?;
            Ok::<_, anyhow::Error>((status, tail))
        };
        let t = cmd.deadline();
        let result = tokio::select! {
            r = tokio::time::timeout(t, all) => match r {
                Ok(r) => r,
                Err(_) => {
                    kill_group(pid);
                    return Ok(Exit {
                        code: None,
                        signal: None,
                        timed_out: true,
                        stopped: None,
                        stderr_tail: format!("{} did not finish within {}", cmd.label, humantime::format_duration(t)),
                    });
                }
            },
            why = super::cancel::cut_short(), if !cmd.lasts_the_run => {
                kill_group(pid);
                return Ok(Exit::stopped(why));
            }
        };
        let (status, tail) = match result {
            Ok(v) => v,
            Err(e) => {
                kill_group(pid);
                return Err(e.context(format!("{} failed", cmd.label)));
            }
        };
        Ok(Exit {
            code: status.code(),
            signal: status.signal(),
            timed_out: false,
            stopped: None,
            stderr_tail: tail.text(),
        })
    }

    fn describe(&self) -> String {
        "this machine".into()
    }
}

/// Which side of a copy failed.
pub(super) enum Feed {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copies `src` into `dst`, telling a failed read of the input from a failed write to the
/// command.
async fn copy_input(
    src: &mut (dyn AsyncRead + Unpin + Send),
    dst: &mut tokio::process::ChildStdin,
) -> Result<(), Feed> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = src.read(&mut buf).await.map_err(Feed::Read)?;
        if n == 0 {
            return Ok(());
        }
        dst.write_all(&buf[..n]).await.map_err(Feed::Write)?;
    }
}

#[allow(unsafe_code)]
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
}
