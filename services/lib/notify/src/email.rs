//! Email delivery: one message per notice through the channel's SMTP relay,
//! a fresh connection each time (no pool to go stale between notices).

use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use crate::channel::{EmailChannel, SmtpSecurity, parse_mailbox};
use crate::{DeliveryError, Notice, error_chain, is_tls_failure};

/// `X-Certfleet-Event-Id`, so receivers (and tests) can match mail to events.
#[derive(Debug, Clone)]
struct EventIdHeader(String);

impl Header for EventIdHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Certfleet-Event-Id")
    }

    fn parse(value: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(value.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

pub(crate) async fn send(
    channel: &EmailChannel,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let server = format!("smtp {}:{}", channel.host, channel.port);
    let message = build_message(channel, notice).map_err(|error| {
        DeliveryError::permanent(format!("{server}: building the message: {error}"))
    })?;
    let transport = transport(channel, timeout)
        .map_err(|error| DeliveryError::permanent(format!("{server}: {error}")))?;
    match tokio::time::timeout(timeout, transport.send(message)).await {
        Ok(Ok(_response)) => Ok(()),
        Ok(Err(error)) => Err(classify(&server, channel.security, &error)),
        Err(_elapsed) => Err(DeliveryError::retryable(format!(
            "{server}: no answer within {} s",
            timeout.as_secs_f32()
        ))),
    }
}

fn build_message(channel: &EmailChannel, notice: &Notice) -> Result<Message, String> {
    let from = parse_mailbox("from", &channel.from).map_err(|error| error.to_string())?;
    let mut builder = Message::builder()
        .from(from)
        .subject(notice.subject())
        .date_now()
        .message_id(Some(format!(
            "<{}@certfleet>",
            message_id_local(&notice.event_id)
        )))
        .header(EventIdHeader(notice.event_id.clone()))
        .header(ContentType::TEXT_PLAIN);
    for (index, recipient) in channel.to.iter().enumerate() {
        let mailbox =
            parse_mailbox(&format!("to[{index}]"), recipient).map_err(|error| error.to_string())?;
        builder = builder.to(mailbox);
    }
    builder
        .body(notice.text())
        .map_err(|error| error.to_string())
}

/// The event id with anything a Message-ID cannot hold replaced.
fn message_id_local(event_id: &str) -> String {
    let cleaned: String = event_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "event".to_owned()
    } else {
        cleaned
    }
}

fn transport(
    channel: &EmailChannel,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = match channel.security {
        SmtpSecurity::Plain => Tls::None,
        SmtpSecurity::StartTls => Tls::Required(tls_parameters(channel)?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(channel)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&channel.host)
        .port(channel.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(username), Some(password)) = (&channel.username, &channel.password) {
        builder = builder.credentials(Credentials::new(
            username.clone(),
            password.as_str().to_owned(),
        ));
    }
    Ok(builder.build())
}

fn tls_parameters(channel: &EmailChannel) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(channel.host.clone());
    if let Some(pem) = &channel.root_ca_pem {
        let root = Certificate::from_pem(pem.as_bytes())
            .map_err(|error| format!("root_ca_pem: {}", error_chain(&error)))?;
        builder = builder.add_root_certificate(root);
    }
    builder
        .build_rustls()
        .map_err(|error| format!("preparing tls: {}", error_chain(&error)))
}

/// 4xx replies, timeouts and connection failures may pass; 5xx replies,
/// certificate and handshake failures and a missing STARTTLS will not.
fn classify(
    server: &str,
    security: SmtpSecurity,
    error: &lettre::transport::smtp::Error,
) -> DeliveryError {
    let detail = error_chain(error);
    if error.is_transient() || error.is_timeout() {
        return DeliveryError::retryable(format!("{server}: {detail}"));
    }
    if error.is_permanent() {
        return DeliveryError::permanent(format!("{server}: {detail}"));
    }
    if error.is_client() && security == SmtpSecurity::StartTls {
        return DeliveryError::permanent(format!(
            "{server}: starttls is required but failed: {detail}"
        ));
    }
    if error.is_client() || error.is_tls() || error.is_response() || is_tls_failure(error) {
        return DeliveryError::permanent(format!("{server}: {detail}"));
    }
    // Connection and network errors: the relay is down or unreachable.
    DeliveryError::retryable(format!("{server}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_keeps_uuids_and_replaces_the_rest() {
        assert_eq!(
            message_id_local("0193e5a2-7c1d-7000-8000-000000000001"),
            "0193e5a2-7c1d-7000-8000-000000000001"
        );
        assert_eq!(message_id_local("a b<c>@d"), "a-b-c--d");
        assert_eq!(message_id_local(""), "event");
    }
}
