//! Email delivery against a real SMTP server (aiosmtpd): plain, STARTTLS and
//! SMTPS, and the failures the notifier must tell apart.

mod common;

use std::time::Duration;

use certfleet_notify::{Channel, EmailChannel, SmtpSecurity, deliver, validate};
use certfleet_testkit::{ReceivedMail, SmtpSink, SmtpTls};
use common::{expiring_notice, failed_notice, test_pki};

const TIMEOUT: Duration = Duration::from_secs(5);

fn channel(port: u16, security: SmtpSecurity, root_ca_pem: Option<String>) -> Channel {
    Channel::Email(EmailChannel {
        host: "127.0.0.1".to_owned(),
        port,
        security,
        username: None,
        password: None,
        from: "Certfleet <certfleet@example.com>".to_owned(),
        to: vec![
            "ops@example.com".to_owned(),
            "oncall@example.org".to_owned(),
        ],
        root_ca_pem,
    })
}

fn assert_is_the_notice(mail: &ReceivedMail, event_id: &str) {
    let notice = expiring_notice(event_id);
    assert_eq!(
        mail.subject(),
        Some(notice.subject().as_str()),
        "{}",
        mail.raw
    );
    assert_eq!(
        mail.subject(),
        Some("[certfleet] example.com (+1 more) expires in 7 days (2026-12-14 10:00 UTC)")
    );
    assert_eq!(
        mail.header("X-Certfleet-Event-Id"),
        Some(event_id),
        "{}",
        mail.raw
    );
    assert_eq!(
        mail.header("Message-ID"),
        Some(format!("<{event_id}@certfleet>").as_str()),
        "{}",
        mail.raw
    );
    assert!(mail.header("Date").is_some(), "{}", mail.raw);
    assert!(
        mail.header("Content-Type")
            .is_some_and(|value| value.starts_with("text/plain") && value.contains("utf-8")),
        "{}",
        mail.raw
    );
    assert_eq!(mail.from, "certfleet@example.com");
    assert_eq!(mail.to, ["ops@example.com", "oncall@example.org"]);
    assert_eq!(
        mail.header("To"),
        Some("ops@example.com, oncall@example.org")
    );
    assert_eq!(
        mail.text.replace("\r\n", "\n").trim_end(),
        notice.text().trim_end()
    );
}

#[tokio::test]
async fn plain_smtp_delivers_one_message() {
    let sink = SmtpSink::start(SmtpTls::None)
        .await
        .expect("aiosmtpd starts");
    let channel = channel(sink.port(), SmtpSecurity::Plain, None);
    deliver(&channel, &expiring_notice("ev-plain-1"), TIMEOUT)
        .await
        .expect("delivered");
    let messages = sink.wait_for(1, TIMEOUT).await.expect("message arrives");
    assert_eq!(messages.len(), 1);
    assert_is_the_notice(&messages[0], "ev-plain-1");
    assert!(!messages[0].tls);
}

#[tokio::test]
async fn starttls_delivers_with_a_private_root() {
    let pki = test_pki();
    let sink = SmtpSink::start(SmtpTls::StartTls {
        cert_pem: pki.cert_pem.clone(),
        key_pem: pki.key_pem.clone(),
    })
    .await
    .expect("aiosmtpd starts");
    let channel = channel(sink.port(), SmtpSecurity::StartTls, Some(pki.ca_pem));
    deliver(&channel, &expiring_notice("ev-starttls-1"), TIMEOUT)
        .await
        .expect("delivered");
    let messages = sink.wait_for(1, TIMEOUT).await.expect("message arrives");
    assert_eq!(messages.len(), 1);
    assert_is_the_notice(&messages[0], "ev-starttls-1");
    assert!(messages[0].tls, "the session was upgraded");
}

