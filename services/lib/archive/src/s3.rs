//! The S3 provider: one object per file (`PutObject`, `metadata.json`
//! last), `ListObjectsV2` page by page, `GetObject`. Works with AWS and with
//! S3-compatible services (path-style addressing is a setting). The SDK's
//! own retries are off: each request is tried up to three times here, so the
//! backoff is short and known; callers retry later on a transient error.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use crate::config::S3Config;
use crate::dir::MAX_FILE_BYTES;
use crate::error::ArchiveError;
use crate::layout::{CopyRef, KEY_FILE, METADATA_FILE, join_prefix};

/// The pauses between the tries of one request.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

/// The most keys one list request asks for (S3's own limit).
pub(crate) const DEFAULT_PAGE_SIZE: i32 = 1000;

/// Error codes that mean "not now" rather than "no".
const TRANSIENT_CODES: [&str; 7] = [
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
];

/// Error codes of credentials the service does not accept.
const CREDENTIAL_CODES: [&str; 6] = [
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
];

pub(crate) struct S3Archive {
    client: Client,
    bucket: String,
    prefix: String,
    region: String,
    endpoint_url: Option<String>,
    page_size: i32,
}

impl fmt::Debug for S3Archive {
    // The client's config holds the credentials; show only where it points.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Archive")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .finish_non_exhaustive()
    }
}

