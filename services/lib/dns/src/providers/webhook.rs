//! The webhook provider: an HTTP POST of `{"action", "fqdn", "zone", "value"}`
//! to the operator's URL, signed so the receiver can trust it:
//! `X-Certfleet-Timestamp: UNIX_SECONDS` and
//! `X-Certfleet-Signature: sha256=HEX(HMAC-SHA256(secret, TIMESTAMP "." BODY))`.
//! A 2xx answer is success; 4xx is a refusal; 5xx and no answer are retried.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;

use crate::http::HttpClient;
use crate::{
    DnsError, DnsProvider, ProviderConfig, ProviderKind, SettingError, Settings, TxtRecord,
};

pub const SIGNATURE_HEADER: &str = "x-certfleet-signature";
pub const TIMESTAMP_HEADER: &str = "x-certfleet-timestamp";

pub struct Webhook {
    url: String,
    secret: aws_lc_rs::hmac::Key,
    client: HttpClient,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub fn from_config(config: &ProviderConfig) -> Result<Webhook, SettingError> {
        let settings = &config.settings;
        let url = settings.required("url", "(where the records are sent)")?;
        let url = settings.url("url", url)?;
        url.parse::<http::Uri>()
            .map_err(|_| SettingError::new(&Settings::field("url"), &url, "is not a valid URL"))?;
        let secret = settings.required(
            "hmac_secret",
            "(the key the receiver checks signatures with)",
        )?;
        if secret.len() < 16 {
            return Err(SettingError::secret(
                &Settings::field("hmac_secret"),
                "is shorter than 16 characters",
            ));
        }
        let timeout = settings.number("timeout_seconds", 30, 1, 300)?;
        let client = HttpClient::new(Duration::from_secs(timeout))
            .map_err(|error| SettingError::new(&Settings::field("url"), &url, error))?;
        Ok(Webhook {
            url,
            secret: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
            client,
        })
    }

    async fn send(&self, action: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let body = serde_json::json!({
            "action": action,
            "fqdn": format!("{}.", record.fqdn),
            "zone": record.zone.as_ref().map(|zone| format!("{zone}.")),
            "value": record.value,
        })
        .to_string();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
            .to_string();
        let signature = sign(&self.secret, &timestamp, body.as_bytes());
        let request = http::Request::post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| DnsError::Config(format!("webhook request: {error}")))?;
        let answer = self
            .client
            .send(request)
            .await
            .map_err(|detail| DnsError::Unavailable {
                provider: "webhook",
                detail,
            })?;
        let status = answer.status;
        if status.is_success() {
            return Ok(());
        }
        let detail = format!(
            "{action} {}: HTTP {status}: {}",
            record.fqdn,
            answer.body_excerpt()
        );
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            Err(DnsError::Unavailable {
                provider: "webhook",
                detail,
            })
        } else {
            Err(DnsError::Refused {
                provider: "webhook",
                detail,
            })
        }
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `TIMESTAMP.BODY`.
pub fn sign(key: &aws_lc_rs::hmac::Key, timestamp: &str, body: &[u8]) -> String {
    let mut context = aws_lc_rs::hmac::Context::with_key(key);
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// Checks a signature in constant time (for receivers written in Rust, and
/// the tests).
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_mac) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(mac) = hex::decode(hex_mac) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    aws_lc_rs::hmac::verify(&key, &message, &mac).is_ok()
}

#[async_trait::async_trait]
impl DnsProvider for Webhook {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Webhook
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.send("present", record).await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.send("cleanup", record).await
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::DnsPolicy;

    fn parse(pairs: &[(&str, &str)]) -> Result<ProviderConfig, SettingError> {
        let values = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>();
        ProviderConfig::parse(ProviderKind::Webhook, values, &DnsPolicy::default())
    }

    #[test]
    fn settings_are_checked() {
        let error = parse(&[("url", "ftp://x"), ("hmac_secret", "0123456789abcdef")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "settings.url: \"ftp://x\" is not an http:// or https:// URL"
        );
        let error = parse(&[
            ("url", "https://hooks.example.test/dns"),
            ("hmac_secret", "x7q"),
        ])
        .unwrap_err();
        assert_eq!(error.field, "settings.hmac_secret");
        assert!(!error.message.contains("x7q"), "secret echoed: {error}");
        let error = parse(&[("url", "https://hooks.example.test/dns")]).unwrap_err();
        assert_eq!(error.field, "settings.hmac_secret");
        let config = parse(&[
            ("url", "https://hooks.example.test/dns"),
            ("hmac_secret", "0123456789abcdef"),
        ])
        .unwrap();
        let (plain, secret) = config.split();
        assert!(plain.contains_key("url") && !plain.contains_key("hmac_secret"));
        assert!(secret.contains_key("hmac_secret"));
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"0123456789abcdef");
        let signature = sign(&key, "1700000000", b"{\"a\":1}");
        assert!(verify(
            b"0123456789abcdef",
            "1700000000",
            b"{\"a\":1}",
            &signature
        ));
        assert!(!verify(
            b"0123456789abcdef",
            "1700000001",
            b"{\"a\":1}",
            &signature
        ));
        assert!(!verify(
            b"0123456789abcdeX",
            "1700000000",
            b"{\"a\":1}",
            &signature
        ));
        assert!(!verify(
            b"0123456789abcdef",
            "1700000000",
            b"{\"a\":2}",
            &signature
        ));
    }
}