#[tokio::test]
async fn implicit_tls_delivers_with_a_private_root() {
    let pki = test_pki();
    let sink = SmtpSink::start(SmtpTls::Implicit {
        cert_pem: pki.cert_pem.clone(),
        key_pem: pki.key_pem.clone(),
    })
    .await
    .expect("aiosmtpd starts");
    let channel = channel(sink.port(), SmtpSecurity::Tls, Some(pki.ca_pem));
    deliver(&channel, &expiring_notice("ev-smtps-1"), TIMEOUT)
        .await
        .expect("delivered");
    let messages = sink.wait_for(1, TIMEOUT).await.expect("message arrives");
    assert_eq!(messages.len(), 1);
    assert_is_the_notice(&messages[0], "ev-smtps-1");
    assert!(messages[0].tls);
}

#[tokio::test]
async fn untrusted_server_certificate_is_refused() {
    let pki = test_pki();
    let sink = SmtpSink::start(SmtpTls::StartTls {
        cert_pem: pki.cert_pem,
        key_pem: pki.key_pem,
    })
    .await
    .expect("aiosmtpd starts");
    // The root of another CA: the server's certificate does not chain to it.
    let channel = channel(sink.port(), SmtpSecurity::StartTls, Some(test_pki().ca_pem));
    let error = deliver(&channel, &expiring_notice("ev-untrusted"), TIMEOUT)
        .await
        .expect_err("untrusted certificate");
    assert!(!error.retryable, "{error}");
    assert!(
        error
            .message
            .contains(&format!("127.0.0.1:{}", sink.port())),
        "{error}"
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn required_starttls_fails_when_the_server_lacks_it() {
    let sink = SmtpSink::start(SmtpTls::None)
        .await
        .expect("aiosmtpd starts");
    let channel = channel(sink.port(), SmtpSecurity::StartTls, Some(test_pki().ca_pem));
    let error = deliver(&channel, &expiring_notice("ev-no-starttls"), TIMEOUT)
        .await
        .expect_err("no starttls offered");
    assert!(!error.retryable, "{error}");
    assert!(error.message.to_lowercase().contains("starttls"), "{error}");
    assert!(
        error
            .message
            .contains(&format!("127.0.0.1:{}", sink.port())),
        "{error}"
    );
    assert!(
        sink.messages().is_empty(),
        "nothing may go out in clear text"
    );
}

#[tokio::test]
async fn unreachable_server_is_retryable_until_it_is_back() {
    let mut sink = SmtpSink::start(SmtpTls::None)
        .await
        .expect("aiosmtpd starts");
    let channel = channel(sink.port(), SmtpSecurity::Plain, None);
    sink.stop().await.expect("aiosmtpd stops");

    let error = deliver(&channel, &failed_notice("ev-down"), TIMEOUT)
        .await
        .expect_err("server is down");
    assert!(error.retryable, "{error}");
    assert!(
        error
            .message
            .contains(&format!("127.0.0.1:{}", sink.port())),
        "{error}"
    );

    sink.start_again().await.expect("aiosmtpd starts again");
    deliver(&channel, &failed_notice("ev-down"), TIMEOUT)
        .await
        .expect("delivered once the server is back");
    let messages = sink.wait_for(1, TIMEOUT).await.expect("message arrives");
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].subject(),
        Some(
            "[certfleet] renewal of example.com (+1 more) failed: dns-01 challenge failed: NXDOMAIN"
        )
    );
    assert_eq!(messages[0].header("X-Certfleet-Event-Id"), Some("ev-down"));
}

#[tokio::test]
async fn invalid_recipient_is_a_validation_error() {
    let Channel::Email(good) = channel(2525, SmtpSecurity::Plain, None) else {
        unreachable!("built an email channel");
    };
    let bad = Channel::Email(EmailChannel {
        to: vec![
            "ops@example.com".to_owned(),
            "ops at example.com".to_owned(),
        ],
        ..good
    });
    let validation = validate(&bad).expect_err("bad recipient");
    assert_eq!(validation.field, "to[1]");
    assert!(
        validation.to_string().contains("ops at example.com"),
        "{validation}"
    );

    let error = deliver(&bad, &expiring_notice("ev-invalid"), TIMEOUT)
        .await
        .expect_err("not sent");
    assert!(!error.retryable, "{error}");
    assert!(error.message.contains("to[1]"), "{error}");
}