impl S3Archive {
    /// Checks the settings and builds the client (no I/O).
    pub(crate) fn new(config: &S3Config) -> Result<S3Archive, ArchiveError> {
        config.check()?;
        let credentials = Credentials::new(
            config.access_key_id.clone(),
            config.secret_access_key.as_str(),
            config
                .session_token
                .as_ref()
                .map(|token| token.as_str().to_owned()),
            None,
            "certfleet-settings",
        );
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::disabled())
            .force_path_style(config.path_style)
            // Our own SHA-256 in metadata.json checks the files; the SDK's
            // extra checksums are not understood by every S3-compatible service.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint_url) = &config.endpoint_url {
            builder = builder.endpoint_url(endpoint_url);
        }
        Ok(S3Archive {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
            page_size: DEFAULT_PAGE_SIZE,
        })
    }

    pub(crate) fn set_page_size(&mut self, page_size: i32) {
        self.page_size = page_size.clamp(1, DEFAULT_PAGE_SIZE);
    }

    fn key(&self, copy: &CopyRef, file: &str) -> String {
        join_prefix(&self.prefix, &copy.file(file))
    }

    /// `s3://bucket/key` of `file`, for messages.
    pub(crate) fn path_of(&self, copy: &CopyRef, file: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(copy, file))
    }

    pub(crate) fn location_of(&self, copy: &CopyRef) -> String {
        format!(
            "s3://{}/{}/",
            self.bucket,
            join_prefix(&self.prefix, &copy.to_string())
        )
    }

    pub(crate) fn describe(&self) -> String {
        let endpoint = self.endpoint_url.as_deref().unwrap_or("AWS");
        if self.prefix.is_empty() {
            format!("s3://{}/ ({}, {endpoint})", self.bucket, self.region)
        } else {
            format!(
                "s3://{}/{}/ ({}, {endpoint})",
                self.bucket, self.prefix, self.region
            )
        }
    }

    /// The bytes of `file`, or `None` when there is no such object.
    pub(crate) async fn read(
        &self,
        copy: &CopyRef,
        file: &str,
    ) -> Result<Option<Vec<u8>>, ArchiveError> {
        let key = self.key(copy, file);
        let path = self.path_of(copy, file);
        let action = format!("reading {path}");
        with_retries(&action, || async {
            let answer = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await;
            let output = match answer {
                Ok(output) => output,
                Err(SdkError::ServiceError(context)) if context.err().is_no_such_key() => {
                    return Ok(None);
                }
                Err(error) => return Err(sdk_failure(&action, &self.bucket, error)),
            };
            let length = output.content_length().unwrap_or(0);
            if u64::try_from(length).is_ok_and(|length| length > MAX_FILE_BYTES) {
                return Err(ArchiveError::corrupt(
                    path.as_str(),
                    format!("{length} bytes is too large for a copy's file"),
                ));
            }
            let bytes = output.body.collect().await.map_err(|error| {
                ArchiveError::Unavailable(format!("{action}: the answer broke off: {error}"))
            })?;
            Ok(Some(bytes.to_vec()))
        })
        .await
    }

    /// Stores `file` (replacing any object of that key).
    pub(crate) async fn write(
        &self,
        copy: &CopyRef,
        file: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ArchiveError> {
        let key = self.key(copy, file);
        let action = format!("writing {}", self.path_of(copy, file));
        let content_type = match file {
            KEY_FILE => "application/octet-stream",
            METADATA_FILE => "application/json",
            _ => "application/x-pem-file",
        };
        with_retries(&action, || async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type(content_type)
                .body(ByteStream::from(bytes.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|error| sdk_failure(&action, &self.bucket, error))
        })
        .await
    }

    /// Deletes `file`; no error when it is not there.
    pub(crate) async fn remove(&self, copy: &CopyRef, file: &str) -> Result<(), ArchiveError> {
        let key = self.key(copy, file);
        let action = format!("deleting {}", self.path_of(copy, file));
        with_retries(&action, || async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map(|_| ())
                .map_err(|error| sdk_failure(&action, &self.bucket, error))
        })
        .await
    }

    /// Every copy with at least one object, reading every page of the list.
    pub(crate) async fn list(&self) -> Result<Vec<CopyRef>, ArchiveError> {
        let list_prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let action = format!("listing s3://{}/{list_prefix}", self.bucket);
        let mut found = std::collections::BTreeSet::new();
        let mut token: Option<String> = None;
        let mut pages = 0_u32;
        loop {
            let output = with_retries(&action, || async {
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&list_prefix)
                    .max_keys(self.page_size)
                    .set_continuation_token(token.clone())
                    .send()
                    .await
                    .map_err(|error| sdk_failure(&action, &self.bucket, error))
            })
            .await?;
            pages += 1;
            for object in output.contents() {
                let Some(relative) = object
                    .key()
                    .and_then(|key| key.strip_prefix(list_prefix.as_str()))
                else {
                    continue;
                };
                match CopyRef::of_file(relative) {
                    Some(copy) => {
                        found.insert(copy);
                    }
                    None => tracing::debug!(
                        key = relative,
                        "skipping an object that is not a copy's file"
                    ),
                }
            }
            if output.is_truncated() != Some(true) {
                break;
            }
            let Some(next) = output.next_continuation_token() else {
                return Err(ArchiveError::Refused(format!(
                    "{action}: the service said the list goes on but gave no continuation token"
                )));
            };
            token = Some(next.to_owned());
        }
        tracing::debug!(bucket = %self.bucket, pages, copies = found.len(), "listed the archive");
        Ok(found.into_iter().collect())
    }
}

/// Runs `attempt` until it succeeds, fails for good, or has been tried
/// `RETRY_DELAYS.len() + 1` times.
async fn with_retries<T, F, Fut>(action: &str, mut attempt: F) -> Result<T, ArchiveError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ArchiveError>>,
{
    let mut delays = RETRY_DELAYS.iter();
    loop {
        match attempt().await {
            Err(error) if error.is_transient() => {
                let Some(delay) = delays.next() else {
                    return Err(error);
                };
                tracing::warn!(action, %error, delay_ms = delay.as_millis(), "archive storage unavailable, trying again");
                tokio::time::sleep(*delay).await;
            }
            other => return other,
        }
    }
}

