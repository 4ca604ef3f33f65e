//! Expiry notifications with a moved clock, end to end: an organization with
//! an email channel (a real aiosmtpd) and a signed webhook channel (a local
//! receiver) gets exactly one message on each at 7, 3 and 1 days left; the
//! SMTP server being down at one threshold, and the receiver answering 500
//! at another, delay that message (retried after the backoff) without
//! sending anything twice; a restart of the notifier (the
//! whole embedded process) sends nothing again. The channels' secrets are
//! not stored in the clear, and `notify add` refuses a bad setting by name.

use std::collections::HashMap;
use std::time::Duration;

use certfleet_cli::embedded;
use certfleet_e2e::certfleet_testkit::{PebbleOptions, SmtpSink, SmtpTls, WebhookReceiver};
use certfleet_e2e::{
    TestEnv, embedded_config, is_valid, notifications, organization, request, wait_for,
};
use certfleet_notify::verify_signature;
use certfleet_proto::v1::{self as pb, CreateNotificationChannelRequest};

const DAY_MS: i64 = 86_400_000;
const WEBHOOK_SECRET: &str = "whsec-e2e-4f1b9c";

/// Subjects of the mails received, by event id.
fn mails_by_event(sink: &SmtpSink) -> HashMap<String, Vec<String>> {
    let mut by_event: HashMap<String, Vec<String>> = HashMap::new();
    for mail in sink.messages() {
        let id = mail.header("X-Certfleet-Event-Id").unwrap_or("").to_owned();
        by_event
            .entry(id)
            .or_default()
            .push(mail.subject().unwrap_or("").to_owned());
    }
    by_event
}

