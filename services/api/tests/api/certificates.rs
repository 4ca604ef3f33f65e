//! CertificateService within one organization: validation, duplicates,
//! listing, jobs and the certificate lifecycle calls.

use std::collections::HashSet;

use certfleet_bus::JobKind;
use certfleet_proto::v1 as pb;
use tonic::Code;

use crate::support::{CHAIN_PEM, KEY_PEM, LEAF_PEM, TestApp, authed, failure};

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_name_writes_nothing() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let status = failure(
        app.create_certificate(&org.write, &["a.example.com", "exa mple.com"])
            .await
            .map(tonic::Response::new),
    )?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "names[1]: \"exa mple.com\" is not a valid DNS name"
    );
    let listed = app
        .certificates()
        .await?
        .list_certificates(authed(pb::ListCertificatesRequest::default(), &org.read))
        .await?
        .into_inner();
    assert!(listed.certificates.is_empty());
    let audit = app.store.audit_entries(&org.id, 50).await?;
    assert!(
        audit
            .iter()
            .all(|entry| entry.action != "certificate.created")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn name_rules_are_enforced() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let many: Vec<String> = (0..101).map(|i| format!("h{i}.example.com")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let cases: [(&[&str], &str); 5] = [
        (&["*.example.com"], "DNS-01"),
        (&many, "at most 100 names"),
        (&["192.0.2.1"], "names[0]: \"192.0.2.1\""),
        (&["co.uk"], "names[0]: \"co.uk\""),
        (&[], "names: \"\""),
    ];
    for (names, expected) in cases {
        let status = failure(
            app.create_certificate(&org.write, names)
                .await
                .map(tonic::Response::new),
        )?;
        assert_eq!(status.code(), Code::InvalidArgument, "{names:?}");
        assert!(
            status.message().contains(expected),
            "{expected}: {}",
            status.message()
        );
    }
    // A wildcard passes the name rules with DNS-01, which needs a DNS provider.
    let request = pb::CreateCertificateRequest {
        names: vec!["*.example.com".to_owned()],
        challenge_type: pb::ChallengeType::Dns01.into(),
        ..Default::default()
    };
    let status = failure(
        app.certificates()
            .await?
            .create_certificate(authed(request, &org.write))
            .await,
    )?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "dns_provider: is required with challenge_type dns-01"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_name_set_names_the_existing_certificate() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let first = app
        .create_certificate(&org.write, &["a.example.com", "b.example.com"])
        .await?;
    assert_eq!(first.status(), pb::CertificateStatus::Pending);
    assert_eq!(first.key_type(), pb::KeyType::EcdsaP256);
    assert_eq!(first.challenge_type(), pb::ChallengeType::Http01);
    assert!(first.auto_renew);
    assert!(first.next_attempt_at > 1_600_000_000 && first.next_attempt_at < 10_000_000_000);

    let status = failure(
        app.create_certificate(&org.write, &["B.Example.com", "a.example.com."])
            .await
            .map(tonic::Response::new),
    )?;
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        status.message(),
        format!(
            "an active certificate for these names already exists: {}",
            first.id
        )
    );
    let existing = status.metadata().get("certfleet-existing-id");
    assert_eq!(
        existing.and_then(|value| value.to_str().ok()),
        Some(first.id.as_str())
    );
    // After a delete the same names may be requested again.
    app.certificates()
        .await?
        .delete_certificate(authed(
            pb::DeleteCertificateRequest {
                id: first.id.clone(),
            },
            &org.write,
        ))
        .await?;
    let again = app
        .create_certificate(&org.write, &["b.example.com", "a.example.com"])
        .await?;
    assert_ne!(again.id, first.id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn list_pages_and_filters() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut created = Vec::new();
    for i in 0..5 {
        let name = format!("site{i}.example.com");
        created.push(app.create_certificate(&org.write, &[&name]).await?.id);
    }
    let mut client = app.certificates().await?;
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut page_token = String::new();
    loop {
        let request = pb::ListCertificatesRequest {
            page_size: 2,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = client
            .list_certificates(authed(request, &org.read))
            .await?
            .into_inner();
        pages += 1;
        assert!(page.certificates.len() <= 2);
        seen.extend(page.certificates.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        anyhow::ensure!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);

    // One becomes valid: the status filter and the current version show it.
    app.issue_fake_version(&org.id, &created[2]).await?;
    let status_filter = |status: pb::CertificateStatus| pb::ListCertificatesRequest {
        status: status.into(),
        ..Default::default()
    };
    let valid = client
        .list_certificates(authed(
            status_filter(pb::CertificateStatus::Valid),
            &org.read,
        ))
        .await?
        .into_inner()
        .certificates;
    assert_eq!(valid.len(), 1);
    assert_eq!(valid[0].id, created[2]);
    let current = valid[0].current.clone().unwrap_or_default();
    assert_eq!(current.serial, "0A1B");
    assert_eq!(current.version, 1);
    let pending = client
        .list_certificates(authed(
            status_filter(pb::CertificateStatus::Pending),
            &org.read,
        ))
        .await?
        .into_inner()
        .certificates;
    assert_eq!(pending.len(), 4);
    let by_name = pb::ListCertificatesRequest {
        name: "site4".to_owned(),
        ..Default::default()
    };
    let named = client
        .list_certificates(authed(by_name, &org.read))
        .await?
        .into_inner()
        .certificates;
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].id, created[4]);

    for (request, field) in [
        (
            pb::ListCertificatesRequest {
                page_size: 501,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListCertificatesRequest {
                page_token: "not a token".to_owned(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        let status = failure(client.list_certificates(authed(request, &org.read)).await)?;
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn create_renew_and_revoke_queue_jobs() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let certificate = app
        .create_certificate(&org.write, &["www.example.com"])
        .await?;
    let job = app.next_job_for(&certificate.id).await?;
    assert_eq!(job.kind, JobKind::Issue);
    assert_eq!(job.organization_id, org.id);

    let mut client = app.certificates().await?;
    let id = certificate.id.clone();
    let revoke = |reason: pb::RevocationReason| pb::RevokeCertificateRequest {
        id: id.clone(),
        reason: reason.into(),
    };
    let status = failure(
        client
            .revoke_certificate(authed(revoke(pb::RevocationReason::Superseded), &org.write))
            .await,
    )?;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "certificate has no issued version to revoke"
    );

    app.issue_fake_version(&org.id, &certificate.id).await?;
    let renewed = client
        .renew_certificate(authed(
            pb::RenewCertificateRequest { id: id.clone() },
            &org.write,
        ))
        .await?
        .into_inner();
    assert_eq!(renewed.status(), pb::CertificateStatus::Renewing);
    assert_eq!(app.next_job_for(&id).await?.kind, JobKind::Issue);

    let revoked = client
        .revoke_certificate(authed(
            revoke(pb::RevocationReason::KeyCompromise),
            &org.write,
        ))
        .await?
        .into_inner();
    assert_eq!(revoked.id, id);
    assert_eq!(
        app.next_job_for(&id).await?.kind,
        JobKind::Revoke {
            reason: "key-compromise".to_owned()
        }
    );
    let audit = app.store.audit_entries(&org.id, 50).await?;
    for action in [
        "certificate.created",
        "certificate.renewal_requested",
        "certificate.revocation_requested",
    ] {
        assert!(audit.iter().any(|entry| entry.action == action), "{action}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bundle_returns_the_key_and_is_audited() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let certificate = app
        .create_certificate(&org.write, &["www.example.com"])
        .await?;
    let mut client = app.certificates().await?;
    let request = || pb::GetCertificateBundleRequest {
        id: certificate.id.clone(),
        ..Default::default()
    };
    let status = failure(
        client
            .get_certificate_bundle(authed(request(), &org.bundle))
            .await,
    )?;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "certificate has not been issued yet");

    app.issue_fake_version(&org.id, &certificate.id).await?;
    let bundle = client
        .get_certificate_bundle(authed(request(), &org.bundle))
        .await?
        .into_inner();
    assert_eq!(bundle.certificate_id, certificate.id);
    assert_eq!(bundle.version, 1);
    assert_eq!(bundle.certificate_pem, LEAF_PEM);
    assert_eq!(bundle.chain_pem, CHAIN_PEM);
    assert_eq!(bundle.fullchain_pem, format!("{LEAF_PEM}{CHAIN_PEM}"));
    assert_eq!(bundle.private_key_pem, KEY_PEM);
    let audit = app.store.audit_entries(&org.id, 50).await?;
    let read = audit
        .iter()
        .find(|entry| entry.action == "certificate.bundle_read");
    assert_eq!(
        read.and_then(|entry| entry.target_id.as_deref()),
        Some(certificate.id.as_str())
    );
    Ok(())
}
