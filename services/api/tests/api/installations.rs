//! What agents report, and the notification channels of an organization:
//! the API decides whether an installation is verified (the served
//! fingerprint must be the version's), only agent tokens report or read open
//! challenges; channels are refused by setting name, their secrets are never
//! returned, and another organization sees none of them.

use anyhow::Context as _;
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::notification_service_client::NotificationServiceClient;
use tonic::Code;

use crate::support::{TestApp, authed, failure};

fn report(
    id: &str,
    fingerprint: &str,
    installed: bool,
    error: &str,
) -> pb::ReportInstallationRequest {
    pb::ReportInstallationRequest {
        organization: "acme".to_owned(),
        certificate_id: id.to_owned(),
        agent: "web-1/nginx".to_owned(),
        host: "web-1".to_owned(),
        target: "nginx".to_owned(),
        version: 1,
        installed,
        served_fingerprint_sha256: fingerprint.to_owned(),
        served_serial: "0A1B".to_owned(),
        error: error.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_decides_whether_an_installation_is_verified() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    let cert = app
        .create_certificate(&acme.write, &["www.acme.example"])
        .await?;
    app.issue_fake_version(&acme.id, &cert.id).await?;
    let agent = app
        .organizations()
        .await?
        .create_api_token(authed(
            pb::CreateApiTokenRequest {
                organization: String::new(),
                role: pb::Role::Agent.into(),
                description: "agent".to_owned(),
                expires_in_seconds: 0,
            },
            &app.admin_token,
        ))
        .await?
        .into_inner()
        .token;
    let mut certificates = app.certificates().await?;
    let version_fingerprint = "00".repeat(32);

    // The right fingerprint: verified.
    let ok = certificates
        .report_installation(authed(
            report(&cert.id, &version_fingerprint, true, ""),
            &agent,
        ))
        .await?
        .into_inner();
    assert!(ok.ok, "{ok:?}");
    assert!(ok.verified_at > 0);
    // Another one: recorded as failed, naming what was served.
    let other = certificates
        .report_installation(authed(report(&cert.id, &"ab".repeat(32), true, ""), &agent))
        .await?
        .into_inner();
    assert!(!other.ok);
    assert!(
        other.error.contains("another certificate"),
        "{}",
        other.error
    );
    // No check (`--no-verify`): installed, not verified.
    let unchecked = certificates
        .report_installation(authed(report(&cert.id, "", true, ""), &agent))
        .await?
        .into_inner();
    assert!(unchecked.ok && unchecked.error.is_empty(), "{unchecked:?}");
    assert_eq!(unchecked.verified_at, 0);
    // The agent's own error wins.
    let refused = certificates
        .report_installation(authed(
            report(&cert.id, "", false, "nginx: [emerg] unknown directive"),
            &agent,
        ))
        .await?
        .into_inner();
    assert!(!refused.ok);
    assert_eq!(refused.error, "nginx: [emerg] unknown directive");
    let shown = certificates
        .get_certificate(authed(
            pb::GetCertificateRequest {
                id: cert.id.clone(),
                organization: String::new(),
            },
            &acme.read,
        ))
        .await?
        .into_inner();
    assert_eq!(shown.installations.len(), 1, "one row per agent");
    assert_eq!(shown.installations[0].error, refused.error);

    // Bad input names the field.
    let mut bad = report(&cert.id, &version_fingerprint, true, "");
    bad.target = "apache".to_owned();
    let status = failure(certificates.report_installation(authed(bad, &agent)).await)?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("target") && status.message().contains("apache"));
    let mut bad = report(&cert.id, &version_fingerprint, true, "");
    bad.version = 9;
    let status = failure(certificates.report_installation(authed(bad, &agent)).await)?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("version"), "{}", status.message());

    // Organization tokens neither report nor read open challenges.
    let mut own = report(&cert.id, &version_fingerprint, true, "");
    own.organization = String::new();
    let status = failure(
        certificates
            .report_installation(authed(own, &acme.write))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = failure(
        certificates
            .list_http_challenges(authed(pb::ListHttpChallengesRequest {}, &acme.write))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = failure(
        certificates
            .list_http_challenges(authed(pb::ListHttpChallengesRequest {}, &app.admin_token))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    certificates
        .list_http_challenges(authed(pb::ListHttpChallengesRequest {}, &agent))
        .await?;
    Ok(())
}

fn settings(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_hide_their_secrets_and_stay_in_their_organization() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    let globex = app.organization("globex").await?;
    let mut channels = NotificationServiceClient::new(app.channel().await?);
    let create =
        |name: &str, kind: &str, pairs: &[(&str, &str)]| pb::CreateNotificationChannelRequest {
            name: name.to_owned(),
            kind: kind.to_owned(),
            settings: settings(pairs),
            events: Vec::new(),
        };

    let created = channels
        .create_notification_channel(authed(
            create(
                "ops",
                "email",
                &[
                    ("host", "smtp.acme.example"),
                    ("username", "certfleet"),
                    ("password", "hunter2-smtp"),
                    ("from", "certfleet@acme.example"),
                    ("to", "ops@acme.example"),
                ],
            ),
            &acme.write,
        ))
        .await?
        .into_inner();
    assert_eq!(created.secret_settings, ["password"]);
    assert!(!created.settings.contains_key("password"));
    assert_eq!(created.settings["port"], "587");
    assert_eq!(created.events, ["expiring", "failed"]);
    let row = app
        .store
        .find_notification_channel(&acme.id, "ops")
        .await?
        .context("the channel is stored")?;
    let sealed = row.secrets_sealed.context("the password is sealed")?;
    assert!(
        !sealed.windows(12).any(|w| w == b"hunter2-smtp"),
        "the password is sealed"
    );
    assert!(!row.settings.contains("hunter2-smtp"));

    // Refusals name the setting (and the value, unless it is a secret).
    for (request, field) in [
        (create("x", "pager", &[]), "kind"),
        (
            create("x", "webhook", &[("url", "gopher://h")]),
            "settings.url",
        ),
        (
            create("x", "webhook", &[("url", "https://h/x"), ("colour", "red")]),
            "settings.colour",
        ),
        (
            create("x", "email", &[("host", "h"), ("from", "a@b.c")]),
            "settings.to",
        ),
        (
            create("Bad Name", "webhook", &[("url", "https://h/x")]),
            "name",
        ),
    ] {
        let status = failure(
            channels
                .create_notification_channel(authed(request, &acme.write))
                .await,
        )?;
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    let status = failure(
        channels
            .create_notification_channel(authed(
                create("ops", "webhook", &[("url", "https://h/x")]),
                &acme.write,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::AlreadyExists);
    let status = failure(
        channels
            .create_notification_channel(authed(
                create("ro", "webhook", &[("url", "https://h/x")]),
                &acme.read,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);

    // Another organization sees nothing and cannot delete or test it.
    let listed = channels
        .list_notification_channels(authed(pb::ListNotificationChannelsRequest {}, &globex.read))
        .await?
        .into_inner();
    assert!(listed.channels.is_empty());
    for status in [
        failure(
            channels
                .delete_notification_channel(authed(
                    pb::DeleteNotificationChannelRequest {
                        id: created.id.clone(),
                    },
                    &globex.write,
                ))
                .await,
        )?,
        failure(
            channels
                .test_notification_channel(authed(
                    pb::TestNotificationChannelRequest {
                        id: created.id.clone(),
                    },
                    &globex.write,
                ))
                .await,
        )?,
    ] {
        assert_eq!(status.code(), Code::NotFound);
    }
    // A test that cannot reach the server says so, naming it.
    let status = failure(
        channels
            .test_notification_channel(authed(
                pb::TestNotificationChannelRequest {
                    id: "ops".to_owned(),
                },
                &acme.write,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("smtp.acme.example"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("hunter2"));

    channels
        .delete_notification_channel(authed(
            pb::DeleteNotificationChannelRequest {
                id: "ops".to_owned(),
            },
            &acme.write,
        ))
        .await?;
    let listed = channels
        .list_notification_channels(authed(pb::ListNotificationChannelsRequest {}, &acme.read))
        .await?
        .into_inner();
    assert!(listed.channels.is_empty());
    let audit = app.store.audit_entries(&acme.id, 50).await?;
    for action in [
        "notification_channel.created",
        "notification_channel.deleted",
    ] {
        assert!(audit.iter().any(|entry| entry.action == action), "{action}");
    }
    assert!(audit.iter().all(|entry| !entry.details.contains("hunter2")));
    Ok(())
}