#[tokio::test(flavor = "multi_thread")]
async fn one_mail_and_one_signed_webhook_per_threshold_even_across_a_restart() {
    let options = PebbleOptions {
        certificate_validity: Some(Duration::from_secs(30 * 86_400)),
        ..PebbleOptions::default()
    };
    let mut env = TestEnv::start(options).await.unwrap();
    let (write, _) = organization(env.grpc, &env.admin_token, "notified").await;
    let mut client = certfleet_e2e::certificates(env.grpc, &write).await;
    let mut sink = SmtpSink::start(SmtpTls::None).await.unwrap();
    let receiver = WebhookReceiver::start().await.unwrap();
    let mut channels = notifications(env.grpc, &write).await;

    // A bad setting is refused, naming it and its value.
    let refused = channels
        .create_notification_channel(CreateNotificationChannelRequest {
            name: "bad".to_owned(),
            kind: "email".to_owned(),
            settings: [
                ("host", "127.0.0.1"),
                ("port", "70000"),
                ("from", "certfleet@example.com"),
                ("to", "ops@example.com"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            events: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("settings.port") && refused.message().contains("70000"),
        "{}",
        refused.message()
    );

    let port = sink.port().to_string();
    let mail = channels
        .create_notification_channel(CreateNotificationChannelRequest {
            name: "ops-mail".to_owned(),
            kind: "email".to_owned(),
            settings: [
                ("host", "127.0.0.1"),
                ("port", port.as_str()),
                ("security", "plain"),
                ("from", "certfleet@example.com"),
                ("to", "ops@notified.example.com"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            events: vec!["expiring".to_owned()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mail.events, ["expiring"]);
    let hook = channels
        .create_notification_channel(CreateNotificationChannelRequest {
            name: "ops-hook".to_owned(),
            kind: "webhook".to_owned(),
            settings: [
                ("url", receiver.url()),
                ("secret", WEBHOOK_SECRET.to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            events: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hook.secret_settings, ["secret"]);
    assert!(!hook.settings.contains_key("secret"));

    // `notify test` reaches both, outside the counts below (kind certfleet.test).
    for name in ["ops-mail", "ops-hook"] {
        channels
            .test_notification_channel(pb::TestNotificationChannelRequest {
                id: name.to_owned(),
            })
            .await
            .unwrap();
    }
    sink.wait_for(1, Duration::from_secs(10)).await.unwrap();
    receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let tests_sent = (sink.messages().len(), receiver.requests().len());

    let mut create = request(&["notified.example.test"], pb::KeyType::EcdsaP256);
    // Not renewed automatically: no newer version ends the warnings.
    create.auto_renew = Some(false);
    let id = client
        .create_certificate(create)
        .await
        .unwrap()
        .into_inner()
        .id;
    let issued = wait_for(&mut client, &id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    let not_after_ms = issued.current.as_ref().unwrap().not_after * 1000;
    let clock = env.clock.clone();
    let move_to = |left_ms: i64| {
        clock.set_offset_ms(0);
        let offset = not_after_ms - left_ms - certfleet_core::Clock::now_ms(clock.as_ref());
        clock.set_offset_ms(offset);
    };
    let hooks_of_expiring = |receiver: &WebhookReceiver| -> Vec<pb_like::Hook> {
        receiver
            .requests()
            .into_iter()
            .filter(|r| r.header("X-Certfleet-Event") == Some("certificate.expiring"))
            .map(|r| pb_like::Hook {
                event_id: r.header("X-Certfleet-Event-Id").unwrap_or("").to_owned(),
                signature: r.header("X-Certfleet-Signature").unwrap_or("").to_owned(),
                body: r.body.clone(),
            })
            .collect()
    };

    // 7 and 3 days left: one mail and one webhook each.
    let until_hooks = |count: usize| {
        let receiver = &receiver;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while hooks_of_expiring(receiver).len() < count {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "webhook {count} missing"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // 7 days left: one mail, one webhook.
    move_to(6 * DAY_MS + DAY_MS / 2);
    sink.wait_for(tests_sent.0 + 1, Duration::from_secs(20))
        .await
        .unwrap();
    until_hooks(1).await;
    // 3 days left with the receiver answering 500: the mail goes, the
    // webhook is tried, and tried again after the first backoff (30 s on the
    // test clock) once the receiver answers 200.
    receiver.set_status(500);
    move_to(2 * DAY_MS + DAY_MS / 2);
    sink.wait_for(tests_sent.0 + 2, Duration::from_secs(20))
        .await
        .unwrap();
    until_hooks(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hooks_of_expiring(&receiver).len(),
        2,
        "no retry before the backoff"
    );
    receiver.set_status(200);
    clock.advance(Duration::from_secs(31));
    until_hooks(3).await;

    // 1 day left with the SMTP server down: the webhook goes at once, the
    // mail is retried once the server is back (after the first backoff).
    sink.stop().await.unwrap();
    move_to(DAY_MS / 2);
    until_hooks(4).await;
    // Let the first mail attempt fail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sink.start_again().await.unwrap();
    clock.advance(Duration::from_secs(31));
    sink.wait_for(tests_sent.0 + 3, Duration::from_secs(20))
        .await
        .unwrap();

    // A restart of the notifier (the whole embedded process), with the
    // clock still at one day left: nothing is sent again.
    env.embedded.take().unwrap().shutdown().await;
    let restarted = embedded::start(
        embedded_config(&env.pebble, env.data_dir.path()),
        env.clock.clone(),
    )
    .await
    .unwrap();
    env.embedded = Some(restarted);
    clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mails = mails_by_event(&sink);
    let expiring_mails: Vec<(&String, &Vec<String>)> = mails
        .iter()
        .filter(|(_, subjects)| subjects.iter().all(|s| s.contains("expires in")))
        .collect();
    assert_eq!(
        expiring_mails.len(),
        3,
        "one expiring mail per threshold: {mails:?}"
    );
    assert!(
        expiring_mails
            .iter()
            .all(|(_, subjects)| subjects.len() == 1),
        "no mail twice: {mails:?}"
    );
    let mut days: Vec<String> = expiring_mails
        .iter()
        .map(|(_, subjects)| subjects[0].clone())
        .collect();
    days.sort();
    assert!(
        days.iter()
            .any(|s| s.contains("expires in 6 days") || s.contains("expires in 7 days")),
        "{days:?}"
    );
    assert!(
        days.iter()
            .any(|s| s.contains("expires in 2 days") || s.contains("expires in 3 days")),
        "{days:?}"
    );
    assert!(
        days.iter()
            .any(|s| s.contains("hours") || s.contains("expires in 1 day")),
        "{days:?}"
    );
    assert_eq!(
        sink.messages().len(),
        tests_sent.0 + 3,
        "nothing else was mailed"
    );

    let hooks = hooks_of_expiring(&receiver);
    assert_eq!(
        hooks.len(),
        4,
        "one delivered webhook per threshold (plus the refused first try at 3 days), none again after the restart"
    );
    let mut ids: Vec<&str> = hooks.iter().map(|h| h.event_id.as_str()).collect();
    ids.dedup();
    assert_eq!(
        ids.len(),
        3,
        "one event per threshold, the 3-day one sent twice (500, then 200): {ids:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for hook in &hooks {
        assert!(
            verify_signature(
                WEBHOOK_SECRET.as_bytes(),
                &hook.signature,
                &hook.body,
                now,
                300
            ),
            "a correctly signed webhook: {}",
            hook.signature
        );
        assert!(
            !verify_signature(b"another-secret", &hook.signature, &hook.body, now, 300),
            "the signature depends on the secret"
        );
        let body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
        assert_eq!(body["certificate_id"], id.as_str());
        assert_eq!(body["organization"], "notified");
    }
    let reasons: Vec<String> = hooks
        .iter()
        .map(|h| {
            serde_json::from_slice::<serde_json::Value>(&h.body).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        reasons,
        ["7 days left", "3 days left", "3 days left", "1 day left"]
    );

    // The record: every (event, channel) sent, the refused webhook after
    // two attempts.
    // (The restarted process listens on a new port.)
    let grpc = env.embedded.as_ref().unwrap().grpc_addr;
    let history = notifications(grpc, &write)
        .await
        .list_notifications(pb::ListNotificationsRequest {
            certificate_id: id.clone(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(history.len(), 6, "3 thresholds × 2 channels: {history:?}");
    assert!(
        history.iter().all(|n| n.status == "sent" && n.sent_at > 0),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|n| n.channel == "ops-hook" && n.reason == "3 days left" && n.attempts == 2),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|n| n.channel == "ops-mail" && n.reason == "1 day left" && n.attempts >= 2),
        "{history:?}"
    );

    // The secrets are sealed: not in the database file in the clear.
    let database = std::fs::read(env.data_dir.path().join("certfleet.db")).unwrap_or_default();
    assert!(
        !database
            .windows(WEBHOOK_SECRET.len())
            .any(|window| window == WEBHOOK_SECRET.as_bytes()),
        "the webhook secret is not stored in the clear"
    );
    env.stop().await;
}

mod pb_like {
    pub struct Hook {
        pub event_id: String,
        pub signature: String,
        pub body: Vec<u8>,
    }
}
