//! End-to-end tests of certfleet-api over real gRPC: authentication,
//! organizations, certificates, DNS providers, tenant isolation, events,
//! health and reflection.

#[path = "api/agent.rs"]
mod agent;
#[path = "api/audit.rs"]
mod audit;
#[path = "api/certificates.rs"]
mod certificates;
#[path = "api/dns_providers.rs"]
mod dns_providers;
#[path = "api/eab.rs"]
mod eab;
#[path = "api/installations.rs"]
mod installations;
#[path = "api/isolation.rs"]
mod isolation;
#[path = "api/support.rs"]
mod support;
#[path = "api/tokens.rs"]
mod tokens;

use certfleet_proto::v1 as pb;
use tonic::Code;

use support::{TestApp, authed, failure};

#[tokio::test(flavor = "multi_thread")]
async fn calls_without_a_valid_token_are_unauthenticated() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut client = app.certificates().await?;
    let token_id = org.read.split('.').nth(1).unwrap_or_default();
    let wrong_secret = format!("cf1.{token_id}.{}", "A".repeat(43));
    let unknown_id = format!(
        "cf1.0190aaaa-0000-7000-8000-000000000000.{}",
        "A".repeat(43)
    );
    let bad = [
        None,
        Some("garbage"),
        Some("cf1.x.y"),
        Some(wrong_secret.as_str()),
        Some(unknown_id.as_str()),
    ];
    for token in bad {
        let request = match token {
            Some(token) => authed(pb::ListCertificatesRequest::default(), token),
            None => tonic::Request::new(pb::ListCertificatesRequest::default()),
        };
        let status = failure(client.list_certificates(request).await)?;
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
        assert_eq!(status.message(), "invalid or missing bearer token");
    }
    // The same header without the scheme is refused too.
    let mut request = tonic::Request::new(pb::ListCertificatesRequest::default());
    request
        .metadata_mut()
        .insert("authorization", org.read.parse()?);
    let status = failure(client.list_certificates(request).await)?;
    assert_eq!(status.code(), Code::Unauthenticated);
    // And the real token works.
    client
        .list_certificates(authed(pb::ListCertificatesRequest::default(), &org.read))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_creates_organizations_and_tokens_with_audit() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut client = app.organizations().await?;

    let duplicate = pb::CreateOrganizationRequest {
        slug: "acme".to_owned(),
        name: "Acme again".to_owned(),
        contact_email: "ops@acme.example.com".to_owned(),
    };
    let status = failure(
        client
            .create_organization(authed(duplicate, &app.admin_token))
            .await,
    )?;
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(
        status.message().contains("\"acme\""),
        "{}",
        status.message()
    );

    let unknown = pb::CreateApiTokenRequest {
        organization: "nobody".to_owned(),
        role: pb::Role::Read.into(),
        description: String::new(),
        expires_in_seconds: 0,
    };
    let status = failure(
        client
            .create_api_token(authed(unknown, &app.admin_token))
            .await,
    )?;
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nobody"));

    let no_role = pb::CreateApiTokenRequest {
        organization: "acme".to_owned(),
        role: pb::Role::Unspecified.into(),
        description: String::new(),
        expires_in_seconds: 0,
    };
    let status = failure(
        client
            .create_api_token(authed(no_role, &app.admin_token))
            .await,
    )?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("role: "),
        "{}",
        status.message()
    );

    // Organization tokens cannot administer; admin tokens cannot manage certificates.
    let attempt = pb::CreateOrganizationRequest {
        slug: "other".to_owned(),
        name: "Other".to_owned(),
        contact_email: "ops@other.example.com".to_owned(),
    };
    let status = failure(
        client
            .create_organization(authed(attempt, &org.write))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = failure(
        app.certificates()
            .await?
            .list_certificates(authed(
                pb::ListCertificatesRequest::default(),
                &app.admin_token,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "certificate calls need an organization token"
    );

    let admin_id = app.admin_token.split('.').nth(1).unwrap_or_default();
    let audit = app.store.audit_entries(&org.id, 50).await?;
    let actions: Vec<&str> = audit.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|action| **action == "api_token.created")
            .count(),
        3
    );
    assert!(actions.contains(&"organization.created"));
    assert!(audit.iter().all(|entry| entry.actor == admin_id));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_input_names_the_field_and_value() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let mut client = app.organizations().await?;
    let cases = [
        (
            "Bad_Slug",
            "Acme",
            "ops@acme.example.com",
            "slug: \"Bad_Slug\"",
        ),
        ("acme", "", "ops@acme.example.com", "name: \"\""),
        (
            "acme",
            "Acme",
            "not-an-email",
            "contact_email: \"not-an-email\"",
        ),
    ];
    for (slug, name, email, expected) in cases {
        let request = pb::CreateOrganizationRequest {
            slug: slug.to_owned(),
            name: name.to_owned(),
            contact_email: email.to_owned(),
        };
        let status = failure(
            client
                .create_organization(authed(request, &app.admin_token))
                .await,
        )?;
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(expected),
            "{expected}: {}",
            status.message()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_serving() -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let app = TestApp::spawn().await?;
    let mut health = HealthClient::new(app.channel().await?);
    for service in [
        "",
        "certfleet.v1.CertificateService",
        "certfleet.v1.OrganizationService",
        "certfleet.v1.DnsProviderService",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_every_service() -> anyhow::Result<()> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = TestApp::spawn().await?;
    let mut client = ServerReflectionClient::new(app.channel().await?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = responses.message().await?;
    let Some(MessageResponse::ListServicesResponse(list)) =
        response.and_then(|response| response.message_response)
    else {
        anyhow::bail!("no list services response");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "certfleet.v1.CertificateService",
        "certfleet.v1.OrganizationService",
        "certfleet.v1.DnsProviderService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    Ok(())
}
