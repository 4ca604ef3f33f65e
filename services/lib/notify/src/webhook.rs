//! Webhook delivery: one POST per notice, signed when the channel has a
//! secret.

use std::time::Duration;

use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::channel::{WebhookChannel, WebhookFormat, parse_webhook_url};
use crate::signature::{SIGNATURE_HEADER, signature_header};
use crate::{DeliveryError, Notice, error_chain, is_tls_failure};

/// Most of an error answer's body read for the error message.
const ANSWER_LIMIT: usize = 64 * 1024;
const ANSWER_SHOWN_CHARS: usize = 200;

#[derive(Serialize)]
struct JsonBody<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    time: i64,
    organization: &'a str,
    certificate_id: &'a str,
    names: &'a [String],
    serial: &'a str,
    not_after: Option<i64>,
    reason: &'a str,
    error: &'a str,
    text: String,
}

#[derive(Serialize)]
struct SlackBody {
    text: String,
}

/// The request body for `format`.
pub(crate) fn body(format: WebhookFormat, notice: &Notice) -> Result<Vec<u8>, serde_json::Error> {
    match format {
        WebhookFormat::Json => serde_json::to_vec(&JsonBody {
            id: &notice.event_id,
            kind: notice.kind.as_str(),
            time: notice.time,
            organization: &notice.organization,
            certificate_id: &notice.certificate_id,
            names: &notice.names,
            serial: &notice.serial,
            not_after: notice.not_after,
            reason: &notice.reason,
            error: &notice.error,
            text: notice.text(),
        }),
        WebhookFormat::Slack => serde_json::to_vec(&SlackBody {
            text: format!("{}\n{}", notice.subject(), notice.short_text()),
        }),
    }
}

pub(crate) async fn send(
    channel: &WebhookChannel,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let shown = redact_url(&channel.url);
    let uri = parse_webhook_url(&channel.url)
        .map_err(|error| DeliveryError::permanent(error.to_string()))?;
    let body = body(channel.format, notice)
        .map_err(|error| DeliveryError::permanent(format!("POST {shown}: encoding: {error}")))?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("certfleet-notify/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-Certfleet-Event-Id", notice.event_id.as_str())
        .header("X-Certfleet-Event", notice.kind.as_str());
    if let Some(secret) = &channel.secret {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        request = request.header(
            SIGNATURE_HEADER,
            signature_header(secret.as_bytes(), now, &body),
        );
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|error| DeliveryError::permanent(format!("POST {shown}: {error}")))?;
    let client = client(channel, timeout)
        .map_err(|error| DeliveryError::permanent(format!("POST {shown}: {error}")))?;

    let exchange = async {
        let response = client.request(request).await.map_err(|error| {
            let message = format!("POST {shown}: {}", error_chain(&error));
            if is_tls_failure(&error) {
                DeliveryError::permanent(message)
            } else {
                DeliveryError::retryable(message)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Best effort: the answer's start often says what is wrong.
        let answer = Limited::new(response.into_body(), ANSWER_LIMIT)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        Err(status_error(&shown, status, &answer))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_elapsed) => Err(DeliveryError::retryable(format!(
            "POST {shown}: no answer within {} s",
            timeout.as_secs_f32()
        ))),
    }
}

fn client(
    channel: &WebhookChannel,
    timeout: Duration,
) -> Result<Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>, String> {
    let extra = match &channel.root_ca_pem {
        Some(pem) => crate::tls::parse_roots(pem).map_err(|error| error.to_string())?,
        None => Vec::new(),
    };
    let config = crate::tls::client_config(extra)?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

fn status_error(shown: &str, status: StatusCode, answer: &[u8]) -> DeliveryError {
    let answer = String::from_utf8_lossy(answer);
    let answer: String = answer.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut message = format!("POST {shown}: HTTP {status}");
    if !answer.is_empty() {
        let cut: String = answer.chars().take(ANSWER_SHOWN_CHARS).collect();
        message.push_str(&format!(": {cut}"));
    }
    let retryable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    DeliveryError { retryable, message }
}

/// The URL as shown in errors and logs: scheme, host, port and the first path
/// segment. Services such as Slack put the credential in the rest of the path
/// or in the query.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return "<unparsable url>".to_owned();
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return "<url without scheme or host>".to_owned();
    };
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    let mut segments = uri.path().split('/').filter(|segment| !segment.is_empty());
    let mut shown = format!("{scheme}://{host_port}");
    if let Some(first) = segments.next() {
        shown.push('/');
        shown.push_str(first);
    }
    if segments.next().is_some() || uri.query().is_some() {
        shown.push_str("/…");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoticeKind;

    fn notice() -> Notice {
        Notice {
            event_id: "ev-1".to_owned(),
            kind: NoticeKind::Failed,
            organization: "acme".to_owned(),
            certificate_id: "cert-1".to_owned(),
            names: vec!["example.com".to_owned()],
            serial: String::new(),
            not_after: None,
            reason: "will retry".to_owned(),
            error: "rate limited".to_owned(),
            time: 1_797_242_400_000,
        }
    }

    #[test]
    fn json_body_has_every_field() {
        let bytes = body(WebhookFormat::Json, &notice()).expect("encodes");
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(value["id"], "ev-1");
        assert_eq!(value["type"], "certificate.failed");
        assert_eq!(value["time"], 1_797_242_400_000_i64);
        assert_eq!(value["names"], serde_json::json!(["example.com"]));
        assert_eq!(value["not_after"], serde_json::Value::Null);
        assert_eq!(value["error"], "rate limited");
        for key in ["organization", "certificate_id", "serial", "reason", "text"] {
            assert!(value.get(key).is_some(), "{key} missing from {value}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        for (status, retryable) in [
            (408, true),
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (404, false),
            (301, false),
        ] {
            let status = StatusCode::from_u16(status).expect("status");
            let error = status_error("http://x", status, b"nope");
            assert_eq!(error.retryable, retryable, "{status}");
            assert!(error.message.contains(status.as_str()), "{}", error.message);
        }
    }

    #[test]
    fn urls_lose_credentials_in_path_and_query() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/services/…"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8080/hook"),
            "http://127.0.0.1:8080/hook"
        );
        assert_eq!(
            redact_url("https://example.com/hook?token=abc"),
            "https://example.com/hook/…"
        );
        assert_eq!(
            redact_url("https://user:pw@example.com"),
            "https://example.com"
        );
    }
}
