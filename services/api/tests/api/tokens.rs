//! API token management: expiry, listing and revocation, and what each kind
//! of unusable token answers.

use std::time::Duration;

use certfleet_proto::v1 as pb;
use tonic::Code;

use crate::support::{TestApp, authed, failure};

const UNAUTHENTICATED_MESSAGE: &str = "invalid or missing bearer token";

/// Creates a token of `organization` through the API.
async fn create_token(
    app: &TestApp,
    organization: &str,
    role: pb::Role,
    expires_in_seconds: i64,
) -> anyhow::Result<pb::ApiToken> {
    let request = pb::CreateApiTokenRequest {
        organization: organization.to_owned(),
        role: role.into(),
        description: "ci deploys".to_owned(),
        expires_in_seconds,
    };
    Ok(app
        .organizations()
        .await?
        .create_api_token(authed(request, &app.admin_token))
        .await?
        .into_inner())
}

/// Asserts that `token` is refused exactly like an unknown token.
async fn assert_unauthenticated(app: &TestApp, token: &str) -> anyhow::Result<()> {
    let request = authed(pb::ListCertificatesRequest::default(), token);
    let status = failure(app.certificates().await?.list_certificates(request).await)?;
    assert_eq!(status.code(), Code::Unauthenticated, "{token}");
    assert_eq!(status.message(), UNAUTHENTICATED_MESSAGE);
    Ok(())
}

