//! `AwsKms`: data keys from AWS KMS (`GenerateDataKey`, AES-256) and unwrapped
//! by it (`Decrypt`), both with the secret's context as the KMS encryption
//! context, so KMS itself refuses a wrapped key copied to another owner.
//!
//! Blobs record `aws-kms:` and the key ARN that KMS answered with; opening
//! decrypts under that ARN, so blobs stay readable after an alias is pointed
//! at a new key (KMS decides by its key policy who may decrypt). Plaintext
//! data keys go straight into [`DataKey`] and are never cached.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use crate::{DataKey, EncryptionContext, KeyWrapper, VaultError, WrappedKey};

const KEY_ID_PREFIX: &str = "aws-kms:";

/// Error codes that mean "not now" rather than "no".
const TRANSIENT_CODES: [&str; 7] = [
    "ThrottlingException",
    "Throttling",
    "LimitExceededException",
    "KMSInternalException",
    "KeyUnavailableException",
    "DependencyTimeoutException",
    "ServiceUnavailable",
];

/// Error codes of credentials the service does not accept.
const CREDENTIAL_CODES: [&str; 6] = [
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "IncompleteSignature",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
];

/// How to reach the KMS key; the secrets never appear in `Debug` output.
#[derive(Clone)]
pub struct AwsKmsConfig {
    /// A key id, key ARN, alias name (`alias/…`) or alias ARN.
    pub key_id: String,
    pub region: String,
    /// Another endpoint than AWS's (moto, a KMS-compatible service, a proxy).
    pub endpoint_url: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
}

