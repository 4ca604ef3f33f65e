//! Settings checks and the pure helpers of the Route 53 provider.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::{DnsPolicy, ProviderConfig, SettingError};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn parse(pairs: &[(&str, &str)]) -> Result<ProviderConfig, SettingError> {
    let values: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    ProviderConfig::parse(ProviderKind::Route53, values, &DnsPolicy::default())
}

fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
        ("secret_access_key", SECRET),
    ];
    pairs.extend_from_slice(extra);
    pairs
}

fn error_of(pairs: &[(&str, &str)]) -> SettingError {
    parse(pairs).expect_err("settings are refused")
}

#[test]
fn minimal_settings_build() {
    let config = parse(&with(&[])).expect("valid settings");
    let provider = Route53::from_config(&config).expect("provider builds");
    assert_eq!(provider.ttl, 60);
    assert_eq!(provider.hosted_zone_id, None);
    assert!(!format!("{provider:?}").contains(SECRET));
}

#[test]
fn all_settings_build() {
    let config = parse(&with(&[
        ("session_token", "FwoGZXIvYXdzEXAMPLE"),
        ("region", "eu-west-1"),
        ("endpoint_url", "http://127.0.0.1:5000/"),
        ("hosted_zone_id", "/hostedzone/Z0123456789ABC"),
        ("ttl", "300"),
    ]))
    .expect("valid settings");
    let provider = Route53::from_config(&config).expect("provider builds");
    assert_eq!(provider.hosted_zone_id.as_deref(), Some("Z0123456789ABC"));
    assert_eq!(provider.ttl, 300);
}

#[test]
fn missing_credentials_name_the_setting() {
    let error = error_of(&[("secret_access_key", SECRET)]);
    assert_eq!(error.field, "settings.access_key_id");
    assert!(error.message.contains("required"), "{error}");

    let error = error_of(&[("access_key_id", "AKIAIOSFODNN7EXAMPLE")]);
    assert_eq!(error.field, "settings.secret_access_key");
}

#[test]
fn bad_secret_is_not_echoed() {
    let error = error_of(&[
        ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
        ("secret_access_key", "not a secret we show"),
    ]);
    assert_eq!(error.field, "settings.secret_access_key");
    assert!(!error.to_string().contains("we show"), "{error}");

    let error = error_of(&with(&[("session_token", "token with spaces")]));
    assert_eq!(error.field, "settings.session_token");
    assert!(!error.to_string().contains("with spaces"), "{error}");
}

#[test]
fn bad_plain_settings_name_the_setting_and_value() {
    for (key, value) in [
        ("access_key_id", "AKIA/EXAMPLE"),
        ("region", "EU West"),
        ("endpoint_url", "ftp://moto.local"),
        ("hosted_zone_id", "Z1; DROP"),
        ("ttl", "0"),
        ("ttl", "sixty"),
    ] {
        let mut pairs = with(&[]);
        pairs.retain(|(name, _)| *name != key);
        pairs.push((key, value));
        let error = error_of(&pairs);
        assert_eq!(error.field, format!("settings.{key}"), "{error}");
        assert!(error.message.contains(value), "{error}");
    }
}

#[test]
fn unknown_setting_is_refused() {
    let error = error_of(&with(&[("zone_id", "Z1")]));
    assert_eq!(error.field, "settings.zone_id");
    assert!(error.message.contains("hosted_zone_id"), "{error}");
}

#[test]
fn values_are_quoted_and_unquoted() {
    assert_eq!(quote("abc"), "\"abc\"");
    assert_eq!(unquote("\"abc\""), "abc");
    assert_eq!(unquote(&quote("a\"b\\c")), "a\"b\\c");
    assert_eq!(unquote("abc"), "abc");
    assert_eq!(unquote("\"a\" \"b\""), "\"a\" \"b\"");
}

#[test]
fn names_and_ids() {
    assert!(same_name(
        "_acme-challenge.Example.com.",
        "_acme-challenge.example.com"
    ));
    assert!(!same_name("example.com.", "www.example.com"));
    assert_eq!(bare_id("/hostedzone/Z1"), "Z1");
    assert_eq!(bare_id("Z1"), "Z1");
    let all: Vec<&str> = suffixes("_acme-challenge.a.example.com").collect();
    assert_eq!(
        all,
        [
            "_acme-challenge.a.example.com",
            "a.example.com",
            "example.com",
            "com"
        ]
    );
}

/// Answers every request with `GetChange` XML: `PENDING` for the first
/// `pending` requests, `INSYNC` after; returns the endpoint and a counter.
async fn change_server(pending: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0_u8; 4096];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.extend_from_slice(&buffer[..read]),
                }
            }
            let index = counter.fetch_add(1, Ordering::SeqCst);
            let status = if index < pending { "PENDING" } else { "INSYNC" };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><GetChangeResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeInfo><Id>/change/C1</Id><Status>{status}</Status><SubmittedAt>2024-01-01T00:00:00Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
            );
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (endpoint, served)
}

fn provider_at(endpoint: &str) -> Route53 {
    let config = parse(&with(&[("endpoint_url", endpoint)])).expect("valid settings");
    Route53::from_config(&config).expect("provider builds")
}

#[tokio::test]
async fn an_in_sync_change_is_not_polled() {
    let (endpoint, served) = change_server(0).await;
    let provider = provider_at(&endpoint);
    let change = Some(("/change/C1".to_owned(), ChangeStatus::Insync));
    provider.wait_in_sync(change).await.expect("in sync");
    assert_eq!(served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_pending_change_is_polled_until_in_sync() {
    let (endpoint, served) = change_server(2).await;
    let provider = provider_at(&endpoint);
    let change = Some(("/change/C1".to_owned(), ChangeStatus::Pending));
    provider.wait_in_sync(change).await.expect("in sync");
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_change_pending_too_long_is_unavailable() {
    let (endpoint, _served) = change_server(usize::MAX).await;
    let mut provider = provider_at(&endpoint);
    provider.sync_timeout = Duration::from_millis(600);
    let change = Some(("/change/C1".to_owned(), ChangeStatus::Pending));
    let error = provider.wait_in_sync(change).await.expect_err("gives up");
    assert!(matches!(error, DnsError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("still PENDING"), "{error}");
}
