//! Where backups and manifests live: a directory ([`dir`]) or S3-compatible storage.

pub mod dir;
pub mod s3;

use std::sync::Arc;

use anyhow::{bail, Result};
use async_trait::async_trait;
use tokio::io::AsyncRead;

pub use dir::DirStore;
pub use s3::{S3Settings, S3Store};

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// Object storage, by key (`postgres/202605/…sql.gz`).
#[async_trait]
pub trait Store: Send + Sync {
    /// Streams `body` to `key`. The object appears whole or not at all.
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Unpin + Send)) -> Result<u64>;
    /// Streams the object back.
    async fn get(&self, key: &str) -> Result<Box<dyn AsyncRead + Unpin + Send>>;
    /// Objects whose key starts with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<Object>>;
    async fn delete(&self, key: &str) -> Result<()>;
    /// Checks the store can be reached and written, changing nothing the user keeps.
    async fn check(&self) -> Result<()>;
    /// Where the store is, for messages ("file:///var/backups").
    fn describe(&self) -> String;
}

impl<'a> dyn Store + 'a {
    pub async fn put_bytes(&self, key: &str, data: &[u8]) -> Result<u64> {
        let mut src = data;
        self.put(key, &mut src).await
    }

    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut r = self.get(key).await?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }
}

/// `backup.store`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    Dir(std::path::PathBuf),
    S3 { bucket: String, prefix: String },
}

impl StoreUrl {
    pub fn parse(s: &str) -> Result<StoreUrl> {
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                bail!("{s:?}: a file:// store needs an absolute path (file:///var/backups/app)");
            }
            return Ok(StoreUrl::Dir(path.into()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{s:?}: no bucket (s3://bucket/prefix)");
            }
            return Ok(StoreUrl::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() });
        }
        bail!("{s:?}: expected file:///absolute/dir or s3://bucket/prefix")
    }
}

/// Opens the store `backup.store` names (S3 credentials from the process environment).
pub fn open(config: &crate::config::Config) -> Result<Arc<dyn Store>> {
    open_with(config, &crate::config::process_env())
}

/// Like [`open`], with the environment given.
pub fn open_with(config: &crate::config::Config, vars: &[(String, String)]) -> Result<Arc<dyn Store>> {
    let b = &config.backup;
    match StoreUrl::parse(&b.store)? {
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
            },
            vars,
        )?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        assert_eq!(StoreUrl::parse("file:///var/b").unwrap(), StoreUrl::Dir("/var/b".into()));
        assert_eq!(
            StoreUrl::parse("s3://bk/postgres/").unwrap(),
            StoreUrl::S3 { bucket: "bk".into(), prefix: "postgres".into() }
        );
        assert!(StoreUrl::parse("file://rel").is_err());
        assert!(StoreUrl::parse("/var/b").is_err());
        assert!(StoreUrl::parse("s3:///x").is_err());
    }
}
