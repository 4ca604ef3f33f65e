//! ListAuditEntries: who did what, from where; filters, paging, admin only.

use certfleet_proto::v1 as pb;
use tonic::Code;

use crate::support::{KEY_PEM, TestApp, authed, failure};

/// The token id inside a bearer string (`cf1.<id>.<secret>`).
fn token_id(bearer: &str) -> &str {
    bearer.split('.').nth(1).unwrap_or_default()
}

async fn list(
    app: &TestApp,
    request: pb::ListAuditEntriesRequest,
) -> anyhow::Result<pb::ListAuditEntriesResponse> {
    Ok(app
        .organizations()
        .await?
        .list_audit_entries(authed(request, &app.admin_token))
        .await?
        .into_inner())
}

fn of(organization: &str) -> pb::ListAuditEntriesRequest {
    pb::ListAuditEntriesRequest {
        organization: organization.to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_bundle_and_revoke_are_listed_with_who_what_and_where() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let other = app.organization("globex").await?;
    let certificate = app
        .create_certificate(&org.write, &["www.example.com"])
        .await?;
    app.create_certificate(&other.write, &["www.globex.example"])
        .await?;
    app.issue_fake_version(&org.id, &certificate.id).await?;
    let mut certificates = app.certificates().await?;
    certificates
        .get_certificate_bundle(authed(
            pb::GetCertificateBundleRequest {
                id: certificate.id.clone(),
                ..Default::default()
            },
            &org.bundle,
        ))
        .await?;
    certificates
        .revoke_certificate(authed(
            pb::RevokeCertificateRequest {
                id: certificate.id.clone(),
                reason: pb::RevocationReason::Superseded.into(),
            },
            &org.write,
        ))
        .await?;

    let entries = list(&app, of("acme")).await?.entries;
    let find = |action: &str| {
        entries
            .iter()
            .find(|entry| entry.action == action)
            .ok_or_else(|| anyhow::anyhow!("no {action} entry in {entries:?}"))
    };
    for (action, token) in [
        ("certificate.created", &org.write),
        ("certificate.bundle_read", &org.bundle),
        ("certificate.revocation_requested", &org.write),
    ] {
        let entry = find(action)?;
        assert_eq!(entry.actor, token_id(token), "{action}");
        assert_eq!(entry.target_id, certificate.id, "{action}");
        assert_eq!(entry.organization_id, org.id, "{action}");
        assert_eq!(entry.organization, "acme", "{action}");
        assert_eq!(entry.remote_addr, "127.0.0.1", "{action}");
        assert!(entry.created_at > 1_700_000_000, "{action}: seconds");
    }
    let bundle = find("certificate.bundle_read")?;
    assert_eq!(bundle.details, "version 1 serial 0A1B");
    assert!(entries.iter().all(|entry| !entry.details.contains("PRIVATE KEY")
        && !entry.details.contains(KEY_PEM)));
    // Admin calls carry the admin's address; the issuer's entries carry none.
    let created = find("organization.created")?;
    assert_eq!(created.actor, token_id(&app.admin_token));
    assert_eq!(created.remote_addr, "127.0.0.1");
    assert_eq!(find("certificate.issued")?.remote_addr, "");
    // Newest first; only acme's entries.
    assert_eq!(entries[0].action, "certificate.revocation_requested");
    assert!(entries.iter().all(|entry| entry.organization == "acme"));

    // Without an organization: every organization and the platform's entries.
    let everything = list(&app, of("")).await?.entries;
    assert!(
        everything
            .iter()
            .any(|entry| entry.organization == "globex")
    );
    assert!(
        everything
            .iter()
            .any(|entry| entry.organization_id.is_empty()
                && entry.action == "api_token.created"
                && entry.actor == "system")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_and_paging() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    for index in 0..3 {
        app.create_certificate(&org.write, &[&format!("www{index}.example.com")])
            .await?;
    }

    let certificates = list(
        &app,
        pb::ListAuditEntriesRequest {
            action_prefix: "certificate.".to_owned(),
            ..of("acme")
        },
    )
    .await?;
    let actions: Vec<&str> = certificates
        .entries
        .iter()
        .map(|entry| entry.action.as_str())
        .collect();
    assert_eq!(actions, ["certificate.created"; 3]);
    assert_eq!(certificates.next_page_token, "");

    let tokens = list(
        &app,
        pb::ListAuditEntriesRequest {
            action_prefix: "api_token.".to_owned(),
            ..of("acme")
        },
    )
    .await?;
    assert_eq!(tokens.entries.len(), 3, "read, write and bundle tokens");

    let future = list(
        &app,
        pb::ListAuditEntriesRequest {
            since: 4_000_000_000,
            ..of("acme")
        },
    )
    .await?;
    assert!(future.entries.is_empty());
    let past = list(
        &app,
        pb::ListAuditEntriesRequest {
            until: 1_000_000_000,
            ..of("")
        },
    )
    .await?;
    assert!(past.entries.is_empty());
    let recent = list(
        &app,
        pb::ListAuditEntriesRequest {
            since: 1_000_000_000,
            until: 4_000_000_000,
            ..of("acme")
        },
    )
    .await?;
    assert_eq!(
        recent.entries.len(),
        7,
        "organization, 3 tokens, 3 certificates"
    );

    // Pages of two walk every entry once, in the order of one big page.
    let all: Vec<String> = list(&app, of("acme"))
        .await?
        .entries
        .into_iter()
        .map(|entry| entry.id)
        .collect();
    assert_eq!(all.len(), 7);
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list(
            &app,
            pb::ListAuditEntriesRequest {
                page_size: 2,
                page_token: page_token.clone(),
                ..of("acme")
            },
        )
        .await?;
        assert!(page.entries.len() <= 2);
        paged.extend(page.entries.into_iter().map(|entry| entry.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(paged, all);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_name_the_field_and_organization_tokens_are_refused() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut client = app.organizations().await?;

    for token in [&org.read, &org.write, &org.bundle] {
        let status = failure(client.list_audit_entries(authed(of("acme"), token)).await)?;
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "organization calls need a platform admin token"
        );
    }

    let cases = [
        (
            pb::ListAuditEntriesRequest {
                page_size: 1001,
                ..of("")
            },
            Code::InvalidArgument,
            "page_size: \"1001\"",
        ),
        (
            pb::ListAuditEntriesRequest {
                page_token: "%%%".to_owned(),
                ..of("")
            },
            Code::InvalidArgument,
            "page_token: \"%%%\"",
        ),
        (
            pb::ListAuditEntriesRequest {
                since: -5,
                ..of("")
            },
            Code::InvalidArgument,
            "since: \"-5\"",
        ),
        (
            pb::ListAuditEntriesRequest {
                since: 20,
                until: 10,
                ..of("")
            },
            Code::InvalidArgument,
            "until: \"10\"",
        ),
        (
            pb::ListAuditEntriesRequest {
                action_prefix: "a\nb".to_owned(),
                ..of("")
            },
            Code::InvalidArgument,
            "action_prefix: ",
        ),
        (
            of("Bad_Slug"),
            Code::InvalidArgument,
            "organization: \"Bad_Slug\"",
        ),
        (
            of("nobody"),
            Code::NotFound,
            "organization \"nobody\" not found",
        ),
    ];
    for (request, code, message) in cases {
        let status = failure(
            client
                .list_audit_entries(authed(request, &app.admin_token))
                .await,
        )?;
        assert_eq!(status.code(), code, "{message}");
        assert!(
            status.message().starts_with(message),
            "{message}: {}",
            status.message()
        );
    }
    Ok(())
}
