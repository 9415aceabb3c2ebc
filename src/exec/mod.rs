//! Running commands where the app lives: on this machine ([`local`]) or over SSH.
//!
//! Every command is a POSIX shell script run with `sh -c`. Values put into a script are quoted
//! with [`quote`]; secrets travel in `Cmd::env`, never in the script text.

pub mod cancel;
pub mod envfile;
pub mod local;
pub mod ssh;

use std::time::Duration;

use anyhow::{bail, Result};
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

pub use local::Local;

/// A command to run: shell text plus environment for it.
#[derive(Clone, Debug, Default)]
pub struct Cmd {
    /// What the command is for, in logs and errors ("pg_dump", "migrate").
    pub label: String,
    pub script: String,
    /// Extra environment; values may be secrets and are never logged.
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    /// A session held for the whole run (the deploy lock): a stop does not cut it short; it ends
    /// when the run lets it go.
    pub lasts_the_run: bool,
    /// Its output is read in step with another command's (a merge of two sorted streams): over
    /// SSH it gets a connection of its own, since a connection's channels share one queue and a
    /// channel whose reader waits on the other's would stall both.
    pub own_connection: bool,
    /// Display only: the host it runs on when the app has several (`ssh` arguments); the plan,
    /// the runbook and the next commands show it as `ssh ARGS 'script'`.
    pub on: Option<String>,
    /// Display only: deploy-guard does it itself, from where it runs (an HTTP health check): no
    /// host is marked on it.
    pub here: bool,
}

impl Cmd {
    pub fn new(label: impl Into<String>, script: impl Into<String>) -> Cmd {
        Cmd {
            label: label.into(),
            script: script.into(),
            env: Vec::new(),
            timeout: None,
            lasts_the_run: false,
            own_connection: false,
            on: None,
            here: false,
        }
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Cmd {
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// See [`Cmd::own_connection`].
    pub fn own_connection(mut self) -> Cmd {
        self.own_connection = true;
        self
    }

    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = Some(t);
        self
    }

    /// The command as a person would type it (for the plan, the runbook, the next commands).
    pub fn shell_text(&self) -> String {
        match &self.on {
            Some(ssh) => format!("ssh {ssh} {}", quote(&self.local_text())),
            None => self.local_text(),
        }
    }

    /// The command as typed on the host it runs on.
    fn local_text(&self) -> String {
        let env: Vec<String> = self
            .env
            .iter()
            .filter(|(k, _)| k != "PGCONNECT_TIMEOUT")
            .map(|(k, v)| match k.as_str() {
                // A Neon branch's role password: people read this text.
                "PGPASSWORD" => format!("{k}=…"),
                _ => format!("{k}={}", quote(v)),
            })
            .collect();
        match self.script.strip_prefix("exec ") {
            _ if env.is_empty() => self.script.strip_prefix("exec ").unwrap_or(&self.script).to_string(),
            // One program: the variables go before it.
            Some(program) => format!("{} {program}", env.join(" ")),
            // A script (`cd … && …`): variables before it would reach only its first command.
            None => format!("env {} sh -c {}", env.join(" "), quote(&self.script)),
        }
    }

    /// How long the command may run: its own timeout, else [`DEFAULT_TIMEOUT`]. No command runs
    /// unbounded: a hung one would hold the deploy (and, during a rollback, the stopped app).
    pub fn deadline(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// The timeout of a command that sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Cut short because the run was asked to stop ([`cancel`]), and why.
    pub stopped: Option<&'static str>,
    /// The last lines the command wrote to stderr.
    pub stderr_tail: String,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && self.stopped.is_none()
    }

    /// Ended as a command whose run was asked to stop (`why`) ends: killed where it ran.
    pub fn stopped(why: &'static str) -> Exit {
        Exit { code: None, signal: None, timed_out: false, stopped: Some(why), stderr_tail: String::new() }
    }

    /// "exit 1", "killed by signal 9", "timed out", "stopped by SIGINT".
    pub fn describe(&self) -> String {
        if let Some(why) = self.stopped {
            format!("stopped by {why}")
        } else if self.timed_out {
            "timed out".into()
        } else if let Some(s) = self.signal {
            format!("killed by signal {s}")
        } else if let Some(c) = self.code {
            format!("exit {c}")
        } else {
            "ended without a status".into()
        }
    }

    /// Ok when the command succeeded, else an error with its status and stderr.
    pub fn check(&self, label: &str) -> Result<()> {
        if self.success() {
            return Ok(());
        }
        let tail = self.stderr_tail.trim();
        if tail.is_empty() {
            bail!("{label} failed ({})", self.describe());
        }
        bail!("{label} failed ({}): {tail}", self.describe())
    }
}

/// Runs commands on the target.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs `cmd`, feeding it `stdin` (or nothing), copying its stdout into `stdout` while its
    /// stderr is drained. Returns how it ended; an `Err` means it could not be run or watched to
    /// the end (which is never a success).
    async fn run(
        &self,
        cmd: &Cmd,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<Exit>;

    /// Where commands run, for messages ("this machine", "deploy@vps:22").
    fn describe(&self) -> String;

    /// Across a link (SSH): streams are worth compressing on the far side.
    fn remote(&self) -> bool {
        false
    }
}

/// What a captured command printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub exit: Exit,
}

/// Runs `cmd` and collects its stdout (for small outputs).
pub async fn capture(exec: &dyn Executor, cmd: &Cmd) -> Result<Output> {
    let mut buf: Vec<u8> = Vec::new();
    let exit = exec.run(cmd, None, &mut buf).await?;
    Ok(Output { stdout: String::from_utf8_lossy(&buf).into_owned(), exit })
}

