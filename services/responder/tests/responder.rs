//! The responder against a real SQLite store over real HTTP.

use certfleet_store::{AcmeChallenge, Certificate, Effects, Organization, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|error| panic!("connect: {error}"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|error| panic!("write: {error}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .unwrap_or_else(|error| panic!("read: {error}"));
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_pending_tokens_only() {
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let path = directory.path().join("responder.db");
    let store = Store::connect(&path.to_string_lossy())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let organization = Organization {
        id: "org".into(),
        slug: "org".into(),
        name: "Org".into(),
        contact_email: "a@example.com".into(),
        created_at: 0,
        deleted_at: None,
    };
    store
        .create_organization(
            organization,
            certfleet_store::AuditEntry::new(Some("org"), "test", "organization.created", None, 0),
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let certificate = Certificate {
        id: "cert".into(),
        organization_id: "org".into(),
        primary_name: "a.example.com".into(),
        names: "a.example.com".into(),
        names_key: "a.example.com".into(),
        wildcard: false,
        key_type: "ecdsa-p256".into(),
        challenge_type: "http-01".into(),
        dns_provider_id: None,
        directory_url: "https://ca.test/dir".into(),
        profile: None,
        status: "issuing".into(),
        auto_renew: true,
        renew_before_ms: None,
        renew_at: None,
        next_attempt_at: None,
        attempts: 0,
        last_error: None,
        current_version_id: None,
        not_after: None,
        pending_order_url: None,
        pending_reason: None,
        pending_key_sealed: None,
        order_attempt_at: None,
        lease_owner: None,
        lease_until: None,
        deleted_at: None,
        created_at: 0,
        updated_at: 0,
        renew_reason: None,
        waiting_reason: None,
        ari_next_at: None,
    };
    store
        .create_certificate(certificate, Effects::default())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let challenge = |token: &str, status: &str, authorization: &str| AcmeChallenge {
        id: certfleet_store::new_id(),
        organization_id: "org".into(),
        certificate_id: "cert".into(),
        order_url: "https://ca.test/order/1".into(),
        authorization_url: authorization.into(),
        name: "a.example.com".into(),
        challenge_type: "http-01".into(),
        token: token.into(),
        key_authorization: format!("{token}.thumbprint"),
        dns_record_name: None,
        dns_record_value: None,
        status: status.into(),
        validated_at: None,
        error: None,
        created_at: 0,
        updated_at: 0,
        dns_zone: None,
        dns_cleaned_at: None,
    };
    for (token, status, authorization) in [
        ("pending-token", "pending", "https://ca.test/authz/1"),
        ("done-token", "valid", "https://ca.test/authz/2"),
    ] {
        store
            .upsert_challenge(challenge(token, status, authorization))
            .await
            .unwrap_or_else(|error| panic!("{error}"));
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|error| panic!("{error}"));
    tokio::spawn(certfleet_responder::serve(
        store,
        listener,
        std::future::pending(),
    ));

    assert_eq!(
        get(address, "/.well-known/acme-challenge/pending-token").await,
        (200, "pending-token.thumbprint".to_owned())
    );
    assert_eq!(
        get(address, "/.well-known/acme-challenge/done-token")
            .await
            .0,
        404
    );
    assert_eq!(
        get(address, "/.well-known/acme-challenge/unknown").await.0,
        404
    );
    assert_eq!(
        get(address, "/.well-known/acme-challenge/a%2Fb").await.0,
        404
    );
    assert_eq!(get(address, "/").await.0, 404);
    assert_eq!(get(address, "/admin-token").await.0, 404);
}
