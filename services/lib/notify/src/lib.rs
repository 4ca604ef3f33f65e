//! Delivery of certificate lifecycle notices ("expires in 7 days", "renewal
//! failed") to the channels an organization configures: email through an
//! SMTP relay and HTTP webhooks (certfleet JSON, signed, or Slack-shaped).
//!
//! The notifier builds a [`Notice`] from an event, checks channels with
//! [`validate`] when they are configured and calls [`deliver`] for each;
//! [`DeliveryError::retryable`] tells it whether to try again later.
//!
//! # Webhook requests
//!
//! `POST <url>` with `Content-Type: application/json`,
//! `X-Certfleet-Event-Id: <event id>`, `X-Certfleet-Event:
//! certificate.expiring` (or `certificate.failed`) and, with a secret,
//! `X-Certfleet-Signature` (see [`signature`] for the scheme). The JSON
//! format's body:
//!
//! ```json
//! {"id": "…", "type": "certificate.expiring", "time": 1797242400000,
//!  "organization": "acme", "certificate_id": "…", "names": ["example.com"],
//!  "serial": "04ab…", "not_after": 1797847200, "reason": "7 days left",
//!  "error": "", "text": "…"}
//! ```
//!
//! `time` is unix milliseconds, `not_after` unix seconds or `null`. Any 2xx
//! answer is success; 408, 429, 5xx and transport failures are retryable,
//! other statuses are not.

mod channel;
mod email;
mod notice;
mod settings;
pub mod signature;
mod stored;
mod tls;
mod webhook;
mod worker;

use std::time::Duration;

pub use channel::{
    Channel, EmailChannel, SmtpSecurity, ValidationError, WebhookChannel, WebhookFormat, validate,
};
pub use notice::{Notice, NoticeKind};
pub use settings::{ChannelSettings, event_name};
pub use signature::{sign, verify_signature};
pub use stored::{OpenError, seal_secrets};
pub use worker::{Notifier, NotifierConfig, NotifierError, notice_kind};

/// Why a notice did not reach its channel. The message names the server or
/// URL and what failed (SMTP reply, HTTP status), never a password or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Whether trying again later may succeed (server busy or unreachable)
    /// rather than fail the same way (rejected address, bad configuration).
    pub retryable: bool,
    pub message: String,
}

impl DeliveryError {
    pub(crate) fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
        }
    }

    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
        }
    }
}

/// Sends `notice` to `channel`, giving up after `timeout`.
pub async fn deliver(
    channel: &Channel,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    validate(channel)
        .map_err(|error| DeliveryError::permanent(format!("invalid channel: {error}")))?;
    let result = match channel {
        Channel::Email(email) => email::send(email, notice, timeout).await,
        Channel::Webhook(webhook) => webhook::send(webhook, notice, timeout).await,
    };
    match &result {
        Ok(()) => {
            tracing::debug!(event_id = %notice.event_id, kind = %notice.kind, "notice delivered")
        }
        Err(error) => tracing::debug!(
            event_id = %notice.event_id,
            retryable = error.retryable,
            error = %error.message,
            "notice not delivered"
        ),
    }
    result
}

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    // Wrappers often repeat their kind ("Connection error: Connection error: …").
    let mut parts: Vec<&str> = text.split(": ").collect();
    parts.dedup();
    parts.join(": ")
}

/// Whether a TLS failure (an untrusted or mismatched certificate, a failed
/// handshake) is somewhere in the error's chain, possibly wrapped in an
/// `io::Error`: a configuration problem that retrying does not fix.
pub(crate) fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(cause) = current {
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| {
                inner.downcast_ref::<rustls::Error>().is_some() || is_tls_failure(inner)
            })
        {
            return true;
        }
        current = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection error")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chain_joins_sources_without_repeats() {
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, "connection error");
        assert_eq!(error_chain(&Outer(inner)), "connection error");
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(error_chain(&Outer(inner)), "connection error: refused");
    }

    #[test]
    fn tls_failures_are_found_inside_io_errors() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(is_tls_failure(&Outer(tls)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_tls_failure(&Outer(refused)));
    }
}
