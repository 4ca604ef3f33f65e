//! Platform agent tokens: read certificates and download bundles of every
//! organization they name, list organizations, change nothing.

use certfleet_proto::v1 as pb;
use tonic::Code;

use crate::support::{KEY_PEM, TestApp, authed, failure};

/// The token id inside a bearer string (`cf1.<id>.<secret>`).
fn token_id(bearer: &str) -> &str {
    bearer.split('.').nth(1).unwrap_or_default()
}

fn agent_request(organization: &str) -> pb::CreateApiTokenRequest {
    pb::CreateApiTokenRequest {
        organization: organization.to_owned(),
        role: pb::Role::Agent.into(),
        description: "proxy agent".to_owned(),
        expires_in_seconds: 0,
    }
}

/// Creates an agent token with the admin token.
async fn agent_token(app: &TestApp) -> anyhow::Result<pb::ApiToken> {
    Ok(app
        .organizations()
        .await?
        .create_api_token(authed(agent_request(""), &app.admin_token))
        .await?
        .into_inner())
}

fn list_in(organization: &str) -> pb::ListCertificatesRequest {
    pb::ListCertificatesRequest {
        organization: organization.to_owned(),
        ..Default::default()
    }
}

fn bundle_in(organization: &str, id: &str) -> pb::GetCertificateBundleRequest {
    pb::GetCertificateBundleRequest {
        id: id.to_owned(),
        organization: organization.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_read_certificates_and_bundles_of_every_organization() -> anyhow::Result<()> {
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
    let agent = agent_token(&app).await?;
    assert_eq!(agent.role(), pb::Role::Agent);
    assert_eq!(agent.organization_id, "");

    let mut certificates = app.certificates().await?;
    for (slug, organization_id, certificate) in [
        ("acme", &acme.id, &acme_cert),
        ("globex", &globex.id, &globex_cert),
    ] {
        let listed = certificates
            .list_certificates(authed(list_in(slug), &agent.token))
            .await?
            .into_inner()
            .certificates;
        let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [certificate.id.as_str()], "{slug}");
        let fetched = certificates
            .get_certificate(authed(
                pb::GetCertificateRequest {
                    id: certificate.id.clone(),
                    organization: slug.to_owned(),
                },
                &agent.token,
            ))
            .await?
            .into_inner();
        assert_eq!(&fetched.organization_id, organization_id);
        let bundle = certificates
            .get_certificate_bundle(authed(bundle_in(slug, &certificate.id), &agent.token))
            .await?
            .into_inner();
        assert_eq!(bundle.certificate_id, certificate.id);
        assert_eq!(bundle.private_key_pem, KEY_PEM);

        let audit = app.store.audit_entries(organization_id, 50).await?;
        let reads: Vec<_> = audit
            .iter()
            .filter(|entry| entry.action == "certificate.bundle_read")
            .collect();
        assert_eq!(reads.len(), 1, "{slug}: {audit:?}");
        assert_eq!(reads[0].actor, agent.id);
        assert_eq!(reads[0].target_id.as_deref(), Some(certificate.id.as_str()));
    }

    // A certificate of another organization is not found, as for organization tokens.
    let status = failure(
        certificates
            .get_certificate_bundle(authed(bundle_in("acme", &globex_cert.id), &agent.token))
            .await,
    )?;
    assert_eq!(status.code(), Code::NotFound);
    let status = failure(
        certificates
            .list_certificates(authed(list_in("nobody"), &agent.token))
            .await,
    )?;
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nobody"), "{}", status.message());

    // Agents list the organizations; organization tokens may not.
    let mut organizations = app.organizations().await?;
    let listed = organizations
        .list_organizations(authed(pb::ListOrganizationsRequest {}, &agent.token))
        .await?
        .into_inner()
        .organizations;
    let slugs: Vec<&str> = listed.iter().map(|o| o.slug.as_str()).collect();
    assert_eq!(slugs, ["acme", "globex"]);
    let status = failure(
        organizations
            .list_organizations(authed(pb::ListOrganizationsRequest {}, &acme.read))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_must_name_the_organization_and_others_must_not() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    let agent = agent_token(&app).await?;
    let mut certificates = app.certificates().await?;
    for (organization, token) in [
        ("", agent.token.as_str()),
        ("Not_A_Slug", agent.token.as_str()),
        ("acme", acme.read.as_str()),
    ] {
        let status = failure(
            certificates
                .list_certificates(authed(list_in(organization), token))
                .await,
        )?;
        assert_eq!(status.code(), Code::InvalidArgument, "{organization:?}");
        assert!(
            status
                .message()
                .starts_with(&format!("organization: {organization:?}")),
            "{}",
            status.message()
        );
    }
    // The admin token still cannot read certificates, named organization or not.
    let status = failure(
        certificates
            .list_certificates(authed(list_in("acme"), &app.admin_token))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_change_nothing() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    let certificate = app
        .create_certificate(&acme.write, &["www.acme.example"])
        .await?;
    let agent = agent_token(&app).await?;
    let token = agent.token.as_str();
    let mut certificates = app.certificates().await?;
    let mut organizations = app.organizations().await?;

    let create = pb::CreateCertificateRequest {
        names: vec!["new.acme.example".to_owned()],
        ..Default::default()
    };
    let revoke = pb::RevokeCertificateRequest {
        id: certificate.id.clone(),
        reason: pb::RevocationReason::Superseded.into(),
    };
    let delete = pb::DeleteCertificateRequest {
        id: certificate.id.clone(),
    };
    let renew = pb::RenewCertificateRequest {
        id: certificate.id.clone(),
    };
    let organization_token = pb::CreateApiTokenRequest {
        organization: "acme".to_owned(),
        role: pb::Role::Bundle.into(),
        description: String::new(),
        expires_in_seconds: 0,
    };
    let statuses = [
        (
            "create certificate",
            failure(certificates.create_certificate(authed(create, token)).await)?,
        ),
        (
            "revoke certificate",
            failure(certificates.revoke_certificate(authed(revoke, token)).await)?,
        ),
        (
            "delete certificate",
            failure(certificates.delete_certificate(authed(delete, token)).await)?,
        ),
        (
            "renew certificate",
            failure(certificates.renew_certificate(authed(renew, token)).await)?,
        ),
        (
            "create organization token",
            failure(
                organizations
                    .create_api_token(authed(organization_token, token))
                    .await,
            )?,
        ),
        (
            "create agent token",
            failure(
                organizations
                    .create_api_token(authed(agent_request(""), token))
                    .await,
            )?,
        ),
        (
            "list audit entries",
            failure(
                organizations
                    .list_audit_entries(authed(pb::ListAuditEntriesRequest::default(), token))
                    .await,
            )?,
        ),
        (
            "list tokens",
            failure(
                organizations
                    .list_api_tokens(authed(pb::ListApiTokensRequest::default(), token))
                    .await,
            )?,
        ),
        (
            "list dns providers",
            failure(
                app.dns_providers()
                    .await?
                    .list_dns_providers(authed(pb::ListDnsProvidersRequest::default(), token))
                    .await,
            )?,
        ),
    ];
    for (call, status) in statuses {
        assert_eq!(status.code(), Code::PermissionDenied, "{call}: {status:?}");
    }
    // Nothing changed: the certificate is there and still pending.
    let still = certificates
        .get_certificate(authed(
            pb::GetCertificateRequest {
                id: certificate.id.clone(),
                ..Default::default()
            },
            &acme.read,
        ))
        .await?
        .into_inner();
    assert_eq!(still.status(), pb::CertificateStatus::Pending);
    let listed = certificates
        .list_certificates(authed(pb::ListCertificatesRequest::default(), &acme.read))
        .await?
        .into_inner()
        .certificates;
    assert_eq!(listed.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_admin_creates_agent_tokens_and_without_an_organization() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    let mut organizations = app.organizations().await?;
    for token in [&acme.write, &acme.bundle] {
        let status = failure(
            organizations
                .create_api_token(authed(agent_request(""), token))
                .await,
        )?;
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let status = failure(
        organizations
            .create_api_token(authed(agent_request("acme"), &app.admin_token))
            .await,
    )?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("organization: \"acme\""),
        "{}",
        status.message()
    );
    // An organization role without an organization stays an error.
    let status = failure(
        organizations
            .create_api_token(authed(
                pb::CreateApiTokenRequest {
                    role: pb::Role::Read.into(),
                    ..agent_request("")
                },
                &app.admin_token,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("organization: \"\""),
        "{}",
        status.message()
    );

    let agent = agent_token(&app).await?;
    let admin_id = token_id(&app.admin_token);
    let entries = organizations
        .list_audit_entries(authed(
            pb::ListAuditEntriesRequest {
                action_prefix: "api_token.created".to_owned(),
                ..Default::default()
            },
            &app.admin_token,
        ))
        .await?
        .into_inner()
        .entries;
    let created = entries
        .iter()
        .find(|entry| entry.target_id == agent.id)
        .ok_or_else(|| anyhow::anyhow!("agent token creation not audited: {entries:?}"))?;
    assert_eq!(created.actor, admin_id);
    assert_eq!(created.organization_id, "");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_tokens_are_listed_and_revoked_without_an_organization() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.organization("acme").await?;
    let agent = agent_token(&app).await?;
    let mut organizations = app.organizations().await?;
    let listed = organizations
        .list_api_tokens(authed(
            pb::ListApiTokensRequest::default(),
            &app.admin_token,
        ))
        .await?
        .into_inner()
        .tokens;
    let ids: Vec<&str> = listed.iter().map(|token| token.id.as_str()).collect();
    assert_eq!(ids, [agent.id.as_str()], "admin tokens are not listed");
    assert_eq!(listed[0].role(), pb::Role::Agent);
    assert_eq!(listed[0].organization, "");

    // An agent token is not found under an organization, nor the admin token as an agent.
    for (organization, id) in [
        ("acme", agent.id.as_str()),
        ("", token_id(&app.admin_token)),
    ] {
        let request = pb::RevokeApiTokenRequest {
            organization: organization.to_owned(),
            id: id.to_owned(),
        };
        let status = failure(
            organizations
                .revoke_api_token(authed(request, &app.admin_token))
                .await,
        )?;
        assert_eq!(status.code(), Code::NotFound, "{organization:?} {id}");
    }
    let request = pb::RevokeApiTokenRequest {
        organization: String::new(),
        id: agent.id.clone(),
    };
    let revoked = organizations
        .revoke_api_token(authed(request, &app.admin_token))
        .await?
        .into_inner();
    assert!(revoked.revoked_at > 0);
    let status = failure(
        organizations
            .list_organizations(authed(pb::ListOrganizationsRequest {}, &agent.token))
            .await,
    )?;
    assert_eq!(status.code(), Code::Unauthenticated);
    Ok(())
}
