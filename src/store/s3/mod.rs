//! An S3-compatible store (AWS S3, Backblaze B2, Cloudflare R2, MinIO) through aws-sdk-s3.
//!
//! Uploads of unknown length stream as multipart uploads of equal, fixed-size parts (R2 wants
//! them equal), a few in flight at once: memory stays within `part_size × parts_in_flight`
//! whatever the database size. A part that fails is retried with backoff; an upload that fails
//! in any way is aborted, so no orphaned parts stay behind to be billed. With
//! `backup.checksums`, S3 checks and keeps each part's SHA-256 ([`checksum`]).

mod checksum;
mod explain;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use self::checksum::{Sent, Sums};
use super::{Object, Put, Store};

/// S3's limit on the parts of one multipart upload.
const MAX_PARTS: i32 = 10_000;
/// Attempts per part (the first try included).
const PART_ATTEMPTS: u32 = 5;

/// What `backup.*` says about an S3 store.
#[derive(Clone, Debug)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub part_size: u64,
    pub parts_in_flight: u32,
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    /// Send each part's SHA-256 and verify by S3's checksum (else by reading back).
    pub checksums: bool,
}

struct Inner {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: String,
    part_size: usize,
    parts_in_flight: usize,
    sse: Option<ServerSideEncryption>,
    sse_kms_key_id: Option<String>,
    /// Why there are no credentials, when there are none.
    no_credentials: Option<String>,
    access_key: Option<String>,
    checksums: bool,
    /// What this process uploaded, by full key, for [`Store::digest`].
    sent: Mutex<HashMap<String, Sent>>,
}

pub struct S3Store {
    inner: Arc<Inner>,
}

fn env(vars: &[(String, String)], name: &str) -> Option<String> {
    vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
}

