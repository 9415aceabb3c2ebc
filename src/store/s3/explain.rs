//! S3's errors, said as what to fix.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use anyhow::anyhow;

use super::Inner;

impl Inner {
    /// Turns an SDK error into one that says what to fix.
    pub(super) fn explain<E>(
        &self,
        what: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_string);
        let detail = chain(&err);
        let bucket = &self.bucket;
        let endpoint = &self.endpoint;
        let akid = self.access_key.as_deref().unwrap_or("?");
        let msg = match (&err, code.as_deref(), status) {
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _, _) => format!(
                "cannot reach the S3 endpoint {endpoint}: check backup.endpoint (and backup.region), and that the \
                 server is up and reachable from this machine ({detail})"
            ),
            (_, Some("InvalidAccessKeyId" | "NotSignedUp"), _) => format!(
                "the S3 server at {endpoint} does not know the access key {akid}: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY to a key of this account"
            ),
            (_, Some("SignatureDoesNotMatch"), _) => format!(
                "the S3 server at {endpoint} rejected the request signature: AWS_SECRET_ACCESS_KEY is not the secret \
                 of access key {akid} (or backup.region is wrong for this endpoint)"
            ),
            (_, Some("NoSuchBucket"), _) => format!(
                "bucket {bucket:?} does not exist at {endpoint}: create it, or fix the bucket name in backup.store"
            ),
            (
                _,
                Some("AuthorizationHeaderMalformed" | "PermanentRedirect" | "IllegalLocationConstraintException"),
                _,
            )
            | (_, _, Some(301)) => format!(
                "bucket {bucket:?} is not in region {} at {endpoint}: fix backup.region (or backup.endpoint)",
                err.message().unwrap_or("the configured region")
            ),
            (_, Some("AccessDenied" | "AllAccessDisabled"), _) | (_, _, Some(403)) => format!(
                "access to bucket {bucket:?} at {endpoint} was denied for key {akid}: it needs s3:ListBucket, \
                 s3:GetObject, s3:PutObject, s3:DeleteObject and s3:AbortMultipartUpload on the bucket ({})",
                code.as_deref().unwrap_or("403")
            ),
            (_, Some("PreconditionFailed"), _) | (_, _, Some(412)) => {
                "an object is already stored at that key: refusing to replace it (nothing was changed)".to_string()
            }
            (_, _, Some(404)) if what.starts_with("checking") => format!(
                "bucket {bucket:?} does not exist at {endpoint}: create it, or fix the bucket name in backup.store"
            ),
            _ => format!(
                "S3 at {endpoint} answered: {detail}{}",
                status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
            ),
        };
        anyhow!("{what}: {msg}")
    }
}

/// An error and its causes, each once: "dispatch failure: io error: … Connection refused".
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
