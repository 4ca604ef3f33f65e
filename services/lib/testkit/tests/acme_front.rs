//! The ARI front against a real Pebble: plain HTTPS requests, and a full
//! issuance and renewal with instant-acme.

use std::borrow::Cow;
use std::path::Path;

use certfleet_testkit::acme_front::AcmeFront;
use certfleet_testkit::{Pebble, PebbleOptions};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewAccount,
    NewOrder, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not json ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

fn https_client(ca_path: &Path) -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_path).expect("ca file") {
        roots
            .add(certificate.expect("ca certificate"))
            .expect("trusting the ca");
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn send(client: &HttpsClient, method: Method, url: &str, body: &str) -> Answer {
    let mut request = Request::new(Full::new(Bytes::from(body.to_owned())));
    *request.method_mut() = method;
    *request.uri_mut() = url.parse().expect("url");
    if !body.is_empty() {
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/jose+json"),
        );
    }
    let response = client.request(request).await.expect("request");
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

async fn start() -> (Pebble, AcmeFront, HttpsClient) {
    let pebble = Pebble::start(PebbleOptions {
        va_always_valid: true,
        ..PebbleOptions::default()
    })
    .await
    .expect("pebble starts");
    let front = AcmeFront::start(&pebble).await.expect("front starts");
    assert_eq!(front.ca_path(), pebble.listener_ca_path());
    let client = https_client(&front.ca_path());
    (pebble, front, client)
}

fn front_origin(front: &AcmeFront) -> String {
    front
        .directory_url()
        .strip_suffix("/dir")
        .expect("directory url ends in /dir")
        .to_owned()
}

#[tokio::test]
async fn front_directory_has_renewal_info_and_points_at_the_front() {
    let (pebble, front, client) = start().await;
    let origin = front_origin(&front);
    assert_ne!(front.directory_url(), pebble.directory_url());

    let directory = send(&client, Method::GET, &front.directory_url(), "").await;
    assert_eq!(directory.status, StatusCode::OK, "{}", pebble.logs());
    let directory = directory.json();
    assert_eq!(
        directory["renewalInfo"],
        format!("{origin}/renewal-info"),
        "{directory}"
    );
    assert_eq!(directory["newOrder"], format!("{origin}/order-plz"));
    assert_eq!(directory["newNonce"], format!("{origin}/nonce-plz"));
    assert_eq!(directory["newAccount"], format!("{origin}/sign-me-up"));

    let nonce = send(&client, Method::HEAD, &format!("{origin}/nonce-plz"), "").await;
    assert!(nonce.status.is_success(), "{}", nonce.status);
    assert!(
        nonce
            .header(header::HeaderName::from_static("replay-nonce"))
            .is_some()
    );
    let link = nonce.header(header::LINK).expect("link header");
    assert!(link.contains(&format!("<{origin}/dir>")), "{link}");
}

#[tokio::test]
async fn front_answers_unknown_cert_ids_with_404() {
    let (_pebble, front, client) = start().await;
    let origin = front_origin(&front);

    let answer = send(
        &client,
        Method::GET,
        &format!("{origin}/renewal-info/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"),
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(
        answer.header(header::CONTENT_TYPE),
        Some("application/problem+json")
    );
    assert_eq!(
        answer.json()["type"],
        "urn:ietf:params:acme:error:malformed"
    );
    assert_eq!(
        front.renewal_info_requests("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"),
        1
    );

    // A window set by the test is served even for a certificate never seen.
    front.set_window("AAAA.AQ", 1_000_000, 2_000_000);
    front.set_retry_after(42);
    let answer = send(
        &client,
        Method::GET,
        &format!("{origin}/renewal-info/AAAA.AQ"),
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header(header::RETRY_AFTER), Some("42"));
    assert_eq!(
        answer.json(),
        serde_json::json!({"suggestedWindow": {
            "start": "1970-01-01T00:16:40Z",
            "end": "1970-01-01T00:33:20Z",
        }})
    );
    assert!(front.known_certificates().is_empty());
}

#[tokio::test]
async fn front_injects_rate_limited_new_orders() {
    let (_pebble, front, client) = start().await;
    let new_order = format!("{}/order-plz", front_origin(&front));
    front.inject_rate_limited(2, 7);

    for _ in 0..2 {
        let answer = send(&client, Method::POST, &new_order, "{}").await;
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(answer.header(header::RETRY_AFTER), Some("7"));
        assert_eq!(
            answer.header(header::CONTENT_TYPE),
            Some("application/problem+json")
        );
        assert_eq!(
            answer.json(),
            serde_json::json!({
                "type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "too many new orders recently",
                "status": 429,
            })
        );
    }
    // The third goes to Pebble, which refuses the bogus JWS otherwise.
    let answer = send(&client, Method::POST, &new_order, "{}").await;
    assert_ne!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.status.is_client_error(), "{}", answer.status);
    assert_eq!(front.new_orders(), 3);
}

#[tokio::test]
async fn front_that_is_down_answers_503() {
    let (_pebble, front, client) = start().await;
    front.set_down(true);
    let answer = send(&client, Method::GET, &front.directory_url(), "").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.json()["type"],
        "urn:ietf:params:acme:error:serverInternal"
    );
    front.set_down(false);
    let answer = send(&client, Method::GET, &front.directory_url(), "").await;
    assert_eq!(answer.status, StatusCode::OK);
}

