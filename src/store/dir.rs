//! A directory store: objects are files; a put writes `KEY.partial` and renames it when whole.
//! Backups hold every row of the database: objects are created 0600 and the directories this
//! store creates 0700, whatever the umask (it can only take permissions away).

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::{Object, Put, Store};

/// Mode of every object (dumps and manifests).
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the store creates.
pub const DIR_MODE: u32 = 0o700;

/// `mkdir -p` with [`DIR_MODE`] for the directories it creates (existing ones are left alone).
async fn create_dirs(dir: &Path) -> Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// `dir` itself, else its nearest ancestor that exists.
fn nearest_existing(dir: &Path) -> PathBuf {
    dir.ancestors().find(|d| d.is_dir()).unwrap_or(Path::new("/")).to_path_buf()
}

pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> DirStore {
        DirStore { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        key_path(&self.root, key)
    }
}

/// Where `key` lives under `root`; a key that could leave `root` (`..`, absolute) is refused.
pub(super) fn key_path(root: &Path, key: &str) -> Result<PathBuf> {
    let rel = Path::new(key);
    if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("invalid object key {key:?}");
    }
    Ok(root.join(rel))
}

/// The error of a new object's key that already holds one.
pub fn refuse_replace(key: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        anyhow::anyhow!("{key} is already in the store: refusing to replace it (nothing was changed)")
    } else {
        anyhow::Error::new(e).context(format!("cannot store {key}"))
    }
}

#[async_trait]
impl Store for DirStore {
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Unpin + Send), mode: Put) -> Result<u64> {
        let path = self.path(key)?;
        let dir = path.parent().expect("key has a file name");
        create_dirs(dir).await?;
        let partial =
            path.with_extension(format!("{}.partial", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
        let result = async {
            // A `.partial` left by a crash may exist with other permissions: start afresh.
            let _ = tokio::fs::remove_file(&partial).await;
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&partial)
                .await
                .with_context(|| format!("cannot write {}", partial.display()))?;
            let n = tokio::io::copy(body, &mut file).await.with_context(|| format!("writing {}", partial.display()))?;
            file.flush().await?;
            file.sync_all().await?;
            match mode {
                Put::Replace => tokio::fs::rename(&partial, &path).await?,
                // A link is made only where no file is: the kernel refuses to replace one.
                Put::New => {
                    tokio::fs::hard_link(&partial, &path).await.map_err(|e| refuse_replace(key, e))?;
                    tokio::fs::remove_file(&partial).await?;
                }
            }
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

    async fn check(&self) -> Result<String> {
        let there = nearest_existing(&self.root);
        let probe = tempfile::Builder::new().prefix(".deploy-guard-check").tempfile_in(&there).with_context(|| {
            format!("{} is not writable: the backup store {} cannot be written", there.display(), self.root.display())
        })?;
        drop(probe);
        Ok(if there == self.root {
            "writable".into()
        } else {
            format!("not there yet: the first backup creates it ({} is writable)", there.display())
        })
    }

    async fn free_space(&self) -> Result<Option<u64>> {
        let there = nearest_existing(&self.root);
        tokio::task::spawn_blocking(move || free_bytes(&there)).await?.map(Some)
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

/// Bytes an unprivileged user may still write in the filesystem holding `dir`.
#[allow(unsafe_code)]
fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("statvfs {}", dir.display()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn objects_are_0600_in_0700_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        let store = DirStore::new(&root);
        assert!(store.check().await.unwrap().starts_with("not there yet"), "check created the store");
        assert!(!root.exists(), "check created the store");
        let key = "202605/20260510_150000_pre-deploy-abc1234.sql.gz";
        let body: &[u8] = b"rows of every customer";
        let s: &dyn Store = &store;
        assert_eq!(s.put_bytes(key, body, Put::New).await.unwrap(), body.len() as u64);
        s.put_bytes("202605/deeper/x.manifest.json", b"{}", Put::New).await.unwrap();
        assert_eq!(mode(&root), DIR_MODE, "root");
        assert_eq!(mode(&root.join("202605")), DIR_MODE);
        assert_eq!(mode(&root.join("202605/deeper")), DIR_MODE);
        assert_eq!(mode(&root.join(key)), FILE_MODE);
        assert_eq!(mode(&root.join("202605/deeper/x.manifest.json")), FILE_MODE);
        assert_eq!(s.get_bytes(key).await.unwrap(), body, "nothing lost");
    }

    #[tokio::test]
    async fn a_new_object_never_replaces_another_the_journal_replaces_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let s: &dyn Store = &DirStore::new(tmp.path());
        s.put_bytes("a/k.manifest.json", b"first", Put::New).await.unwrap();
        let err = format!("{:#}", s.put_bytes("a/k.manifest.json", b"second", Put::New).await.unwrap_err());
        assert!(err.contains("refusing to replace it"), "{err}");
        assert_eq!(s.get_bytes("a/k.manifest.json").await.unwrap(), b"first");
        assert!(!tmp.path().join("a/k.manifest.json.partial").exists(), "the refused write was left behind");
        s.put_bytes("a/k.manifest.json", b"journal", Put::Replace).await.unwrap();
        assert_eq!(s.get_bytes("a/k.manifest.json").await.unwrap(), b"journal");
    }

    #[tokio::test]
    async fn a_stale_world_readable_partial_is_replaced_not_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore::new(tmp.path());
        let partial = tmp.path().join("k.gz.partial");
        std::fs::write(&partial, b"stale").unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o666)).unwrap();
        let s: &dyn Store = &store;
        s.put_bytes("k.gz", b"fresh", Put::New).await.unwrap();
        assert_eq!(mode(&tmp.path().join("k.gz")), FILE_MODE);
        assert_eq!(s.get_bytes("k.gz").await.unwrap(), b"fresh");
        assert!(!partial.exists());
    }
}