/// An S3 failure in plain words: refused (final) or unavailable (retry later).
fn sdk_failure<E>(action: &str, bucket: &str, error: SdkError<E, HttpResponse>) -> ArchiveError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &error {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let code = context.err().code().unwrap_or("no error code");
            let message = context
                .err()
                .message()
                .map(|message| message.trim().trim_end_matches('.'))
                .filter(|message| !message.is_empty())
                .unwrap_or("no message");
            let detail = format!("{message} ({code}, HTTP {status})");
            if status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code) {
                return ArchiveError::Unavailable(format!("{action}: {detail}"));
            }
            let reason = match code {
                "NoSuchBucket" => format!("the bucket {bucket} does not exist ({detail})"),
                "AccessDenied" | "AllAccessDisabled" => format!(
                    "access to the bucket {bucket} was denied: check the bucket policy and the credentials' permissions ({detail})"
                ),
                "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException" => {
                    format!(
                        "the bucket {bucket} is in another region than archive_s3_region says, or needs another endpoint ({detail})"
                    )
                }
                code if CREDENTIAL_CODES.contains(&code)
                    || (context.err().code().is_none() && matches!(status, 401 | 403)) =>
                {
                    format!(
                        "the storage refused the credentials (archive_s3_access_key_id, archive_s3_secret_access_key, archive_s3_session_token) ({detail})"
                    )
                }
                _ => format!("the storage refused ({detail})"),
            };
            ArchiveError::Refused(format!("{action}: {reason}"))
        }
        SdkError::TimeoutError(_) => {
            ArchiveError::Unavailable(format!("{action}: the storage did not answer in time"))
        }
        SdkError::DispatchFailure(_) => ArchiveError::Unavailable(format!(
            "{action}: cannot reach the storage: {}",
            chain(&error)
        )),
        SdkError::ResponseError(_) => ArchiveError::Unavailable(format!(
            "{action}: unreadable answer from the storage: {}",
            chain(&error)
        )),
        _ => ArchiveError::Refused(format!("{action}: {}", chain(&error))),
    }
}

/// An error and its sources in their display forms, repeats left out.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn config(prefix: &str) -> S3Config {
        S3Config {
            bucket: "certfleet-backups".to_owned(),
            prefix: prefix.to_owned(),
            region: "eu-west-1".to_owned(),
            endpoint_url: None,
            path_style: false,
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: Zeroizing::new(SECRET.to_owned()),
            session_token: None,
        }
    }

    #[test]
    fn keys_and_locations_follow_the_layout() {
        let copy = CopyRef::new("o", "c", "0A").unwrap();
        let bare = S3Archive::new(&config("")).unwrap();
        assert_eq!(bare.key(&copy, METADATA_FILE), "o/c/0A/metadata.json");
        assert_eq!(bare.location_of(&copy), "s3://certfleet-backups/o/c/0A/");
        assert_eq!(bare.describe(), "s3://certfleet-backups/ (eu-west-1, AWS)");

        let prefixed = S3Archive::new(&config("prod/certs")).unwrap();
        assert_eq!(
            prefixed.path_of(&copy, KEY_FILE),
            "s3://certfleet-backups/prod/certs/o/c/0A/privkey.enc"
        );
        assert_eq!(
            prefixed.location_of(&copy),
            "s3://certfleet-backups/prod/certs/o/c/0A/"
        );
        assert!(!format!("{prefixed:?}{}", prefixed.describe()).contains(SECRET));
    }

    #[tokio::test]
    async fn transient_failures_are_tried_three_times() {
        let mut tries = 0;
        let error = with_retries("testing", || {
            tries += 1;
            async { Err::<(), _>(ArchiveError::Unavailable("down".to_owned())) }
        })
        .await
        .unwrap_err();
        assert!(error.is_transient());
        assert_eq!(tries, 3);

        let mut tries = 0;
        let error = with_retries("testing", || {
            tries += 1;
            async { Err::<(), _>(ArchiveError::Refused("no".to_owned())) }
        })
        .await
        .unwrap_err();
        assert!(!error.is_transient());
        assert_eq!(tries, 1);
    }
}