impl S3Store {
    /// Builds the client; nothing is sent until an operation runs. Credentials come from
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` in `vars`.
    pub fn new(s: S3Settings, vars: &[(String, String)]) -> Result<S3Store> {
        let region = s
            .region
            .clone()
            .or_else(|| env(vars, "AWS_REGION"))
            .or_else(|| env(vars, "AWS_DEFAULT_REGION"))
            .or_else(|| s.endpoint.as_ref().map(|_| "us-east-1".to_string()));
        let Some(region) = region else {
            bail!("backup.region: required for AWS S3 (or set AWS_REGION), e.g. eu-west-1");
        };
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(https)
            .region(Region::new(region.clone()))
            .force_path_style(s.path_style.unwrap_or(s.endpoint.is_some()))
            // B2, R2 and MinIO reject the CRC32 headers newer SDKs send by default.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(10)).build());
        if let Some(e) = &s.endpoint {
            b = b.endpoint_url(e.trim_end_matches('/'));
        }
        let (akid, secret) = (env(vars, "AWS_ACCESS_KEY_ID"), env(vars, "AWS_SECRET_ACCESS_KEY"));
        let no_credentials = match (&akid, &secret) {
            (Some(a), Some(sk)) => {
                b = b.credentials_provider(Credentials::new(
                    a,
                    sk,
                    env(vars, "AWS_SESSION_TOKEN"),
                    None,
                    "environment",
                ));
                None
            }
            (None, None) => Some("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set".to_string()),
            (None, Some(_)) => Some("AWS_ACCESS_KEY_ID is not set (AWS_SECRET_ACCESS_KEY is)".to_string()),
            (Some(_), None) => Some("AWS_SECRET_ACCESS_KEY is not set (AWS_ACCESS_KEY_ID is)".to_string()),
        };
        let endpoint = s.endpoint.clone().unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        Ok(S3Store {
            inner: Arc::new(Inner {
                client: Client::from_conf(b.build()),
                bucket: s.bucket,
                prefix: s.prefix,
                endpoint,
                part_size: s.part_size as usize,
                parts_in_flight: s.parts_in_flight.max(1) as usize,
                sse: s.sse.as_deref().map(ServerSideEncryption::from),
                sse_kms_key_id: s.sse_kms_key_id,
                no_credentials,
                access_key: akid,
                checksums: s.checksums,
                sent: Mutex::default(),
            }),
        })
    }
}

impl Inner {
    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn credentials(&self) -> Result<()> {
        match &self.no_credentials {
            Some(why) => bail!(
                "no S3 credentials for {}: {why}; set them in the environment (secrets are never read from the config file)",
                self.describe()
            ),
            None => Ok(()),
        }
    }

    async fn put_object(&self, key: &str, body: Bytes, mode: Put, checksum: Option<String>) -> Result<()> {
        let len = body.len() as i64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len)
            .body(ByteStream::from(body))
            .set_checksum_sha256(checksum)
            .set_if_none_match(if_none_match(mode))
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .send()
            .await
            .map_err(|e| self.explain(&format!("uploading s3://{}/{key}", self.bucket), e))?;
        Ok(())
    }

    /// Uploads one part, retrying with backoff (500 ms, 1 s, 2 s, 4 s) unless the server
    /// refused it for good (a 4xx other than timeouts and throttling).
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
        checksum: Option<String>,
    ) -> Result<CompletedPart> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(body.len() as i64)
                .body(ByteStream::from(body.clone()))
                .set_checksum_sha256(checksum.clone())
                .customize()
                .config_override(aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled()))
                .send()
                .await;
            match r {
                Ok(out) => {
                    tracing::debug!("part {number} of {key} uploaded ({} bytes)", body.len());
                    return Ok(CompletedPart::builder()
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_sha256(checksum)
                        .part_number(number)
                        .build());
                }
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    let permanent = matches!(status, Some(s) if (400..500).contains(&s) && s != 408 && s != 429);
                    let err = self.explain(&format!("uploading part {number} of s3://{}/{key}", self.bucket), e);
                    if permanent || attempt >= PART_ATTEMPTS {
                        return Err(err.context(format!("part {number} failed after {attempt} attempt(s)")));
                    }
                    let wait = Duration::from_millis(500 << (attempt - 1));
                    tracing::warn!(
                        "{err:#}; retrying part {number} in {} (attempt {} of {PART_ATTEMPTS})",
                        humantime::format_duration(wait),
                        attempt + 1
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Aborts a multipart upload, retrying for about half a minute (the server may be coming
    /// back); says how to finish the job by hand when it cannot.
    async fn abort(&self, key: &str, upload_id: &str) {
        tracing::warn!("aborting the multipart upload of s3://{}/{key} so that no parts stay behind", self.bucket);
        let mut wait = Duration::from_millis(500);
        let mut last = None;
        for _ in 0..7 {
            match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await {
                Ok(_) => {
                    tracing::info!("multipart upload of s3://{}/{key} aborted: no parts left", self.bucket);
                    return;
                }
                Err(e) if e.code() == Some("NoSuchUpload") => return,
                Err(e) => last = Some(self.explain("aborting the multipart upload", e)),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(8));
        }
        tracing::error!(
            "{:#}\nits parts stay in the bucket (and are billed) until aborted; run:\n  aws s3api abort-multipart-upload \
             --endpoint-url {} --bucket {} --key {} --upload-id {upload_id}\n(a lifecycle rule \
             AbortIncompleteMultipartUpload on the bucket cleans such uploads up by itself)",
            last.unwrap_or_else(|| anyhow!("the multipart upload could not be aborted")),
            self.endpoint,
            self.bucket,
            crate::exec::quote(key),
        );
    }

    /// Streams `body` as a multipart upload whose first part is `first`; returns bytes sent.
    async fn multipart(
        self: &Arc<Self>,
        key: &str,
        upload_id: &str,
        first: Bytes,
        body: &mut (dyn AsyncRead + Unpin + Send),
        mode: Put,
        mut sums: Option<&mut Sums>,
    ) -> Result<u64> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut total = 0u64;
        let mut number = 0i32;
        let mut next = Some(first);
        let result = async {
            while let Some(part) = next.take() {
                number += 1;
                if number > MAX_PARTS {
                    bail!(
                        "the backup needs more than {MAX_PARTS} parts of {}: raise backup.part_size",
                        crate::model::human_bytes(self.part_size as u64)
                    );
                }
                total += part.len() as u64;
                let checksum = sums.as_mut().map(|s| s.part(&part));
                let (me, key, id) = (self.clone(), key.to_string(), upload_id.to_string());
                tasks.spawn(async move { me.upload_part(&key, &id, number, part, checksum).await });
                // Memory bound: at most parts_in_flight buffers, the one being filled included.
                while tasks.len() >= self.parts_in_flight {
                    done.push(tasks.join_next().await.expect("a task")??);
                }
                let part = read_part(body, self.part_size).await.context("reading the backup stream")?;
                if !part.is_empty() {
                    next = Some(part);
                }
            }
            while let Some(r) = tasks.join_next().await {
                done.push(r??);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            // Let the parts in flight end (each bounded by its retries) before the abort, so
            // none lands after it.
            while tasks.join_next().await.is_some() {}
            return Err(e);
        }
        done.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .set_if_none_match(if_none_match(mode))
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await
            .map_err(|e| self.explain(&format!("completing the upload of s3://{}/{key}", self.bucket), e))?;
        tracing::debug!("{key}: {number} parts, {total} bytes");
        Ok(total)
    }
}

impl Inner {
    /// Keeps what an upload sent, for [`Store::digest`].
    fn remember(&self, full: &str, sent: Option<Sent>) {
        if let Some(sent) = sent {
            self.sent.lock().expect("sent").insert(full.to_string(), sent);
        }
    }

    /// The object's length and the SHA-256 checksum S3 keeps of it, if it keeps one.
    async fn checksum_of(&self, full: &str) -> Result<Option<(u64, String)>> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| self.explain(&format!("asking for the checksum of s3://{}/{full}", self.bucket), e))?;
        let size = head.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or_default();
        Ok(head.checksum_sha256().map(|c| (size, c.to_string())))
    }
}

/// A new object is written only where none is: S3's conditional write (`If-None-Match: *`, on a
/// single PUT and on CompleteMultipartUpload) refuses to replace an existing key with 412.
fn if_none_match(mode: Put) -> Option<String> {
    (mode == Put::New).then(|| "*".to_string())
}

/// Reads up to `size` bytes (less only at the end of the stream).
async fn read_part(body: &mut (dyn AsyncRead + Unpin + Send), size: usize) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        let n = body.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

/// Aborts the upload if the put is dropped half-way (a cancelled run).
struct AbortOnDrop {
    inner: Option<(Arc<Inner>, String, String)>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some((inner, key, id)) = self.inner.take() {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move { inner.abort(&key, &id).await });
            }
        }
    }
}

#[async_trait]
impl Store for S3Store {
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Unpin + Send), mode: Put) -> Result<u64> {
        let s = &self.inner;
        s.credentials()?;
        let full = s.full_key(key);
        let first = read_part(body, s.part_size).await.context("reading the backup stream")?;
        let mut sums = s.checksums.then(Sums::default);
        if first.len() < s.part_size {
            let n = first.len() as u64;
            let checksum = sums.as_mut().map(|c| c.part(&first));
            s.put_object(&full, first, mode, checksum).await?;
            s.remember(&full, sums.map(|c| c.sent(false)));
            return Ok(n);
        }
        let created = s
            .client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(&full)
            .set_server_side_encryption(s.sse.clone())
            .set_ssekms_key_id(s.sse_kms_key_id.clone())
            .set_checksum_algorithm(s.checksums.then_some(ChecksumAlgorithm::Sha256))
            .send()
            .await
            .map_err(|e| s.explain(&format!("starting the upload of s3://{}/{full}", s.bucket), e))?;
        let upload_id = created.upload_id().context("the S3 server returned no upload id")?.to_string();
        let mut guard = AbortOnDrop { inner: Some((s.clone(), full.clone(), upload_id.clone())) };
        let r = s.multipart(&full, &upload_id, first, body, mode, sums.as_mut()).await;
        guard.inner = None;
        match r {
            Ok(_) => s.remember(&full, sums.map(|c| c.sent(true))),
            Err(_) => s.abort(&full, &upload_id).await,
        }
        r
    }

    async fn get(&self, key: &str) -> Result<Box<dyn AsyncRead + Unpin + Send>> {
        let s = &self.inner;
        s.credentials()?;
        let full = s.full_key(key);
        let out = match s.client.get_object().bucket(&s.bucket).key(&full).send().await {
            Ok(o) => o,
            Err(e) if e.code() == Some("NoSuchKey") => {
                bail!("no object {key} in {} (at {})", s.describe(), s.endpoint)
            }
            Err(e) => return Err(s.explain(&format!("reading s3://{}/{full}", s.bucket), e)),
        };
        Ok(Box::new(out.body.into_async_read()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        let s = &self.inner;
        s.credentials()?;
        let strip = if s.prefix.is_empty() { String::new() } else { format!("{}/", s.prefix) };
        let mut pages =
            s.client.list_objects_v2().bucket(&s.bucket).prefix(format!("{strip}{prefix}")).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s.explain(&format!("listing {}", s.describe()), e))?;
            for o in page.contents() {
                let Some(k) = o.key().and_then(|k| k.strip_prefix(strip.as_str())) else {
                    continue;
                };
                out.push(Object { key: k.to_string(), size: o.size().unwrap_or(0).max(0) as u64 });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let s = &self.inner;
        s.credentials()?;
        let full = s.full_key(key);
        match s.client.delete_object().bucket(&s.bucket).key(&full).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchKey") => Ok(()),
            Err(e) => Err(s.explain(&format!("deleting s3://{}/{full}", s.bucket), e)),
        }
    }

    async fn check(&self) -> Result<String> {
        let s = &self.inner;
        s.credentials()?;
        let what = format!("checking {}", s.describe());
        s.client
            .list_objects_v2()
            .bucket(&s.bucket)
            .prefix(s.full_key(""))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| s.explain(&what, e))?;
        let probe = s.full_key(&format!(".deploy-guard-check-{}", std::process::id()));
        const PROBE: &[u8] = b"deploy-guard check\n";
        let mut sums = s.checksums.then(Sums::default);
        let checksum = sums.as_mut().map(|c| c.part(PROBE));
        s.put_object(&probe, Bytes::from_static(PROBE), Put::Replace, checksum).await.with_context(|| what.clone())?;
        let kept = match sums {
            Some(sums) => match s.checksum_of(&probe).await? {
                Some((_, c)) if checksum::same(&c, &sums.sent(false).checksum) => "; keeps SHA-256 checksums",
                _ => "; keeps no SHA-256 checksums: backups are read back to verify them",
            },
            None => "",
        };
        s.client
            .delete_object()
            .bucket(&s.bucket)
            .key(&probe)
            .send()
            .await
            .map_err(|e| s.explain(&format!("{what} (deleting the probe object {probe})"), e))?;
        Ok(format!("writable{kept}"))
    }

    /// The length and sha256 of an object this process uploaded, vouched for by S3's checksum of
    /// what it stored; `None` where S3 kept none (it is then read back).
    async fn digest(&self, key: &str) -> Option<Result<(u64, String)>> {
        let s = &self.inner;
        let full = s.full_key(key);
        let sent = s.sent.lock().expect("sent").get(&full).cloned()?;
        let (size, theirs) = match s.checksum_of(&full).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                tracing::warn!(
                    "{} keeps no SHA-256 checksum of {key}: reading it back to verify it \
                     (set backup.checksums: false to skip asking)",
                    s.endpoint
                );
                return None;
            }
            Err(e) => return Some(Err(e)),
        };
        if size != sent.size || !checksum::same(&theirs, &sent.checksum) {
            return Some(Err(anyhow!(
                "S3 holds other bytes at s3://{}/{full} than were sent: {size} bytes with SHA-256 checksum {theirs}, \
                 where {} bytes with {} were sent",
                s.bucket,
                sent.size,
                sent.checksum
            )));
        }
        tracing::debug!("{key}: S3's SHA-256 checksum {theirs} is the one sent");
        Some(Ok((sent.size, sent.sha256)))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
