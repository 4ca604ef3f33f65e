//! DnsProviderService: settings checked at creation, secrets sealed and never
//! returned, tenant isolation, roles, deletion while in use, certificates
//! that name a provider, and TestDnsProvider against an exec program and a
//! stub resolver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use certfleet_dns::{DnsPolicy, DnsSettings, LookupConfig};
use certfleet_proto::v1 as pb;
use certfleet_vault::EncryptionContext;
use tonic::Code;

use crate::support::{TestApp, authed, failure};

const HMAC_SECRET: &str = "hmac-secret-never-shown-0123456789";

fn settings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn webhook(name: &str) -> pb::CreateDnsProviderRequest {
    pb::CreateDnsProviderRequest {
        name: name.to_owned(),
        kind: "webhook".to_owned(),
        settings: settings(&[
            ("url", "https://dns-hook.example.com/acme"),
            ("hmac_secret", HMAC_SECRET),
        ]),
    }
}

async fn create(
    app: &TestApp,
    token: &str,
    request: pb::CreateDnsProviderRequest,
) -> Result<pb::DnsProvider, tonic::Status> {
    let mut client = app
        .dns_providers()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    Ok(client
        .create_dns_provider(authed(request, token))
        .await?
        .into_inner())
}

fn dns01(names: &[&str], provider: &str) -> pb::CreateCertificateRequest {
    pb::CreateCertificateRequest {
        names: names.iter().map(|name| (*name).to_owned()).collect(),
        challenge_type: pb::ChallengeType::Dns01.into(),
        dns_provider: provider.to_owned(),
        profile: String::new(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_sealed_and_never_returned() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut client = app.dns_providers().await?;

    let created = create(&app, &org.write, webhook("hook")).await?;
    assert_eq!(created.name, "hook");
    assert_eq!(created.kind, "webhook");
    assert_eq!(created.organization_id, org.id);
    assert_eq!(
        created.settings,
        settings(&[("url", "https://dns-hook.example.com/acme")])
    );
    assert_eq!(created.secret_settings, vec!["hmac_secret".to_owned()]);
    assert!(created.created_at > 0);

    let by_name = client
        .get_dns_provider(authed(
            pb::GetDnsProviderRequest {
                id: "hook".to_owned(),
            },
            &org.read,
        ))
        .await?
        .into_inner();
    let by_id = client
        .get_dns_provider(authed(
            pb::GetDnsProviderRequest {
                id: created.id.clone(),
            },
            &org.read,
        ))
        .await?
        .into_inner();
    assert_eq!(by_name, created);
    assert_eq!(by_id, created);
    let listed = client
        .list_dns_providers(authed(pb::ListDnsProvidersRequest {}, &org.read))
        .await?
        .into_inner();
    assert_eq!(listed.providers, vec![created.clone()]);
    for shown in [
        format!("{created:?}"),
        format!("{by_name:?}"),
        format!("{listed:?}"),
    ] {
        assert!(!shown.contains(HMAC_SECRET), "{shown}");
    }

    let audit = app.store.audit_entries(&org.id, 50).await?;
    let entry = audit
        .iter()
        .find(|entry| entry.action == "dns_provider.created")
        .context("no dns_provider.created audit entry")?;
    assert_eq!(entry.target_id.as_deref(), Some(created.id.as_str()));
    assert!(entry.details.contains("hook"), "{}", entry.details);
    assert!(entry.details.contains("webhook"), "{}", entry.details);
    assert!(
        audit
            .iter()
            .all(|entry| !entry.details.contains(HMAC_SECRET))
    );

    // At rest: the plain settings hold no secret, the sealed blob is not the
    // plaintext, and it opens only under this provider's context.
    let row = app
        .store
        .find_dns_provider(&org.id, "hook")
        .await?
        .context("the provider row")?;
    assert!(!row.settings.contains(HMAC_SECRET), "{}", row.settings);
    let sealed = row.secrets_sealed.context("sealed secrets")?;
    assert!(
        !sealed
            .windows(HMAC_SECRET.len())
            .any(|window| window == HMAC_SECRET.as_bytes()),
        "the sealed secrets contain the plaintext"
    );
    let opened = app
        .vault
        .open(&EncryptionContext::dns_provider(&org.id, &row.id), &sealed)
        .await?;
    let secrets: HashMap<String, String> = serde_json::from_slice(&opened)?;
    assert_eq!(secrets, settings(&[("hmac_secret", HMAC_SECRET)]));
    assert!(
        app.vault
            .open(
                &EncryptionContext::dns_provider(&org.id, "another"),
                &sealed
            )
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_names_the_field() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let request = |name: &str, kind: &str, pairs: &[(&str, &str)]| pb::CreateDnsProviderRequest {
        name: name.to_owned(),
        kind: kind.to_owned(),
        settings: settings(pairs),
    };
    let url = ("url", "https://dns-hook.example.com/acme");
    let secret = ("hmac_secret", HMAC_SECRET);
    let short_secret = "short-s3cret";
    let cases = [
        (request("Hook", "webhook", &[url, secret]), "name: \"Hook\""),
        (
            request("hook", "bogus", &[url, secret]),
            "kind: \"bogus\" is not a DNS provider kind",
        ),
        (
            request("hook", "webhook", &[secret]),
            "settings.url: is required",
        ),
        (
            request("hook", "webhook", &[url, secret, ("colour", "blue")]),
            "settings.colour: is not a setting of the webhook provider",
        ),
        (
            request("hook", "webhook", &[url, ("hmac_secret", short_secret)]),
            "settings.hmac_secret: ",
        ),
        (
            request(
                "bind",
                "rfc2136",
                &[
                    ("server", "192.0.2.53"),
                    ("tsig_key", "certfleet"),
                    ("tsig_secret", "not base64!"),
                ],
            ),
            "settings.tsig_secret: ",
        ),
        (
            request("script", "exec", &[("program", "/usr/local/bin/dns-hook")]),
            "settings.program: \"/usr/local/bin/dns-hook\" is not among the programs",
        ),
    ];
    for (request, expected) in cases {
        let status = failure(
            app.dns_providers()
                .await?
                .create_dns_provider(authed(request, &org.write))
                .await,
        )?;
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}");
        assert!(
            status.message().starts_with(expected),
            "{expected}: {}",
            status.message()
        );
        // Secret values are never echoed back, not even when refused.
        for secret in [short_secret, "not base64!"] {
            assert!(!status.message().contains(secret), "{}", status.message());
        }
    }
    let listed = app
        .dns_providers()
        .await?
        .list_dns_providers(authed(pb::ListDnsProvidersRequest {}, &org.read))
        .await?
        .into_inner();
    assert!(listed.providers.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_unique_within_an_organization() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    let other = app.organization("other").await?;
    create(&app, &acme.write, webhook("hook")).await?;
    let status = failure(
        create(&app, &acme.write, webhook("hook"))
            .await
            .map(tonic::Response::new),
    )?;
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(
        status.message().contains("\"hook\""),
        "{}",
        status.message()
    );
    // Another organization may use the same name.
    create(&app, &other.write, webhook("hook")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn another_organizations_provider_looks_missing() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let acme = app.organization("acme").await?;
    let other = app.organization("other").await?;
    let provider = create(&app, &acme.write, webhook("hook")).await?;
    let mut client = app.dns_providers().await?;
    for id in ["hook", provider.id.as_str()] {
        let get = failure(
            client
                .get_dns_provider(authed(
                    pb::GetDnsProviderRequest { id: id.to_owned() },
                    &other.read,
                ))
                .await,
        )?;
        let delete = failure(
            client
                .delete_dns_provider(authed(
                    pb::DeleteDnsProviderRequest { id: id.to_owned() },
                    &other.write,
                ))
                .await,
        )?;
        let test = failure(
            client
                .test_dns_provider(authed(
                    pb::TestDnsProviderRequest {
                        id: id.to_owned(),
                        domain: "example.com".to_owned(),
                    },
                    &other.write,
                ))
                .await,
        )?;
        for status in [get, delete, test] {
            assert_eq!(status.code(), Code::NotFound, "{id}: {status:?}");
        }
    }
    let listed = client
        .list_dns_providers(authed(pb::ListDnsProvidersRequest {}, &other.read))
        .await?
        .into_inner();
    assert!(listed.providers.is_empty());
    // Nor can a certificate of the other organization name it.
    let status = failure(
        app.certificates()
            .await?
            .create_certificate(authed(
                dns01(&["*.other.example.com"], "hook"),
                &other.write,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::InvalidArgument);
    // Still there for its owner.
    client
        .get_dns_provider(authed(
            pb::GetDnsProviderRequest {
                id: "hook".to_owned(),
            },
            &acme.read,
        ))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_limit_what_a_token_may_do() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut client = app.dns_providers().await?;
    for token in [&org.read, &org.bundle] {
        let status = failure(
            client
                .create_dns_provider(authed(webhook("hook"), token))
                .await,
        )?;
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    create(&app, &org.write, webhook("hook")).await?;
    let status = failure(
        client
            .delete_dns_provider(authed(
                pb::DeleteDnsProviderRequest {
                    id: "hook".to_owned(),
                },
                &org.read,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = failure(
        client
            .test_dns_provider(authed(
                pb::TestDnsProviderRequest {
                    id: "hook".to_owned(),
                    domain: "example.com".to_owned(),
                },
                &org.read,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    // The platform admin token belongs to no organization.
    let status = failure(
        client
            .list_dns_providers(authed(pb::ListDnsProvidersRequest {}, &app.admin_token))
            .await,
    )?;
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "DNS provider calls need an organization token"
    );
    let status = failure(
        client
            .list_dns_providers(pb::ListDnsProvidersRequest {})
            .await,
    )?;
    assert_eq!(status.code(), Code::Unauthenticated);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_name_a_provider_for_dns01() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut certificates = app.certificates().await?;
    let provider = create(&app, &org.write, webhook("hook")).await?;

    let cases = [
        (
            dns01(&["*.example.com"], ""),
            "dns_provider: is required with challenge_type dns-01",
        ),
        (
            dns01(&["*.example.com"], "nope"),
            "dns_provider: \"nope\" is not a DNS provider of this organization",
        ),
        (
            pb::CreateCertificateRequest {
                challenge_type: pb::ChallengeType::Http01.into(),
                ..dns01(&["www.example.com"], "hook")
            },
            "dns_provider: \"hook\" is only used with challenge_type dns-01",
        ),
    ];
    for (request, expected) in cases {
        let status = failure(
            certificates
                .create_certificate(authed(request, &org.write))
                .await,
        )?;
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}");
        assert!(
            status.message().starts_with(expected),
            "{expected}: {}",
            status.message()
        );
    }

    let by_name = certificates
        .create_certificate(authed(
            dns01(&["*.example.com", "example.com"], "hook"),
            &org.write,
        ))
        .await?
        .into_inner();
    assert_eq!(by_name.dns_provider_id, provider.id);
    assert_eq!(by_name.challenge_type(), pb::ChallengeType::Dns01);
    assert_eq!(by_name.names, vec!["*.example.com", "example.com"]);
    let job = app.next_job_for(&by_name.id).await?;
    assert_eq!(job.certificate_id, by_name.id);
    let by_id = certificates
        .create_certificate(authed(
            dns01(&["api.example.com"], &provider.id),
            &org.write,
        ))
        .await?
        .into_inner();
    assert_eq!(by_id.dns_provider_id, provider.id);
    let fetched = certificates
        .get_certificate(authed(
            pb::GetCertificateRequest {
                id: by_name.id.clone(),
                ..Default::default()
            },
            &org.read,
        ))
        .await?
        .into_inner();
    assert_eq!(fetched.dns_provider_id, provider.id);
    // HTTP-01 certificates have none.
    let http = app
        .create_certificate(&org.write, &["plain.example.com"])
        .await?;
    assert_eq!(http.dns_provider_id, "");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_in_use_cannot_be_deleted() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut certificates = app.certificates().await?;
    let mut client = app.dns_providers().await?;
    let provider = create(&app, &org.write, webhook("hook")).await?;
    let certificate = certificates
        .create_certificate(authed(dns01(&["*.example.com"], "hook"), &org.write))
        .await?
        .into_inner();
    let delete = |id: &str| {
        authed(
            pb::DeleteDnsProviderRequest { id: id.to_owned() },
            &org.write,
        )
    };

    let status = failure(client.delete_dns_provider(delete("hook")).await)?;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("1 active certificate"),
        "{}",
        status.message()
    );

    certificates
        .delete_certificate(authed(
            pb::DeleteCertificateRequest {
                id: certificate.id.clone(),
            },
            &org.write,
        ))
        .await?;
    client.delete_dns_provider(delete(&provider.id)).await?;
    let status = failure(
        client
            .get_dns_provider(authed(
                pb::GetDnsProviderRequest {
                    id: "hook".to_owned(),
                },
                &org.read,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::NotFound);
    let status = failure(client.delete_dns_provider(delete("hook")).await)?;
    assert_eq!(status.code(), Code::NotFound);
    let audit = app.store.audit_entries(&org.id, 50).await?;
    let deleted = audit
        .iter()
        .find(|entry| entry.action == "dns_provider.deleted")
        .context("no dns_provider.deleted audit entry")?;
    assert_eq!(deleted.target_id.as_deref(), Some(provider.id.as_str()));
    // The name is free again.
    create(&app, &org.write, webhook("hook")).await?;
    Ok(())
}

/// A UDP DNS server on loopback that answers every query NXDOMAIN (or, when
/// `silent`, never answers).
async fn stub_resolver(silent: bool) -> anyhow::Result<SocketAddr> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let address = socket.local_addr()?;
    tokio::spawn(async move {
        let mut buffer = [0_u8; 1500];
        while let Ok((length, peer)) = socket.recv_from(&mut buffer).await {
            if silent {
                continue;
            }
            if let Some(answer) = nxdomain(&buffer[..length]) {
                let _ = socket.send_to(&answer, peer).await;
            }
        }
    });
    Ok(address)
}

/// The NXDOMAIN answer to `query`: its id and question, no records.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    loop {
        let length = usize::from(*query.get(end)?);
        end += 1 + length;
        if length == 0 {
            break;
        }
    }
    end += 4;
    let question = query.get(12..end)?;
    let mut answer = Vec::with_capacity(end);
    answer.extend_from_slice(query.get(0..2)?);
    // QR, the query's opcode and RD; RA; RCODE 3 (NXDOMAIN).
    answer.push(0x80 | (query.get(2)? & 0x79));
    answer.push(0x80 | 3);
    answer.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    answer.extend_from_slice(question);
    Some(answer)
}

/// A hook script that logs its arguments to `log`, or fails with a message.
fn hook_script(directory: &Path, fail: bool) -> anyhow::Result<PathBuf> {
    let log = directory.join("calls.log");
    let path = directory.join(if fail { "failing-hook" } else { "hook" });
    let body = if fail {
        "#!/bin/sh\necho 'zone example.com is locked' >&2\nexit 1\n".to_owned()
    } else {
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display())
    };
    std::fs::write(&path, body)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

fn dns_settings(resolver: SocketAddr, programs: Vec<PathBuf>) -> DnsSettings {
    let mut lookup = LookupConfig::new(resolver);
    lookup.query_timeout = Duration::from_secs(1);
    lookup.propagation_timeout = Duration::from_secs(5);
    lookup.propagation_interval = Duration::from_millis(200);
    DnsSettings {
        policy: DnsPolicy {
            exec_programs: programs,
        },
        lookup,
    }
}

fn exec_provider(name: &str, program: &Path) -> pb::CreateDnsProviderRequest {
    pb::CreateDnsProviderRequest {
        name: name.to_owned(),
        kind: "exec".to_owned(),
        settings: settings(&[
            ("program", &program.display().to_string()),
            ("zone", "example.com"),
            ("propagation_check", "false"),
        ]),
    }
}

fn test_request(id: &str, domain: &str) -> pb::TestDnsProviderRequest {
    pb::TestDnsProviderRequest {
        id: id.to_owned(),
        domain: domain.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_writes_and_removes_a_probe_record() -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    let hook = hook_script(directory.path(), false)?;
    let failing = hook_script(directory.path(), true)?;
    let resolver = stub_resolver(false).await?;
    let app = TestApp::spawn_with_dns(dns_settings(resolver, vec![hook.clone(), failing.clone()]))
        .await?;
    let org = app.organization("acme").await?;
    create(&app, &org.write, exec_provider("script", &hook)).await?;
    create(&app, &org.write, exec_provider("locked", &failing)).await?;
    let mut client = app.dns_providers().await?;

    let status = failure(
        client
            .test_dns_provider(authed(test_request("script", "exa mple.com"), &org.write))
            .await,
    )?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("domain: \"exa mple.com\""),
        "{}",
        status.message()
    );

    let report = client
        .test_dns_provider(authed(
            test_request("script", "www.example.com"),
            &org.write,
        ))
        .await?
        .into_inner();
    assert_eq!(report.record_name, "_acme-challenge.www.example.com");
    assert_eq!(report.zone, "example.com");
    assert!(report.nameservers.is_empty(), "propagation_check is off");
    let calls = std::fs::read_to_string(directory.path().join("calls.log"))?;
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert!(
        lines[0].starts_with("present _acme-challenge.www.example.com. certfleet-probe-"),
        "{calls}"
    );
    let value = lines[0].rsplit(' ').next().unwrap_or_default();
    assert_eq!(
        lines[1],
        format!("cleanup _acme-challenge.www.example.com. {value}")
    );

    // A provider that refuses is FAILED_PRECONDITION, in its own words.
    let status = failure(
        client
            .test_dns_provider(authed(test_request("locked", "example.com"), &org.write))
            .await,
    )?;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("zone example.com is locked"),
        "{}",
        status.message()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn test_is_unavailable_when_the_resolver_does_not_answer() -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    let hook = hook_script(directory.path(), false)?;
    let resolver = stub_resolver(true).await?;
    let app = TestApp::spawn_with_dns(dns_settings(resolver, vec![hook.clone()])).await?;
    let org = app.organization("acme").await?;
    create(&app, &org.write, exec_provider("script", &hook)).await?;
    let status = failure(
        app.dns_providers()
            .await?
            .test_dns_provider(authed(test_request("script", "example.com"), &org.write))
            .await,
    )?;
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains(&resolver.to_string()),
        "{}",
        status.message()
    );
    // Nothing was written.
    assert!(!directory.path().join("calls.log").exists());
    Ok(())
}