/// Runs `cmd` with `input` on stdin and collects its stdout.
pub async fn capture_with_input(exec: &dyn Executor, cmd: &Cmd, input: &[u8]) -> Result<Output> {
    let mut buf: Vec<u8> = Vec::new();
    let mut src = input;
    let exit = exec.run(cmd, Some(&mut src), &mut buf).await?;
    Ok(Output { stdout: String::from_utf8_lossy(&buf).into_owned(), exit })
}

/// Runs `cmd`; its stdout when it succeeded, else an error with status and stderr.
pub async fn run_ok(exec: &dyn Executor, cmd: &Cmd) -> Result<String> {
    let out = capture(exec, cmd).await?;
    out.exit.check(&cmd.label)?;
    Ok(out.stdout)
}

/// Quotes `s` for a POSIX shell, so that it stays one literal word.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `first | second` as a script that fails when either fails (a plain pipe reports only the
/// second's status: `pg_dump | gzip` turns a failed dump into a valid, short `.gz`). Each part
/// is shell text; the failing part's label and status go to stderr. Works in any POSIX `sh`.
pub fn pipeline(first: (&str, &str), second: (&str, &str)) -> String {
    let strip = |s: &str| s.strip_prefix("exec ").unwrap_or(s).to_string();
    let ((l1, s1), (l2, s2)) = ((first.0, strip(first.1)), (second.0, strip(second.1)));
    // The first part's status comes out on fd 3 (the substitution); the second's is the
    // substitution's own status; the second's stdout goes to the script's stdout through fd 4.
    format!(
        "exec 4>&1; s1=$( {{ {{ {s1}; echo $? >&3; }} | {s2} >&4; }} 3>&1 ); s2=$?; \
         [ \"$s1\" = 0 ] || {{ echo {q1} \"failed (exit ${{s1:-?}})\" >&2; exit 1; }}; \
         [ \"$s2\" = 0 ] || {{ echo {q2} \"failed (exit $s2)\" >&2; exit 1; }}",
        q1 = quote(l1),
        q2 = quote(l2)
    )
}

/// Replaces `{name}` placeholders with quoted values, in one pass over the template: a value is
/// never scanned again, so a tag containing `{sha}` stays literal text. Unknown placeholders and
/// stray braces are left as they are.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let found = after
            .find('}')
            .and_then(|close| values.iter().find(|(name, _)| *name == &after[..close]).map(|(_, v)| (close, *v)));
        match found {
            Some((close, value)) => {
                out.push_str(&quote(value));
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Counts the bytes read through it (what a command was fed, to check against what it took).
pub struct CountingReader<'a> {
    pub inner: &'a mut (dyn AsyncRead + Unpin + Send),
    pub n: u64,
}

impl AsyncRead for CountingReader<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut *self.inner).poll_read(cx, buf);
        self.n += (buf.filled().len() - before) as u64;
        r
    }
}

/// Keeps the last `cap` bytes written, for stderr tails in error messages.
#[derive(Default)]
pub struct Tail {
    buf: Vec<u8>,
    cap: usize,
}

impl Tail {
    pub fn new(cap: usize) -> Tail {
        Tail { buf: Vec::new(), cap }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.cap * 2 {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
    }

    pub fn bytes(&self) -> &[u8] {
        let start = self.buf.len().saturating_sub(self.cap);
        &self.buf[start..]
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_keeps_hostile_text_literal() {
        assert_eq!(quote("v1.2.3"), "v1.2.3");
        assert_eq!(quote("v1; touch /tmp/pwned"), "'v1; touch /tmp/pwned'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(id)"), "'$(id)'");
    }

    #[test]
    fn fill_quotes_values() {
        assert_eq!(fill("deploy {tag} now", &[("tag", "a b")]), "deploy 'a b' now");
        assert_eq!(fill("x {sha}", &[("tag", "t")]), "x {sha}");
        assert_eq!(fill("{a}{b} {{a}} {", &[("a", "1"), ("b", "2")]), "12 {1} {");
    }

    #[test]
    fn fill_is_one_pass() {
        // A tag holding a placeholder is text, not a template: `{sha}` inside it stays literal,
        // whatever the order of the values.
        let sha = "abc; touch /tmp/pwned";
        for values in [[("tag", "v1{sha}"), ("sha", sha)], [("sha", sha), ("tag", "v1{sha}")]] {
            assert_eq!(fill("deploy {tag} at {sha}", &values), "deploy 'v1{sha}' at 'abc; touch /tmp/pwned'");
        }
        // A value that closes its own quote around a placeholder stays one word.
        assert_eq!(fill("{tag} {sha}", &[("tag", "'{sha}'"), ("sha", "x y")]), r"''\''{sha}'\''' 'x y'");
    }

    #[tokio::test]
    async fn fill_one_pass_through_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let sha = format!("$(touch {})", marker.display());
        for tag in ["v1{sha}", "'{sha}'", "{sha}{sha}", "v1\"{sha}\""] {
            let script = fill("printf '%s|%s' {tag} {sha}", &[("tag", tag), ("sha", &sha)]);
            let out = run_ok(&Local, &Cmd::new("fill", script)).await.unwrap();
            assert_eq!(out, format!("{tag}|{sha}"), "tag {tag:?}");
        }
        assert!(!marker.exists(), "a value was run as a command");
    }

    #[test]
    fn tail_keeps_last_bytes() {
        let mut t = Tail::new(4);
        t.push(b"abcdef");
        t.push(b"gh");
        assert_eq!(t.text(), "efgh");
    }
}
