//! Webhook delivery against a real HTTP(S) server: signed JSON, the Slack
//! shape, and how answers and failures are classified.

mod common;

use std::time::Duration;

use certfleet_notify::{Channel, WebhookChannel, WebhookFormat, deliver, verify_signature};
use certfleet_testkit::WebhookReceiver;
use common::{expiring_notice, failed_notice, test_pki};
use zeroize::Zeroizing;

const TIMEOUT: Duration = Duration::from_secs(5);
const SECRET: &str = "whsec-test-0123456789";

fn channel(url: String, secret: Option<&str>, format: WebhookFormat) -> Channel {
    Channel::Webhook(WebhookChannel {
        url,
        secret: secret.map(|secret| Zeroizing::new(secret.to_owned())),
        format,
        root_ca_pem: None,
    })
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn signed_json_arrives_and_verifies() {
    let receiver = WebhookReceiver::start().await.expect("receiver starts");
    let notice = expiring_notice("ev-hook-1");
    deliver(
        &channel(receiver.url(), Some(SECRET), WebhookFormat::Json),
        &notice,
        TIMEOUT,
    )
    .await
    .expect("delivered");

    let requests = receiver
        .wait_for(1, TIMEOUT)
        .await
        .expect("request arrives");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/certfleet");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-certfleet-event-id"), Some("ev-hook-1"));
    assert_eq!(
        request.header("x-certfleet-event"),
        Some("certificate.expiring")
    );

    let signature = request
        .header("x-certfleet-signature")
        .expect("signed request");
    assert!(signature.starts_with("t="), "{signature}");
    assert!(signature.contains(",v1="), "{signature}");
    assert!(verify_signature(
        SECRET.as_bytes(),
        signature,
        &request.body,
        now(),
        300
    ));
    assert!(!verify_signature(
        b"another secret",
        signature,
        &request.body,
        now(),
        300
    ));
    let mut tampered = request.body.clone();
    tampered.push(b' ');
    assert!(!verify_signature(
        SECRET.as_bytes(),
        signature,
        &tampered,
        now(),
        300
    ));
    assert!(!verify_signature(
        SECRET.as_bytes(),
        signature,
        &request.body,
        now() + 3600,
        300
    ));

    let body = request.json().expect("json body");
    assert_eq!(body["id"], "ev-hook-1");
    assert_eq!(body["type"], "certificate.expiring");
    assert_eq!(body["time"], notice.time);
    assert_eq!(body["organization"], "acme");
    assert_eq!(body["certificate_id"], "cert-0001");
    assert_eq!(
        body["names"],
        serde_json::json!(["example.com", "www.example.com"])
    );
    assert_eq!(body["serial"], "04ab11");
    assert_eq!(body["not_after"], common::NOT_AFTER);
    assert_eq!(body["reason"], "7 days left");
    assert_eq!(body["error"], "");
    assert_eq!(body["text"], notice.text());
    assert_eq!(
        body.as_object().map(serde_json::Map::len),
        Some(11),
        "{body}"
    );
}

#[tokio::test]
async fn unsigned_without_a_secret() {
    let receiver = WebhookReceiver::start().await.expect("receiver starts");
    deliver(
        &channel(receiver.url(), None, WebhookFormat::Json),
        &failed_notice("ev-hook-2"),
        TIMEOUT,
    )
    .await
    .expect("delivered");
    let requests = receiver
        .wait_for(1, TIMEOUT)
        .await
        .expect("request arrives");
    assert_eq!(requests[0].header("x-certfleet-signature"), None);
    assert_eq!(
        requests[0].header("x-certfleet-event"),
        Some("certificate.failed")
    );
    let body = requests[0].json().expect("json body");
    assert_eq!(body["error"], "dns-01 challenge failed: NXDOMAIN");
}

