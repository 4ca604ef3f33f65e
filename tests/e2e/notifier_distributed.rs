//! certfleet-notifier in the distributed mode, with channels managed through
//! the `certfleet notify` CLI: a failing issuance's `failed` event reaches a
//! signed webhook once; an event published while the notifier is down waits
//! in its durable queue and is delivered when it is back; SIGKILLing and
//! restarting the notifier sends nothing twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions, WebhookReceiver, free_port};
use certfleet_e2e::{
    RoleProcess, RoleStack, all_logs, certfleet_binary, certificates, organization, request,
    wait_all_healthy,
};
use certfleet_notify::verify_signature;
use certfleet_proto::v1 as pb;
use tokio::time::Instant;

fn cli(grpc: SocketAddr, token: &str, arguments: &[&str]) -> std::process::Output {
    std::process::Command::new(certfleet_binary())
        .args(arguments)
        .env("CERTFLEET_ENDPOINT", format!("http://{grpc}"))
        .env("CERTFLEET_TOKEN", token)
        .output()
        .unwrap()
}

fn spawn_notifier(stack: &RoleStack, name: &str) -> (RoleProcess, SocketAddr) {
    stack.spawn("certfleet-notifier", name, Vec::new()).unwrap()
}

async fn running(notifier: &mut (RoleProcess, SocketAddr)) {
    notifier.0.wait_healthy(notifier.1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !notifier.0.log().contains("certfleet-notifier running") {
        assert!(Instant::now() < deadline, "{}", notifier.0.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Failed-event webhooks received, counted by event id.
fn failed_hooks(receiver: &WebhookReceiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in receiver.requests() {
        if request.header("X-Certfleet-Event") == Some("certificate.failed") {
            *counts
                .entry(
                    request
                        .header("X-Certfleet-Event-Id")
                        .unwrap_or("")
                        .to_owned(),
                )
                .or_insert(0) += 1;
        }
    }
    counts
}

async fn until_hooks(receiver: &WebhookReceiver, events: usize, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while failed_hooks(receiver).len() < events {
        assert!(
            Instant::now() < deadline,
            "{events} failed-event webhooks; got {:?}\n{}",
            failed_hooks(receiver),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `notify history` lists `count` notifications to `pager` as sent.
async fn until_sent(grpc: SocketAddr, token: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let history = cli(grpc, token, &["notify", "history"]);
        let history = String::from_utf8_lossy(&history.stdout).into_owned();
        let sent = history
            .lines()
            .filter(|line| line.contains("pager") && line.contains(" sent "))
            .count();
        if sent >= count {
            return;
        }
        assert!(Instant::now() < deadline, "{count} sent: {history}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_reach_the_webhook_once_across_notifier_kills() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let stack = RoleStack::create(&pebble).await.unwrap();
    let (api, grpc) = stack.spawn_api().unwrap();
    // No responder: every HTTP-01 self-check fails, after a second.
    let mut processes = vec![
        api,
        stack
            .spawn(
                "certfleet-issuer",
                "issuer",
                vec![
                    "--http01-self-check-addr".to_owned(),
                    format!("127.0.0.1:{}", free_port()),
                    "--http01-self-check-timeout".to_owned(),
                    "1".to_owned(),
                ],
            )
            .unwrap(),
    ];
    wait_all_healthy(&mut processes).await.unwrap();
    let mut notifier = spawn_notifier(&stack, "notifier");
    running(&mut notifier).await;

    let (write, _) = organization(grpc, &stack.admin_token, "paged").await;
    let receiver = WebhookReceiver::start().await.unwrap();
    let secret = "distributed-hook-secret-77";
    let secret_file = stack.logs.path().join("hook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let url = format!("url={}", receiver.url());
    let secret_arg = format!("secret={}", secret_file.display());

    // Bad input names the field and value, exit 1, nothing recorded.
    let bad = cli(
        grpc,
        &write,
        &[
            "notify", "add", "pager", "--kind", "webhook", "--set", &url, "--events", "expired",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("events") && stderr.contains("expired"),
        "{stderr}"
    );
    let added = cli(
        grpc,
        &write,
        &[
            "notify",
            "add",
            "pager",
            "--kind",
            "webhook",
            "--set",
            &url,
            "--set-file",
            &secret_arg,
            "--events",
            "failed",
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let shown = String::from_utf8_lossy(&added.stdout);
    assert!(
        shown.contains("secret = (secret, set; never shown)"),
        "{shown}"
    );
    assert!(!shown.contains(secret));
    let listed = cli(grpc, &write, &["notify", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("pager") && listed.contains("failed"),
        "{listed}"
    );
    let tested = cli(grpc, &write, &["notify", "test", "pager"]);
    assert!(
        tested.status.success(),
        "{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(
        receiver
            .requests()
            .iter()
            .any(|r| r.header("X-Certfleet-Event") == Some("certfleet.test"))
    );

    let logs = || all_logs(&processes);
    let mut client = certificates(grpc, &write).await;
    let create = |name: &str| request(&[name], pb::KeyType::EcdsaP256);
    client
        .create_certificate(create("first.paged.test"))
        .await
        .unwrap();
    until_hooks(&receiver, 1, logs).await;
    // Killed only once the delivery is recorded: a notifier killed between
    // sending and recording leaves the row claimed for two minutes, after
    // which it is sent again (at least once, by design).
    until_sent(grpc, &write, 1).await;

    // Down while the second failure happens: its event waits in the queue.
    notifier.0.kill();
    client
        .create_certificate(create("second.paged.test"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(failed_hooks(&receiver).len(), 1, "nothing sent while down");
    let mut notifier = spawn_notifier(&stack, "notifier-2");
    running(&mut notifier).await;
    until_hooks(&receiver, 2, logs).await;
    until_sent(grpc, &write, 2).await;

    // Killed and restarted again: nothing is sent twice.
    notifier.0.kill();
    let mut notifier = spawn_notifier(&stack, "notifier-3");
    running(&mut notifier).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = failed_hooks(&receiver);
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(
        counts.values().all(|count| *count == 1),
        "sent once each: {counts:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for hook in receiver.requests() {
        let signature = hook.header("X-Certfleet-Signature").unwrap_or("");
        assert!(
            verify_signature(secret.as_bytes(), signature, &hook.body, now, 300),
            "signed with the channel's secret"
        );
    }
    let history = cli(grpc, &write, &["notify", "history"]);
    let history = String::from_utf8_lossy(&history.stdout);
    assert_eq!(
        history
            .lines()
            .filter(|line| line.contains("pager") && line.contains(" sent "))
            .count(),
        2,
        "{history}"
    );
    let deleted = cli(grpc, &write, &["notify", "delete", "pager"]);
    assert!(deleted.status.success());
    assert!(
        !String::from_utf8_lossy(&cli(grpc, &write, &["notify", "list"]).stdout).contains("pager")
    );
    for log in [notifier.0.log(), all_logs(&processes)] {
        assert!(!log.contains(secret), "the secret is never logged");
    }
    drop(notifier);
    drop(processes);
    stack.remove().await.unwrap();
}