async fn list(app: &TestApp, organization: &str) -> anyhow::Result<Vec<pb::ApiTokenInfo>> {
    let request = pb::ListApiTokensRequest {
        organization: organization.to_owned(),
    };
    Ok(app
        .organizations()
        .await?
        .list_api_tokens(authed(request, &app.admin_token))
        .await?
        .into_inner()
        .tokens)
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_tokens_are_unauthenticated() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.organization("acme").await?;
    let token = create_token(&app, "acme", pb::Role::Read, 3600).await?;
    assert!(
        (token.expires_at - token.created_at - 3600).abs() <= 1,
        "{token:?}"
    );
    let request = authed(pb::ListCertificatesRequest::default(), &token.token);
    app.certificates().await?.list_certificates(request).await?;

    app.clock.advance(Duration::from_secs(3601));
    assert_unauthenticated(&app, &token.token).await?;
    // A token without expiry keeps working.
    let forever = create_token(&app, "acme", pb::Role::Read, 0).await?;
    assert_eq!(forever.expires_at, 0);
    let request = authed(pb::ListCertificatesRequest::default(), &forever.token);
    app.certificates().await?.list_certificates(request).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn token_lifetimes_are_checked() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.organization("acme").await?;
    for (seconds, expected) in [
        (-5, "expires_in_seconds: \"-5\""),
        (10_000_000_000, "expires_in_seconds: \"10000000000\""),
    ] {
        let status = failure(
            app.organizations()
                .await?
                .create_api_token(authed(
                    pb::CreateApiTokenRequest {
                        organization: "acme".to_owned(),
                        role: pb::Role::Read.into(),
                        description: String::new(),
                        expires_in_seconds: seconds,
                    },
                    &app.admin_token,
                ))
                .await,
        )?;
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(expected),
            "{}",
            status.message()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_tokens_stop_at_once_and_revoking_again_is_harmless() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.organization("acme").await?;
    let token = create_token(&app, "acme", pb::Role::Write, 0).await?;
    // Used once, so the authenticator has seen it.
    let request = authed(pb::ListCertificatesRequest::default(), &token.token);
    app.certificates().await?.list_certificates(request).await?;

    let mut client = app.organizations().await?;
    let revoke = || pb::RevokeApiTokenRequest {
        organization: "acme".to_owned(),
        id: token.id.clone(),
    };
    let revoked = client
        .revoke_api_token(authed(revoke(), &app.admin_token))
        .await?
        .into_inner();
    assert_eq!(revoked.id, token.id);
    assert!(revoked.revoked_at > 0);
    assert_unauthenticated(&app, &token.token).await?;

    app.clock.advance(Duration::from_secs(5));
    let again = client
        .revoke_api_token(authed(revoke(), &app.admin_token))
        .await?
        .into_inner();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_unauthenticated(&app, &token.token).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_of_another_organization_or_unknown_are_not_found() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    app.organization("globex").await?;
    let theirs = create_token(&app, "globex", pb::Role::Read, 0).await?;
    let admin_id = app.admin_token.split('.').nth(1).unwrap_or_default();
    let mut client = app.organizations().await?;
    for (organization, id) in [
        ("acme", theirs.id.as_str()),
        ("acme", admin_id),
        ("acme", "0190aaaa-0000-7000-8000-000000000000"),
        ("nobody", theirs.id.as_str()),
    ] {
        let request = pb::RevokeApiTokenRequest {
            organization: organization.to_owned(),
            id: id.to_owned(),
        };
        let status = failure(
            client
                .revoke_api_token(authed(request, &app.admin_token))
                .await,
        )?;
        assert_eq!(status.code(), Code::NotFound, "{organization} {id}");
    }
    // Nothing was revoked.
    let request = authed(pb::ListCertificatesRequest::default(), &theirs.token);
    app.certificates().await?.list_certificates(request).await?;
    let request = authed(pb::ListCertificatesRequest::default(), &acme.read);
    app.certificates().await?.list_certificates(request).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_shows_tokens_without_secrets() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    app.organization("globex").await?;
    let expiring = create_token(&app, "acme", pb::Role::Bundle, 600).await?;
    // Recorded in the background after a successful call.
    let request = authed(pb::ListCertificatesRequest::default(), &acme.read);
    app.certificates().await?.list_certificates(request).await?;

    let tokens = list(&app, "acme").await?;
    assert_eq!(tokens.len(), 4, "{tokens:?}");
    assert!(tokens.iter().all(|token| token.organization == "acme"));
    assert!(tokens.iter().all(|token| token.organization_id == acme.id));
    let listed = tokens
        .iter()
        .find(|token| token.id == expiring.id)
        .ok_or_else(|| anyhow::anyhow!("new token not listed"))?;
    assert_eq!(listed.role(), pb::Role::Bundle);
    assert_eq!(listed.description, "ci deploys");
    assert_eq!(listed.expires_at, expiring.expires_at);
    assert_eq!(listed.revoked_at, 0);
    // No secret, in any form: the debug output holds no part of a bearer secret.
    let shown = format!("{tokens:?}");
    for bearer in [&acme.read, &acme.write, &acme.bundle, &expiring.token] {
        let secret = bearer.rsplit('.').next().unwrap_or_default();
        assert!(!shown.contains(secret));
    }
    let read_id = acme.read.split('.').nth(1).unwrap_or_default();
    let mut last_used = 0;
    for _ in 0..50 {
        let tokens = list(&app, "acme").await?;
        last_used = tokens
            .iter()
            .find(|token| token.id == read_id)
            .map_or(0, |token| token.last_used_at);
        if last_used > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(last_used > 0, "the read token's use was not recorded");

    let globex = list(&app, "globex").await?;
    assert_eq!(globex.len(), 3);
    let status = failure(
        app.organizations()
            .await?
            .list_api_tokens(authed(
                pb::ListApiTokensRequest {
                    organization: "nobody".to_owned(),
                },
                &app.admin_token,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_admin_lists_and_revokes() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    app.organization("globex").await?;
    let mut client = app.organizations().await?;
    let acme_read_id = acme.read.split('.').nth(1).unwrap_or_default();
    for token in [&acme.read, &acme.write, &acme.bundle] {
        // Neither another organization's tokens nor its own.
        for organization in ["globex", "acme"] {
            let request = pb::ListApiTokensRequest {
                organization: organization.to_owned(),
            };
            let status = failure(client.list_api_tokens(authed(request, token)).await)?;
            assert_eq!(status.code(), Code::PermissionDenied, "{organization}");
        }
        let request = pb::RevokeApiTokenRequest {
            organization: "acme".to_owned(),
            id: acme_read_id.to_owned(),
        };
        let status = failure(client.revoke_api_token(authed(request, token)).await)?;
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    // Malformed and missing tokens are unauthenticated.
    for token in ["garbage", "cf1.x.y", ""] {
        let request = pb::ListApiTokensRequest {
            organization: "acme".to_owned(),
        };
        let status = failure(client.list_api_tokens(authed(request, token)).await)?;
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
        assert_eq!(status.message(), UNAUTHENTICATED_MESSAGE);
    }
    // The read token survived all that.
    let request = authed(pb::ListCertificatesRequest::default(), &acme.read);
    app.certificates().await?.list_certificates(request).await?;
    Ok(())
}
