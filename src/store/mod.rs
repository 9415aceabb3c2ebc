//! Where backups and manifests live: a directory ([`dir`]) or S3-compatible storage.

pub mod dir;
pub mod s3;

use std::sync::Arc;

use anyhow::Result;
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

pub use crate::model::StoreUrl;

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