async fn new_account(front: &AcmeFront) -> Account {
    let (account, _) = Account::builder_with_root(front.ca_path())
        .expect("account builder")
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            front.directory_url(),
            None,
        )
        .await
        .expect("account is created through the front");
    account
}

fn identifier(cert_id: &str) -> CertificateIdentifier<'static> {
    let (aki, serial) = cert_id.split_once('.').expect("certID has a dot");
    CertificateIdentifier {
        authority_key_identifier: Cow::Owned(aki.to_owned()),
        serial: Cow::Owned(serial.to_owned()),
    }
}

/// Orders, validates (Pebble accepts every challenge) and fetches a
/// certificate for `name`, replacing `replaces` if given.
async fn issue(
    account: &Account,
    name: &str,
    replaces: Option<&str>,
) -> Result<String, instant_acme::Error> {
    let identifiers = [Identifier::Dns(name.to_owned())];
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(cert_id) = replaces {
        new_order = new_order.replaces(identifier(cert_id));
    }
    let mut order = account.new_order(&new_order).await?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        if authorization.status == AuthorizationStatus::Pending {
            authorization
                .challenge(ChallengeType::Http01)
                .expect("an http-01 challenge")
                .set_ready()
                .await?;
        }
    }
    order.poll_ready(&RetryPolicy::default()).await?;
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::new(vec![name.to_owned()])
        .expect("csr params")
        .serialize_request(&key)
        .expect("csr");
    order.finalize_csr(csr.der()).await?;
    order.poll_certificate(&RetryPolicy::default()).await
}

#[tokio::test]
async fn front_serves_renewal_info_and_checks_replaces_for_issued_certificates() {
    let (pebble, front, _client) = start().await;
    let account = new_account(&front).await;

    let chain = issue(&account, "ari.certfleet.test", None)
        .await
        .unwrap_or_else(|error| panic!("issuance through the front: {error}\n{}", pebble.logs()));
    let cert_id = AcmeFront::cert_id(&chain).expect("certID");
    assert_eq!(front.known_certificates(), vec![cert_id.clone()]);
    assert_eq!(front.new_orders(), 1);

    // The default window: the last third of the lifetime, one sixth long.
    front.set_retry_after(3600);
    let (info, delay) = account
        .renewal_info(&identifier(&cert_id))
        .await
        .expect("renewal info");
    let window = info.suggested_window;
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain.as_bytes()).expect("pem");
    let leaf = pem.parse_x509().expect("leaf");
    let not_before = leaf.validity().not_before.timestamp();
    let lifetime_ms = (leaf.validity().not_after.timestamp() - not_before) * 1000;
    let start_ms = not_before * 1000 + lifetime_ms * 2 / 3;
    assert_eq!(window.start.unix_timestamp(), start_ms.div_euclid(1000));
    assert_eq!(
        window.end.unix_timestamp(),
        (start_ms + lifetime_ms / 6).div_euclid(1000)
    );
    assert!(
        delay.as_secs() > 3500 && delay.as_secs() <= 3600,
        "{delay:?}"
    );

    let start_ms = 1_900_000_000_000;
    front.set_window(&cert_id, start_ms, start_ms + 3_600_000);
    let (info, _) = account
        .renewal_info(&identifier(&cert_id))
        .await
        .expect("renewal info");
    assert_eq!(
        info.suggested_window.start.unix_timestamp(),
        start_ms / 1000
    );
    assert_eq!(
        info.suggested_window.end.unix_timestamp(),
        start_ms / 1000 + 3600
    );
    assert_eq!(front.renewal_info_requests(&cert_id), 2);

    // Another account may not replace it.
    let other = new_account(&front).await;
    issue(&other, "ari.certfleet.test", Some(&cert_id))
        .await
        .expect_err("another account's certificate");
    // A certificate the front never saw cannot be replaced.
    issue(&account, "ari.certfleet.test", Some("AAAA.AQ"))
        .await
        .expect_err("unknown certificate");

    // The owner replaces it once (instant-acme checks the order reflects
    // `replaces`), not twice.
    let renewed = issue(&account, "ari.certfleet.test", Some(&cert_id))
        .await
        .unwrap_or_else(|error| panic!("renewal through the front: {error}\n{}", pebble.logs()));
    let renewed_id = AcmeFront::cert_id(&renewed).expect("certID");
    assert_ne!(renewed_id, cert_id);
    issue(&account, "ari.certfleet.test", Some(&cert_id))
        .await
        .expect_err("already replaced");
    front.forget_replacement(&cert_id);
    issue(&account, "ari.certfleet.test", Some(&cert_id))
        .await
        .expect("replaceable again once forgotten");

    assert_eq!(
        front.replaces_seen(),
        vec![cert_id.clone(), cert_id.clone()]
    );
    assert_eq!(
        front.refused_replaces(),
        vec![
            (cert_id.clone(), 403),
            ("AAAA.AQ".to_owned(), 400),
            (cert_id.clone(), 409),
        ]
    );
    assert_eq!(front.new_orders(), 6);
    assert_eq!(front.known_certificates().len(), 3);
    assert_eq!(front.known_certificates()[1], renewed_id);
}
