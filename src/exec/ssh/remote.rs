//! The remote process's lifetime: each command runs under its own `DEPLOY_GUARD_RUN` value, so
//! that what it started can be found and killed when it times out, loses its input or its
//! connection; its stdin is fed, its stdout copied and its stderr's tail kept.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use russh::{ChannelMsg, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::exec::Executor;

use super::Ssh;
use crate::exec::local::Feed;
use crate::exec::{quote, Cmd, Exit, Tail};

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
pub(super) fn remote_script(cmd: &Cmd, token: &str) -> String {
    let mut s = String::new();
    for (k, v) in &cmd.env {
        s.push_str(&format!("export {k}={}; ", quote(v)));
    }
    s.push_str(&cmd.script);
    format!("{RUN_VAR}={token} exec sh -c {}", quote(&s))
}

/// Where a command run on the target got to.
#[derive(Default)]
pub(super) struct RunState {
    /// The target took the command.
    pub(super) started: AtomicBool,
    /// What it started was killed already (its input broke off).
    pub(super) killed: AtomicBool,
}

/// Set for every command run on the target, its value unique to the command. sshd passes a
/// kill on to the command's shell alone: what the shell started (a migration tool, `docker
/// compose up` still pulling) would run on after a timeout, and finish after deploy-guard moved
/// on. Every process that inherited the value is found and killed instead.
const RUN_VAR: &str = "DEPLOY_GUARD_RUN";

/// A value of [`RUN_VAR`] no other command of any run shares.
pub(super) fn run_token() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START
        .get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{start:x}-{n}", std::process::id())
}

/// Kills every process on the target whose environment holds `RUN_VAR=token`, in rounds: one
/// may fork between two rounds, or not have started yet when the first looks (the login shell
/// has not yet run the `exec` that sets the variable: seen to take over a second on a loaded
/// host). It looks for up to 3 s until it finds one, then four rounds more; prints how many it
/// killed. All are stopped before any is killed: in `awk | psql`, psql must not see the end of
/// its input (and commit) between awk's death and its own.
fn kill_script(token: &str) -> String {
    format!(
        "n=0; found=0; i=0; while [ $i -lt 15 ] && [ $found -lt 6 ]; do \
           pids=$(grep -l -s -z -x -F {entry} /proc/[0-9]*/environ | sed -n 's#^/proc/\\([0-9]*\\)/environ$#\\1#p'); \
           if [ -n \"$pids\" ]; then kill -STOP $pids 2>/dev/null; kill -KILL $pids 2>/dev/null; n=$((n + $(echo $pids | wc -w))); \
             [ $found -gt 0 ] || found=1; fi; \
           [ $found -gt 0 ] && found=$((found + 1)); i=$((i + 1)); sleep 0.2; \
         done; echo $n",
        entry = quote(&format!("{RUN_VAR}={token}"))
    )
}

impl Ssh {
    /// Runs `cmd` on a new channel with [`RUN_VAR`] set to `token`.
    pub(super) async fn run_as(
        &self,
        cmd: &Cmd,
        token: &str,
        state: &RunState,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<Exit> {
        tracing::debug!(label = %cmd.label, script = %cmd.script, "run on {}", self.describe());
        // A connection of its own lives as long as this command.
        let (channel, _own) = if cmd.own_connection {
            let conn = self.open().await?;
            let channel = conn.0.channel_open_session().await.with_context(|| format!("{}: no channel", cmd.label))?;
            (channel, Some(conn))
        } else {
            (self.channel().await?, None)
        };
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
            Ok(Exit { code, signal, timed_out: false, stopped: None, stderr_tail: tail.text() })
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
        tokio::select! {
            r = tokio::time::timeout(t, both) => match r {
                Ok(r) => r,
                Err(_) => {
                    let _ = write.signal(Sig::KILL).await;
                    let _ = write.close().await;
                    Ok(Exit {
                        code: None,
                        signal: None,
                        timed_out: true,
                        stopped: None,
                        stderr_tail: format!("{} did not finish within {}", cmd.label, humantime::format_duration(t)),
                    })
                }
            },
            why = crate::exec::cancel::cut_short(), if !cmd.lasts_the_run => {
                let _ = write.signal(Sig::KILL).await;
                let _ = write.close().await;
                Ok(Exit::stopped(why))
            }
        }
    }

    /// Kills what the command run with `token` left running on the target ([`kill_script`]).
    /// Best effort: the connection may be the reason it ended (the kill is then logged as not done).
    pub(super) async fn kill_all(&self, cmd: &Cmd, token: &str) {
        // The kill runs to its end even when the run is being stopped: it is how it stops.
        let _shield = crate::exec::cancel::shield();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_goes_into_the_script_quoted() {
        let cmd = Cmd::new("x", "psql").env("PGHOST", "a b").env("PGPORT", "5432");
        assert_eq!(
            remote_script(&cmd, "t-1"),
            r#"DEPLOY_GUARD_RUN=t-1 exec sh -c 'export PGHOST='\''a b'\''; export PGPORT=5432; psql'"#
        );
    }
}
