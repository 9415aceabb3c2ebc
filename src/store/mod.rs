//! Where backups and manifests live: a directory ([`dir`]) or S3-compatible storage.

pub mod dir;
pub mod s3;
pub mod target;

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use tokio::io::AsyncRead;

pub use dir::DirStore;
pub use s3::{S3Settings, S3Store};
pub use target::TargetDirStore;

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// Whether a put may replace what is at its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// A new object (a backup, its copy, a replay file, a manifest's first version): a key that
    /// already holds one is refused, never overwritten.
    New,
    /// The next version of an object this run wrote (a manifest's journal).
    Replace,
}

/// Object storage, by key (`postgres/202605/…sql.gz`).
#[async_trait]
pub trait Store: Send + Sync {
    /// Streams `body` to `key`. The object appears whole or not at all; with [`Put::New`] it
    /// never replaces another.
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Unpin + Send), mode: Put) -> Result<u64>;
    /// Streams the object back.
    async fn get(&self, key: &str) -> Result<Box<dyn AsyncRead + Unpin + Send>>;
    /// Objects whose key starts with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<Object>>;
    async fn delete(&self, key: &str) -> Result<()>;
    /// Checks the store can be reached and written, changing nothing (a directory that is not
    /// there yet is left so: the first backup creates it); says what it found.
    async fn check(&self) -> Result<String>;
    /// Bytes free where the objects go, when the store can tell (a directory can, S3 cannot).
    async fn free_space(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Writes the new object `key` from what `producer` (a command run on the target) prints,
    /// when the store is a directory there, and streams the same bytes to `copy` as they are
    /// written (for the check here). `None`: the store is elsewhere (use [`Store::put`]).
    async fn put_from_target(
        &self,
        _key: &str,
        _producer: &crate::exec::Cmd,
        _copy: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Option<Result<()>> {
        None
    }
    /// The object's length and sha256, read where the store is without bringing the bytes here
    /// (a directory on the target hashes them there). `None`: only [`Store::get`] reads it.
    async fn digest(&self, _key: &str) -> Option<Result<(u64, String)>> {
        None
    }
    /// The object's path on the target, when the store is a directory there: a restore then
    /// decompresses it in place rather than bring it across the link and back.
    fn path_on_target(&self, _key: &str) -> Option<String> {
        None
    }
    /// Where the store is, for messages ("file:///var/backups").
    fn describe(&self) -> String;
    /// Where one object is, for people ("s3://bucket/prefix/key").
    fn location(&self, key: &str) -> String {
        format!("{}/{key}", self.describe().trim_end_matches('/'))
    }
}

impl<'a> dyn Store + 'a {
    pub async fn put_bytes(&self, key: &str, data: &[u8], mode: Put) -> Result<u64> {
        let mut src = data;
        self.put(key, &mut src, mode).await
    }

    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut r = self.get(key).await?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }
}

pub use crate::model::StoreUrl;

/// Opens the store `backup.store` names (S3 credentials from the process environment); a
/// directory is on the target, reached through `exec`, unless `backup.store_on: runner`.
pub fn open(config: &crate::config::Config, exec: Arc<dyn crate::exec::Executor>) -> Result<Arc<dyn Store>> {
    let vars = crate::config::process_env();
    match StoreUrl::parse(&config.backup.store)? {
        StoreUrl::Dir(path) if config.store_on_target() => {
            Ok(Arc::new(TargetDirStore::new(exec, path, config.database.stream_timeout)))
        }
        url => open_url(config, url, &vars),
    }
}

/// Opens `backup.copy_to`, if set.
pub fn open_copy(config: &crate::config::Config) -> Result<Option<Arc<dyn Store>>> {
    let Some(copy) = &config.backup.copy_to else { return Ok(None) };
    open_url(config, StoreUrl::parse(copy)?, &crate::config::process_env()).map(Some)
}

/// Opens a store on this machine or in S3, with the environment given.
pub fn open_url(config: &crate::config::Config, url: StoreUrl, vars: &[(String, String)]) -> Result<Arc<dyn Store>> {
    let b = &config.backup;
    match url {
        StoreUrl::Dir(path) => Ok(Arc::new(DirStore::new(path))),
        StoreUrl::S3 { bucket, prefix } => Ok(Arc::new(S3Store::new(
            S3Settings {
                bucket,
                prefix,
                endpoint: b.endpoint.clone(),
                region: b.region.clone(),
                path_style: b.path_style,
                part_size: b.part_size,
                parts_in_flight: b.parts_in_flight,
                sse: b.sse.clone(),
                sse_kms_key_id: b.sse_kms_key_id.clone(),
                checksums: b.checksums.unwrap_or(b.endpoint.is_none()),
            },
            vars,
        )?)),
    }
}
