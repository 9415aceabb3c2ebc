//! A directory store on the target host, read and written over the connection deploy-guard
//! already holds (SSH): the backups live on the VPS's disk, not on a runner that is deleted when
//! the job ends. Same contract as [`super::DirStore`]: objects 0600, directories it creates 0700,
//! a put appears whole or not at all (`KEY.partial`, its length checked, then renamed).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use tokio::io::{AsyncRead, DuplexStream, ReadBuf};
use tokio::sync::oneshot;

use super::dir::key_path;
use super::{Object, Put, Store};
use crate::exec::{self, quote, Cmd, CountingReader, Executor};

pub struct TargetDirStore {
    exec: Arc<dyn Executor>,
    root: PathBuf,
    /// How long one object may take to stream (a backup is as big as the database).
    stream_timeout: Duration,
}

impl TargetDirStore {
    pub fn new(exec: Arc<dyn Executor>, root: impl Into<PathBuf>, stream_timeout: Duration) -> TargetDirStore {
        TargetDirStore { exec, root: root.into(), stream_timeout }
    }

    fn path(&self, key: &str) -> Result<String> {
        Ok(key_path(&self.root, key)?.to_string_lossy().into_owned())
    }

    fn root(&self) -> String {
        quote(&self.root.to_string_lossy())
    }

    async fn run(&self, label: &str, script: String) -> Result<String> {
        exec::run_ok(self.exec.as_ref(), &Cmd::new(label, script)).await
    }
}

/// The length and sha256 of the file at `path` on the target, as one shell script.
fn digest_sh(path: &str) -> String {
    format!("wc -c < {p} && sha256sum < {p}", p = quote(path))
}

/// The length and (lowercase) sha256 that [`digest_sh`] printed.
fn parse_digest(out: &str) -> Option<(u64, String)> {
    let mut words = out.split_whitespace();
    let size = words.next()?.parse().ok()?;
    let sha = words.next().filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some((size, sha.to_ascii_lowercase()))
}

/// A remote command's stdout as a reader whose end is an error unless the command succeeded:
/// a `cat` cut off half way must never look like a short object.
struct Stdout {
    pipe: DuplexStream,
    status: oneshot::Receiver<Result<()>>,
}

impl AsyncRead for Stdout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.pipe).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => match Pin::new(&mut self.status).poll(cx) {
                Poll::Ready(Ok(Ok(()))) => Poll::Ready(Ok(())),
                Poll::Ready(Ok(Err(e))) => Poll::Ready(Err(std::io::Error::other(format!("{e:#}")))),
                Poll::Ready(Err(_)) => Poll::Ready(Err(std::io::Error::other("the read on the target was abandoned"))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl TargetDirStore {
    /// Moves a whole `partial` into place at `path`: a new object only where none is (`ln` makes
    /// no link over an existing file), the next version of one by rename.
    async fn finish(&self, key: &str, partial: &str, path: &str, mode: Put) -> Result<()> {
        let (p, f) = (quote(partial), quote(path));
        let script = match mode {
            Put::Replace => format!("mv -f -- {p} {f}"),
            Put::New => format!(
                "if ln -- {p} {f} 2>/dev/null; then rm -f -- {p}; elif [ -e {f} ]; then echo EXISTS; exit 1; else ln -- {p} {f}; fi"
            ),
        };
        let cmd = Cmd::new("store the object on the target", script).timeout(std::time::Duration::from_secs(60));
        let out = exec::capture(self.exec.as_ref(), &cmd).await?;
        if out.stdout.trim() == "EXISTS" {
            bail!("{key} is already in the store: refusing to replace it (nothing was changed)");
        }
        out.exit.check(&cmd.label)
    }

    /// Sets `$d` to the store's directory, else its nearest ancestor that exists.
    fn nearest(&self) -> String {
        format!("d={}; while [ ! -d \"$d\" ]; do d=$(dirname -- \"$d\"); done", self.root())
    }

    /// [`Store::put_from_target`]: the same `KEY.partial`, 0600 and rename as a put, with the
    /// producer's output written straight into it by `tee`, which also prints it to `copy`.
    async fn write_in_place(
        &self,
        key: &str,
        producer: &Cmd,
        copy: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
        let partial = format!("{path}.partial");
        let tee = format!("tee -- {}", quote(&partial));
        // In braces: the producer may itself be a pipeline that begins with `exec 4>&1`.
        let produce = format!("{{ {}\n}}", producer.script);
        let write = Cmd {
            label: format!("{} into {path} on the target", producer.label),
            script: format!(
                "umask 077 && mkdir -p -- {d} && rm -f -- {p} && {pipeline} && {{ sync {p} 2>/dev/null || sync; }}",
                d = quote(dir),
                p = quote(&partial),
                pipeline = exec::pipeline((&producer.label, &produce), ("tee", &tee)),
            ),
            ..producer.clone()
        };
        let written = async {
            self.exec.run(&write, None, copy).await?.check(&write.label)?;
            self.finish(key, &partial, &path, Put::New).await
        }
        .await;
        if written.is_err() {
            let _ = self.run("remove a partial backup", format!("rm -f -- {}", quote(&partial))).await;
        }
        written.with_context(|| format!("writing {path} on {}", self.exec.describe()))
    }
}

#[async_trait]
impl Store for TargetDirStore {
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Unpin + Send), mode: Put) -> Result<u64> {
        let path = self.path(key)?;
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
        let partial = format!("{path}.partial");
        // umask 077: what is created is 0700 / 0600, existing directories are left alone. The
        // length is printed back: a stream cut short on this side must not be renamed into place.
        let write = Cmd::new(
            "write the backup on the target",
            format!(
                "umask 077 && mkdir -p -- {d} && rm -f -- {p} && cat > {p} && {{ sync {p} 2>/dev/null || sync; }} && wc -c < {p}",
                d = quote(dir),
                p = quote(&partial)
            ),
        )
        .timeout(self.stream_timeout);
        let mut counted = CountingReader { inner: body, n: 0 };
        let mut out = Vec::new();
        let written = async {
            let exit = self.exec.run(&write, Some(&mut counted), &mut out).await?;
            exit.check(&write.label)?;
            let on_target: u64 = String::from_utf8_lossy(&out)
                .trim()
                .parse()
                .with_context(|| format!("{} printed no length", write.label))?;
            if on_target != counted.n {
                bail!("{partial} holds {on_target} bytes on the target, {} were sent", counted.n);
            }
            self.finish(key, &partial, &path, mode).await?;
            Ok(counted.n)
        }
        .await;
        if written.is_err() {
            let _ = self.run("remove a partial backup", format!("rm -f -- {}", quote(&partial))).await;
        }
        written.with_context(|| format!("writing {path} on {}", self.exec.describe()))
    }