#[tokio::test]
async fn slack_format_is_a_text_object() {
    let receiver = WebhookReceiver::start().await.expect("receiver starts");
    let notice = failed_notice("ev-slack-1");
    deliver(
        &channel(receiver.url(), None, WebhookFormat::Slack),
        &notice,
        TIMEOUT,
    )
    .await
    .expect("delivered");
    let requests = receiver
        .wait_for(1, TIMEOUT)
        .await
        .expect("request arrives");
    let body = requests[0].json().expect("json body");
    let object = body.as_object().expect("an object");
    assert_eq!(object.len(), 1, "{body}");
    let text = body["text"].as_str().expect("text is a string");
    let (first_line, rest) = text.split_once('\n').expect("two parts");
    assert_eq!(first_line, notice.subject());
    assert!(
        rest.contains("acme") && rest.contains("cert-0001"),
        "{text}"
    );
    assert!(rest.contains("NXDOMAIN"), "{text}");
}

#[tokio::test]
async fn server_errors_are_retryable_and_name_the_status() {
    let receiver = WebhookReceiver::start().await.expect("receiver starts");
    let channel = channel(receiver.url(), Some(SECRET), WebhookFormat::Json);
    for status in [500, 503, 429, 408] {
        receiver.set_status(status);
        let error = deliver(&channel, &expiring_notice("ev-500"), TIMEOUT)
            .await
            .expect_err("server error");
        assert!(error.retryable, "{status}: {error}");
        assert!(error.message.contains(&status.to_string()), "{error}");
        // The URL up to its first path segment; the rest may hold a token.
        let shown = receiver.url().replace("/hooks/certfleet", "/hooks/");
        assert!(error.message.contains(&shown), "{error}");
        assert!(!error.message.contains(SECRET), "{error}");
    }
    receiver.set_status(204);
    deliver(&channel, &expiring_notice("ev-500"), TIMEOUT)
        .await
        .expect("2xx is success");
    assert_eq!(receiver.requests().len(), 5);
}

#[tokio::test]
async fn client_errors_are_not_retryable() {
    let receiver = WebhookReceiver::start().await.expect("receiver starts");
    let channel = channel(receiver.url(), None, WebhookFormat::Json);
    for status in [404, 400, 401] {
        receiver.set_status(status);
        let error = deliver(&channel, &expiring_notice("ev-404"), TIMEOUT)
            .await
            .expect_err("client error");
        assert!(!error.retryable, "{status}: {error}");
        assert!(error.message.contains(&format!("HTTP {status}")), "{error}");
    }
}

#[tokio::test]
async fn unreachable_receiver_is_retryable() {
    let port = certfleet_testkit::free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let error = deliver(
        &channel(url, None, WebhookFormat::Json),
        &expiring_notice("ev-down"),
        TIMEOUT,
    )
    .await
    .expect_err("nothing listens");
    assert!(error.retryable, "{error}");
    assert!(
        error.message.contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

#[tokio::test]
async fn https_with_a_private_root() {
    let pki = test_pki();
    let receiver = WebhookReceiver::start_https(&pki.cert_pem, &pki.key_pem)
        .await
        .expect("receiver starts");
    assert!(receiver.url().starts_with("https://"));
    let trusting = Channel::Webhook(WebhookChannel {
        url: receiver.url(),
        secret: None,
        format: WebhookFormat::Json,
        root_ca_pem: Some(pki.ca_pem),
    });
    deliver(&trusting, &expiring_notice("ev-https"), TIMEOUT)
        .await
        .expect("delivered over https");
    assert_eq!(
        receiver.wait_for(1, TIMEOUT).await.expect("arrives").len(),
        1
    );

    let untrusting = channel(receiver.url(), None, WebhookFormat::Json);
    let error = deliver(&untrusting, &expiring_notice("ev-https"), TIMEOUT)
        .await
        .expect_err("unknown issuer");
    assert!(!error.retryable, "{error}");
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn invalid_url_is_refused_before_sending() {
    let error = deliver(
        &channel("ftp://127.0.0.1/hook".to_owned(), None, WebhookFormat::Json),
        &expiring_notice("ev-ftp"),
        TIMEOUT,
    )
    .await
    .expect_err("not http");
    assert!(!error.retryable);
    assert!(error.message.contains("url"), "{error}");
}