impl fmt::Debug for AwsKmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsConfig")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl AwsKmsConfig {
    /// Checks every value without I/O; errors name the setting
    /// (`kms_key_id`, …) and never repeat a secret.
    pub fn check(&self) -> Result<(), VaultError> {
        let setting =
            |setting: &'static str, message: String| VaultError::Setting { setting, message };
        let key_id = self.key_id.trim();
        if key_id.is_empty() {
            return Err(setting(
                "kms_key_id",
                "is required with the aws-kms vault provider (a key id, key ARN or alias/NAME)"
                    .to_owned(),
            ));
        }
        if key_id.len() > 2048 || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(setting(
                "kms_key_id",
                format!("{key_id:?} is not a KMS key id, key ARN or alias"),
            ));
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(setting(
                "kms_region",
                format!(
                    "{:?} is not an AWS region name (like us-east-1)",
                    self.region
                ),
            ));
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(setting(
                "kms_endpoint_url",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        if self.access_key_id.is_empty() {
            return Err(setting(
                "kms_access_key_id",
                "is required with the aws-kms vault provider".to_owned(),
            ));
        }
        if !self
            .access_key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
        {
            return Err(setting(
                "kms_access_key_id",
                format!(
                    "{:?} is not an AWS access key id (letters and digits)",
                    self.access_key_id
                ),
            ));
        }
        if self.secret_access_key.is_empty() {
            return Err(setting(
                "kms_secret_access_key",
                "is required with the aws-kms vault provider".to_owned(),
            ));
        }
        if !self.secret_access_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(setting(
                "kms_secret_access_key",
                "contains spaces or control characters".to_owned(),
            ));
        }
        if self
            .session_token
            .as_ref()
            .is_some_and(|token| token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(setting(
                "kms_session_token",
                "contains spaces or control characters".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Wraps data keys with an AWS KMS key.
pub struct AwsKms {
    client: Client,
    /// The configured key, as given; `GenerateDataKey` uses it.
    configured_key: String,
    /// `aws-kms:` and the configured key.
    key_id: String,
}

impl fmt::Debug for AwsKms {
    // The client's config holds the credentials; show only the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AwsKms {
    /// Checks the settings and builds the client (no I/O).
    pub fn new(config: &AwsKmsConfig) -> Result<AwsKms, VaultError> {
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
        let timeouts = aws_sdk_kms::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(10))
            .operation_timeout(Duration::from_secs(30))
            .build();
        let mut builder = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .timeout_config(timeouts);
        if let Some(endpoint_url) = &config.endpoint_url {
            builder = builder.endpoint_url(endpoint_url);
        }
        let configured_key = config.key_id.trim().to_owned();
        Ok(AwsKms {
            client: Client::from_conf(builder.build()),
            key_id: format!("{KEY_ID_PREFIX}{configured_key}"),
            configured_key,
        })
    }
}

fn kms_context(ctx: &EncryptionContext) -> HashMap<String, String> {
    ctx.to_map().into_iter().collect()
}

/// The plaintext of a KMS answer as a data key; the SDK's copy is zeroized.
fn take_data_key(plaintext: Option<Blob>, action: &str) -> Result<DataKey, VaultError> {
    let Some(plaintext) = plaintext else {
        return Err(VaultError::Refused(format!(
            "{action}: the key service answered without a data key"
        )));
    };
    let bytes = Zeroizing::new(plaintext.into_inner());
    DataKey::from_slice(&bytes)
}

#[async_trait]
impl KeyWrapper for AwsKms {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), VaultError> {
        let action = format!("generating a data key under {}", self.key_id);
        let mut output = self
            .client
            .generate_data_key()
            .key_id(&self.configured_key)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(kms_context(ctx)))
            .send()
            .await
            .map_err(|error| sdk_failure(&action, &self.key_id, error))?;
        let data_key = take_data_key(output.plaintext.take(), &action)?;
        let Some(ciphertext) = output.ciphertext_blob.take() else {
            return Err(VaultError::Refused(format!(
                "{action}: the key service answered without the wrapped key"
            )));
        };
        // The ARN KMS names is stable where an alias may move to another key.
        let used_key = output.key_id().unwrap_or(&self.configured_key);
        let wrapped = WrappedKey {
            key_id: format!("{KEY_ID_PREFIX}{used_key}"),
            ciphertext: ciphertext.into_inner(),
        };
        Ok((data_key, wrapped))
    }

    async fn wrap_data_key(
        &self,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<WrappedKey, VaultError> {
        let action = format!("wrapping a data key under {}", self.key_id);
        // The request owns its copy of the plaintext; it is dropped once sent.
        let mut output = self
            .client
            .encrypt()
            .key_id(&self.configured_key)
            .plaintext(Blob::new(key.bytes().to_vec()))
            .set_encryption_context(Some(kms_context(ctx)))
            .send()
            .await
            .map_err(|error| sdk_failure(&action, &self.key_id, error))?;
        let Some(ciphertext) = output.ciphertext_blob.take() else {
            return Err(VaultError::Refused(format!(
                "{action}: the key service answered without the wrapped key"
            )));
        };
        let used_key = output.key_id().unwrap_or(&self.configured_key);
        Ok(WrappedKey {
            key_id: format!("{KEY_ID_PREFIX}{used_key}"),
            ciphertext: ciphertext.into_inner(),
        })
    }

    /// Every `aws-kms:` key: KMS decrypts under the key the blob names, if
    /// the credentials may use it.
    fn can_unwrap(&self, key_id: &str) -> bool {
        key_id.starts_with(KEY_ID_PREFIX)
    }

    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        ctx: &EncryptionContext,
    ) -> Result<DataKey, VaultError> {
        let Some(blob_key) = wrapped.key_id.strip_prefix(KEY_ID_PREFIX) else {
            return Err(VaultError::WrongKey {
                blob_key_id: wrapped.key_id.clone(),
                vault_key_id: self.key_id.clone(),
            });
        };
        let action = format!("decrypting a data key with {}", wrapped.key_id);
        let mut output = self
            .client
            .decrypt()
            .key_id(blob_key)
            .ciphertext_blob(Blob::new(wrapped.ciphertext.clone()))
            .set_encryption_context(Some(kms_context(ctx)))
            .send()
            .await
            .map_err(|error| sdk_failure(&action, &wrapped.key_id, error))?;
        // The recorded ARN is not covered by any tag; KMS's answer checks it.
        if let Some(answered) = output.key_id()
            && blob_key.starts_with("arn:")
            && answered != blob_key
        {
            return Err(VaultError::Refused(format!(
                "{action}: the key service decrypted with the key {answered}, not the one the blob names"
            )));
        }
        take_data_key(output.plaintext.take(), &action)
    }
}

/// A KMS failure in plain words: refused (final) or unavailable (retry later).
fn sdk_failure<E>(action: &str, key_id: &str, error: SdkError<E, HttpResponse>) -> VaultError
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
                return VaultError::Unavailable(format!("{action}: {detail}"));
            }
            let reason = match code {
                "InvalidCiphertextException" => format!(
                    "the key service refused to decrypt: the encryption context does not match, or the wrapped key was altered ({detail})"
                ),
                "IncorrectKeyException" => format!(
                    "the key service refused to decrypt: the wrapped key belongs to another key than {key_id} ({detail})"
                ),
                "NotFoundException" => {
                    format!("the key service does not know the key {key_id} ({detail})")
                }
                "AccessDeniedException" => format!(
                    "the key service denied access to the key {key_id}: check the key policy and the credentials' permissions ({detail})"
                ),
                "DisabledException" | "KMSInvalidStateException" => {
                    format!("the key {key_id} is disabled or pending deletion ({detail})")
                }
                code if CREDENTIAL_CODES.contains(&code)
                    || (context.err().code().is_none() && matches!(status, 401 | 403)) =>
                {
                    format!(
                        "the key service refused the credentials (kms_access_key_id, kms_secret_access_key, kms_session_token) or their access to the key {key_id} ({detail})"
                    )
                }
                _ => format!("the key service refused ({detail})"),
            };
            VaultError::Refused(format!("{action}: {reason}"))
        }
        SdkError::TimeoutError(_) => {
            VaultError::Unavailable(format!("{action}: the key service did not answer in time"))
        }
        SdkError::DispatchFailure(_) => VaultError::Unavailable(format!(
            "{action}: cannot reach the key service: {}",
            chain(&error)
        )),
        SdkError::ResponseError(_) => VaultError::Unavailable(format!(
            "{action}: unreadable answer from the key service: {}",
            chain(&error)
        )),
        _ => VaultError::Refused(format!("{action}: {}", chain(&error))),
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
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn config() -> AwsKmsConfig {
        AwsKmsConfig {
            key_id: "alias/certfleet".to_owned(),
            region: "us-east-1".to_owned(),
            endpoint_url: None,
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: Zeroizing::new(SECRET.to_owned()),
            session_token: Some(Zeroizing::new("FwoGZXIvYXdzEXAMPLE".to_owned())),
        }
    }

    #[test]
    fn builds_and_hides_the_secrets() {
        let kms = AwsKms::new(&config()).unwrap();
        assert_eq!(kms.key_id(), "aws-kms:alias/certfleet");
        assert!(!format!("{kms:?}").contains(SECRET));
        assert!(!format!("{:?}", config()).contains(SECRET));
        assert!(!format!("{:?}", config()).contains("FwoGZXIvYXdzEXAMPLE"));
    }

    #[test]
    fn bad_settings_are_named_and_secrets_not_echoed() {
        type Change = fn(&mut AwsKmsConfig);
        let cases: [(Change, &str); 6] = [
            (|c| c.key_id = " ".to_owned(), "kms_key_id"),
            (|c| c.key_id = "alias/two words".to_owned(), "kms_key_id"),
            (|c| c.region = "EU West".to_owned(), "kms_region"),
            (
                |c| c.endpoint_url = Some("ftp://kms".to_owned()),
                "kms_endpoint_url",
            ),
            (|c| c.access_key_id = String::new(), "kms_access_key_id"),
            (
                |c| c.secret_access_key = Zeroizing::new("not shown secret".to_owned()),
                "kms_secret_access_key",
            ),
        ];
        for (change, setting) in cases {
            let mut config = config();
            change(&mut config);
            let error = AwsKms::new(&config).unwrap_err();
            assert!(error.to_string().starts_with(setting), "{error}");
            assert!(!error.to_string().contains("not shown"), "{error}");
        }
    }
}