    async fn put_from_target(
        &self,
        key: &str,
        producer: &Cmd,
        copy: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Option<Result<()>> {
        Some(self.write_in_place(key, producer, copy).await)
    }

    async fn digest(&self, key: &str) -> Option<Result<(u64, String)>> {
        Some(
            async {
                let path = self.path(key)?;
                let cmd = Cmd::new(format!("hash {path} on the target"), digest_sh(&path)).timeout(self.stream_timeout);
                let out = exec::run_ok(self.exec.as_ref(), &cmd).await?;
                parse_digest(&out).with_context(|| format!("{} printed no length and sha256", cmd.label))
            }
            .await,
        )
    }

    async fn get(&self, key: &str) -> Result<Box<dyn AsyncRead + Unpin + Send>> {
        let path = self.path(key)?;
        let cmd = Cmd::new(format!("read {path} on the target"), format!("exec cat -- {}", quote(&path)))
            .timeout(self.stream_timeout);
        let (mut writer, pipe) = tokio::io::duplex(256 * 1024);
        let (tx, status) = oneshot::channel();
        let exec = self.exec.clone();
        tokio::spawn(async move {
            let r = exec.run(&cmd, None, &mut writer).await.and_then(|exit| exit.check(&cmd.label));
            drop(writer);
            let _ = tx.send(r);
        });
        Ok(Box::new(Stdout { pipe, status }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        // NUL-separated `SIZE KEY`: a file name cannot hold a NUL; each key is checked like any other.
        let out = self
            .run(
                "list the backups on the target",
                format!(
                    "[ -d {r} ] || exit 0; cd -- {r} && find . -type f ! -name '*.partial' -printf '%s %P\\0'",
                    r = self.root()
                ),
            )
            .await?;
        let mut objects = Vec::new();
        for entry in out.split('\0').filter(|e| !e.is_empty()) {
            let parsed = entry.split_once(' ').and_then(|(size, key)| Some((size.parse::<u64>().ok()?, key)));
            match parsed {
                Some((size, key)) if key_path(&self.root, key).is_ok() => {
                    if key.starts_with(prefix) {
                        objects.push(Object { key: key.to_string(), size });
                    }
                }
                _ => tracing::warn!("ignoring an entry the target listed that is not a backup key: {entry:?}"),
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.run("delete a backup on the target", format!("rm -f -- {}", quote(&self.path(key)?))).await.map(|_| ())
    }

    async fn check(&self) -> Result<String> {
        let there = self
            .run(
                "check the backup directory on the target",
                format!(
                    "{}; t=$(mktemp \"$d/.deploy-guard-check.XXXXXX\") && rm -f -- \"$t\" && echo \"$d\"",
                    self.nearest()
                ),
            )
            .await
            .with_context(|| format!("{} is not writable", self.describe()))?;
        let there = there.trim();
        Ok(if there == self.root.to_string_lossy() {
            "writable".into()
        } else {
            format!("not there yet: the first backup creates it ({there} is writable)")
        })
    }

    async fn free_space(&self) -> Result<Option<u64>> {
        let out = self
            .run(
                "free space on the target",
                format!("{}; df -Pk -- \"$d\" | awk 'NR == 2 {{ print $4 }}'", self.nearest()),
            )
            .await?;
        let kib: u64 = out.trim().parse().with_context(|| format!("df printed {:?}", out.trim()))?;
        Ok(Some(kib * 1024))
    }

    fn path_on_target(&self, key: &str) -> Option<String> {
        self.path(key).ok()
    }

    fn describe(&self) -> String {
        format!("file://{} on {}", self.root.display(), self.exec.describe())
    }

    fn location(&self, key: &str) -> String {
        format!("file://{}/{key} on {}", self.root.display(), self.exec.describe())
    }
}
