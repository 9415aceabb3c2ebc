//! A directory store: objects are files; a put writes `KEY.partial` and renames it when whole.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::{Object, Store};

pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> DirStore {
        DirStore { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            bail!("invalid object key {key:?}");
        }
        Ok(self.root.join(rel))
    }
}

#[async_trait]
impl Store for DirStore {
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Unpin + Send)) -> Result<u64> {
        let path = self.path(key)?;
        let dir = path.parent().expect("key has a file name");
        tokio::fs::create_dir_all(dir).await.with_context(|| format!("cannot create {}", dir.display()))?;
        let partial =
            path.with_extension(format!("{}.partial", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
        let result = async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .with_context(|| format!("cannot write {}", partial.display()))?;
            let n = tokio::io::copy(body, &mut file).await.with_context(|| format!("writing {}", partial.display()))?;
            file.flush().await?;
            file.sync_all().await?;
            tokio::fs::rename(&partial, &path).await?;
            Ok::<u64, anyhow::Error>(n)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }

    async fn get(&self, key: &str) -> Result<Box<dyn AsyncRead + Unpin + Send>> {
        let path = self.path(key)?;
        let file = tokio::fs::File::open(&path).await.with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Box::new(file))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
            };
            while let Some(entry) = entries.next_entry().await? {
                let meta = entry.metadata().await?;
                let path = entry.path();
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let key = path.strip_prefix(&self.root).expect("below root").to_string_lossy().into_owned();
                if key.ends_with(".partial") || !key.starts_with(prefix) {
                    continue;
                }
                out.push(Object { key, size: meta.len() });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot delete {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    async fn check(&self) -> Result<()> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .with_context(|| format!("backup store {} cannot be created", self.root.display()))?;
        let probe = tempfile::Builder::new()
            .prefix(".deploy-guard-check")
            .tempfile_in(&self.root)
            .with_context(|| format!("backup store {} is not writable", self.root.display()))?;
        drop(probe);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
