//! Tenant isolation and roles: another organization's certificate looks
//! exactly like a missing one, and each role does only what it may.

use std::time::Duration;

use certfleet_proto::v1 as pb;
use tonic::{Code, Status};

use crate::support::{TestApp, authed, failure};

/// Every call that names a certificate, made with `write` (or `bundle` for the bundle).
async fn statuses_for(
    app: &TestApp,
    id: &str,
    write: &str,
    bundle: &str,
) -> anyhow::Result<Vec<Status>> {
    let mut client = app.certificates().await?;
    let id = id.to_owned();
    Ok(vec![
        failure(
            client
                .get_certificate(authed(
                    pb::GetCertificateRequest {
                        id: id.clone(),
                        ..Default::default()
                    },
                    write,
                ))
                .await,
        )?,
        failure(
            client
                .renew_certificate(authed(
                    pb::RenewCertificateRequest { id: id.clone() },
                    write,
                ))
                .await,
        )?,
        failure(
            client
                .revoke_certificate(authed(
                    pb::RevokeCertificateRequest {
                        id: id.clone(),
                        reason: 0,
                    },
                    write,
                ))
                .await,
        )?,
        failure(
            client
                .delete_certificate(authed(
                    pb::DeleteCertificateRequest { id: id.clone() },
                    write,
                ))
                .await,
        )?,
        failure(
            client
                .get_certificate_bundle(authed(
                    pb::GetCertificateBundleRequest {
                        id,
                        ..Default::default()
                    },
                    bundle,
                ))
                .await,
        )?,
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn another_organizations_certificate_looks_missing() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org_a = app.organization("alpha").await?;
    let org_b = app.organization("beta").await?;
    let certificate = app
        .create_certificate(&org_a.write, &["a.example.com"])
        .await?;
    app.issue_fake_version(&org_a.id, &certificate.id).await?;

    let foreign = statuses_for(&app, &certificate.id, &org_b.write, &org_b.bundle).await?;
    let unknown_id = "0190aaaa-0000-7000-8000-000000000000";
    let unknown = statuses_for(&app, unknown_id, &org_b.write, &org_b.bundle).await?;
    for (foreign, unknown) in foreign.iter().zip(&unknown) {
        assert_eq!(foreign.code(), Code::NotFound, "{foreign:?}");
        assert_eq!(
            foreign.message(),
            format!("certificate {} not found", certificate.id)
        );
        assert_eq!(unknown.code(), Code::NotFound);
        assert_eq!(
            unknown.message().replace(unknown_id, &certificate.id),
            foreign.message()
        );
    }
    // Nothing happened to A's certificate.
    let still = app
        .certificates()
        .await?
        .get_certificate(authed(
            pb::GetCertificateRequest {
                id: certificate.id.clone(),
                ..Default::default()
            },
            &org_a.read,
        ))
        .await?
        .into_inner();
    assert_eq!(still.status(), pb::CertificateStatus::Valid);
    let listed_by_b = app
        .certificates()
        .await?
        .list_certificates(authed(pb::ListCertificatesRequest::default(), &org_b.read))
        .await?
        .into_inner();
    assert!(listed_by_b.certificates.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_limit_what_a_token_may_do() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    for token in [&org.read, &org.bundle] {
        let status = failure(
            app.create_certificate(token, &["a.example.com"])
                .await
                .map(tonic::Response::new),
        )?;
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let certificate = app
        .create_certificate(&org.write, &["a.example.com"])
        .await?;
    app.issue_fake_version(&org.id, &certificate.id).await?;
    let mut client = app.certificates().await?;
    let bundle = || pb::GetCertificateBundleRequest {
        id: certificate.id.clone(),
        ..Default::default()
    };
    for token in [&org.read, &org.write] {
        let status = failure(client.get_certificate_bundle(authed(bundle(), token)).await)?;
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("bundle"), "{}", status.message());
    }
    client
        .get_certificate_bundle(authed(bundle(), &org.bundle))
        .await?;
    let status = failure(
        client
            .delete_certificate(authed(
                pb::DeleteCertificateRequest {
                    id: certificate.id.clone(),
                },
                &org.read,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    // Every role may read.
    for token in [&org.read, &org.write, &org.bundle] {
        client
            .get_certificate(authed(
                pb::GetCertificateRequest {
                    id: certificate.id.clone(),
                    ..Default::default()
                },
                token,
            ))
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_only_the_own_organizations_events() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org_a = app.organization("alpha").await?;
    let org_b = app.organization("beta").await?;
    let mut events = app
        .certificates()
        .await?
        .watch_certificates(authed(pb::WatchCertificatesRequest::default(), &org_a.read))
        .await?
        .into_inner();

    let in_b = app
        .create_certificate(&org_b.write, &["b.example.com"])
        .await?;
    let in_a = app
        .create_certificate(&org_a.write, &["a.example.com"])
        .await?;
    app.certificates()
        .await?
        .delete_certificate(authed(
            pb::DeleteCertificateRequest {
                id: in_b.id.clone(),
            },
            &org_b.write,
        ))
        .await?;
    app.certificates()
        .await?
        .delete_certificate(authed(
            pb::DeleteCertificateRequest {
                id: in_a.id.clone(),
            },
            &org_a.write,
        ))
        .await?;

    let mut received = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await??
            .ok_or_else(|| anyhow::anyhow!("watch stream ended"))?;
        received.push(event);
    }
    for event in &received {
        assert_eq!(event.organization_id, org_a.id);
        assert_eq!(event.certificate_id, in_a.id);
    }
    assert_eq!(received[0].r#type(), pb::EventType::Requested);
    assert_eq!(received[0].names, vec!["a.example.com".to_owned()]);
    assert_eq!(received[1].r#type(), pb::EventType::Deleted);
    // Nothing of B's arrives afterwards either.
    let more = tokio::time::timeout(Duration::from_millis(300), events.message()).await;
    assert!(more.is_err(), "unexpected event: {more:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_ends_open_watch_streams() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut events = app
        .certificates()
        .await?
        .watch_certificates(authed(pb::WatchCertificatesRequest::default(), &org.read))
        .await?
        .into_inner();
    app.shutdown().await?;
    let end = tokio::time::timeout(Duration::from_secs(5), events.message()).await?;
    assert!(matches!(end, Ok(None)), "{end:?}");
    Ok(())
}

/// A sealed key copied into another organization's version row (an attacker
/// with write access to the database) opens to nothing: the bundle call fails
/// and the row's own key is never swapped for the other tenant's.
#[tokio::test(flavor = "multi_thread")]
async fn an_envelope_copied_to_another_organizations_row_does_not_open() -> anyhow::Result<()> {
    use certfleet_store::SealedColumn;

    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    let globex = app.organization("globex").await?;
    let acme_cert = app
        .create_certificate(&acme.write, &["www.acme.example"])
        .await?;
    let globex_cert = app
        .create_certificate(&globex.write, &["www.globex.example"])
        .await?;
    app.issue_fake_version(&acme.id, &acme_cert.id).await?;
    app.issue_fake_version(&globex.id, &globex_cert.id).await?;
    let acme_version = app
        .store
        .list_versions(&acme.id, &acme_cert.id)
        .await?
        .remove(0);
    let globex_version = app
        .store
        .list_versions(&globex.id, &globex_cert.id)
        .await?
        .remove(0);
    assert!(
        app.store
            .replace_sealed(
                SealedColumn::VersionKey,
                &globex_version.id,
                &globex_version.key_sealed,
                &acme_version.key_sealed,
            )
            .await?
    );

    let mut client = app.certificates().await?;
    let status = failure(
        client
            .get_certificate_bundle(authed(
                pb::GetCertificateBundleRequest {
                    id: globex_cert.id.clone(),
                    ..Default::default()
                },
                &globex.bundle,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(!status.message().contains("PRIVATE KEY"), "{status:?}");
    // The owner still opens its own key.
    let own = client
        .get_certificate_bundle(authed(
            pb::GetCertificateBundleRequest {
                id: acme_cert.id.clone(),
                ..Default::default()
            },
            &acme.bundle,
        ))
        .await?
        .into_inner();
    assert!(own.private_key_pem.contains("PRIVATE KEY"));
    app.shutdown().await
}

/// Each version's key is bound to its version number: the first version's
/// key put into the second version's row does not open as the second's.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_moved_to_another_version_of_its_certificate_does_not_open() -> anyhow::Result<()> {
    use certfleet_store::SealedColumn;

    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    let certificate = app
        .create_certificate(&acme.write, &["www.acme.example"])
        .await?;
    app.issue_fake_version(&acme.id, &certificate.id).await?;
    app.issue_fake_version(&acme.id, &certificate.id).await?;
    let versions = app.store.list_versions(&acme.id, &certificate.id).await?;
    let (first, second) = match versions.as_slice() {
        [a, b] if a.version == 1 => (a.clone(), b.clone()),
        [a, b] => (b.clone(), a.clone()),
        other => anyhow::bail!("expected two versions, got {}", other.len()),
    };
    let bundle_request = || {
        authed(
            pb::GetCertificateBundleRequest {
                id: certificate.id.clone(),
                ..Default::default()
            },
            &acme.bundle,
        )
    };
    let mut client = app.certificates().await?;
    client.get_certificate_bundle(bundle_request()).await?;
    assert!(
        app.store
            .replace_sealed(
                SealedColumn::VersionKey,
                &second.id,
                &second.key_sealed,
                &first.key_sealed,
            )
            .await?
    );
    let status = failure(client.get_certificate_bundle(bundle_request()).await)?;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    app.shutdown().await
}
