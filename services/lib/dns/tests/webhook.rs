//! The webhook provider against a real HTTP receiver that checks the
//! signature the way the documentation tells receivers to.

#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use certfleet_dns::providers::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use certfleet_dns::{DnsError, DnsProvider, ProviderKind, TxtRecord};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use common::{NAME, ZONE, assert_nothing_left, assert_refused, build_provider};

const SECRET: &str = "webhook-secret-0123456789";

/// What the receiver accepted: (action, fqdn, value).
type Calls = Arc<Mutex<Vec<(String, String, String)>>>;

/// Answers 204 to a correctly signed request, 401 to a bad signature, and
/// the status in the `X-Answer` query (`/?status=500`) when asked to.
async fn receiver() -> (SocketAddr, Calls) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let forced = request
                            .uri()
                            .query()
                            .and_then(|query| query.strip_prefix("status="))
                            .and_then(|status| status.parse::<u16>().ok());
                        let header = |name: &str| {
                            request
                                .headers()
                                .get(name)
                                .and_then(|value| value.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let (timestamp, signature) =
                            (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let status = if !verify(SECRET.as_bytes(), &timestamp, &body, &signature) {
                            401
                        } else if let Some(forced) = forced {
                            forced
                        } else {
                            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            seen.lock().unwrap().push((
                                json["action"].as_str().unwrap().to_owned(),
                                json["fqdn"].as_str().unwrap().to_owned(),
                                json["value"].as_str().unwrap().to_owned(),
                            ));
                            204
                        };
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"no such zone")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, calls)
}

fn provider(url: &str, secret: &str) -> Arc<dyn DnsProvider> {
    build_provider(
        ProviderKind::Webhook,
        &[("url", url), ("hmac_secret", secret)],
    )
    .unwrap()
}

fn record() -> TxtRecord {
    TxtRecord {
        zone: Some(ZONE.to_owned()),
        ..common::record(NAME, "token-value")
    }
}

#[tokio::test]
async fn signed_requests_are_accepted_and_carry_the_record() {
    let (address, calls) = receiver().await;
    let webhook = provider(&format!("http://{address}/dns"), SECRET);
    webhook.present(&record()).await.unwrap();
    webhook.cleanup(&record()).await.unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            (
                "present".to_owned(),
                "_acme-challenge.example.test.".to_owned(),
                "token-value".to_owned()
            ),
            (
                "cleanup".to_owned(),
                "_acme-challenge.example.test.".to_owned(),
                "token-value".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_a_server_error_is_retryable() {
    let (address, calls) = receiver().await;
    let wrong = provider(
        &format!("http://{address}/dns"),
        "another-secret-0123456789",
    );
    let error = wrong.present(&record()).await.unwrap_err();
    assert_refused(&error, "401", &[]);

    let failing = provider(&format!("http://{address}/dns?status=503"), SECRET);
    let error = failing.present(&record()).await.unwrap_err();
    assert!(matches!(error, DnsError::Unavailable { .. }), "{error}");
    assert!(error.is_transient());
    assert_nothing_left(&calls.lock().unwrap());

    let nobody = provider("http://127.0.0.1:1/dns", SECRET);
    let error = nobody.present(&record()).await.unwrap_err();
    assert!(matches!(error, DnsError::Unavailable { .. }), "{error}");
}
