//! DNS-01 end to end: Pebble resolves through a real BIND (or PowerDNS), the
//! embedded certfleet (or the distributed roles) writes the challenge records
//! with its providers, and after every test the servers hold no
//! `_acme-challenge` records.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{
    Bind, BindZone, FakeCloudflare, Moto, Pebble, PebbleOptions, PowerDns, free_port,
};
use certfleet_e2e::{
    DevProcess, DnsProviders, RoleStack, TestEnv, bundle, dns_providers, is_valid, leaf_facts,
    organization, terminate_all, use_dns, verify_chain, wait_all_healthy, wait_for,
};
use certfleet_proto::v1 as pb;

/// Zones of the BIND tests: two zones for wildcard and two-zone
/// certificates, a zone whose challenge name is a CNAME into a delegated
/// zone, and a zone no key may change.
async fn bind() -> Bind {
    Bind::start_zones(vec![
        BindZone::new("wild.test"),
        BindZone::new("other.test"),
        BindZone::new("cname.test")
            .record("_acme-challenge.www.cname.test. 60 IN CNAME www-cname.acme.delegated.test."),
        BindZone::new("acme.delegated.test"),
        BindZone::new("locked.test").read_only(),
    ])
    .await
    .unwrap()
}

/// An embedded certfleet and a Pebble that both resolve through `dns`.
async fn env_resolving_through(dns: SocketAddr) -> TestEnv {
    TestEnv::start_with(pebble_on(dns), |config| use_dns(config, dns))
        .await
        .unwrap()
}

fn pebble_on(dns: SocketAddr) -> PebbleOptions {
    PebbleOptions {
        dns_server: Some(dns),
        ..PebbleOptions::default()
    }
}

/// An rfc2136 provider for `bind`, checking propagation on BIND itself (the
/// zones' NS records point at port 53, where nothing listens here).
fn rfc2136_settings(bind: &Bind, key: &str, secret: &str) -> HashMap<String, String> {
    HashMap::from([
        ("server".to_owned(), bind.addr().to_string()),
        ("tsig_key".to_owned(), key.to_owned()),
        ("tsig_secret".to_owned(), secret.to_owned()),
        ("nameservers".to_owned(), bind.addr().to_string()),
    ])
}

async fn add_provider(
    client: &mut DnsProviders,
    name: &str,
    kind: &str,
    settings: HashMap<String, String>,
) -> pb::DnsProvider {
    client
        .create_dns_provider(pb::CreateDnsProviderRequest {
            name: name.to_owned(),
            kind: kind.to_owned(),
            settings,
        })
        .await
        .unwrap()
        .into_inner()
}

fn dns01(names: &[&str], provider: &str) -> pb::CreateCertificateRequest {
    pb::CreateCertificateRequest {
        names: names.iter().map(|name| (*name).to_owned()).collect(),
        key_type: pb::KeyType::EcdsaP256 as i32,
        challenge_type: pb::ChallengeType::Dns01 as i32,
        auto_renew: Some(true),
        renew_before_expiry_seconds: 0,
        dns_provider: provider.to_owned(),
        profile: String::new(),
    }
}

async fn no_challenge_records(bind: &Bind) {
    let left = bind.acme_challenge_records().await.unwrap();
    assert!(left.is_empty(), "left in BIND: {left:?}\n{}", bind.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_two_zone_and_delegated_certificates_through_rfc2136() {
    let bind = bind().await;
    let env = env_resolving_through(bind.addr()).await;
    let (write, bundle_token) = organization(env.grpc, &env.admin_token, "dns").await;
    let mut providers = dns_providers(env.grpc, &write).await;
    let mut client = certfleet_e2e::certificates(env.grpc, &write).await;
    let mut bundles = certfleet_e2e::certificates(env.grpc, &bundle_token).await;
    let secret = bind.tsig_secret_base64().to_owned();
    add_provider(
        &mut providers,
        "bind",
        "rfc2136",
        rfc2136_settings(&bind, bind.tsig_key_name(), &secret),
    )
    .await;
    // A zone setting that is not a zone is refused, naming the setting.
    let mut misnamed = rfc2136_settings(&bind, bind.tsig_key_name(), &secret);
    misnamed.insert("zone".to_owned(), "www.wild.test".to_owned());
    let refused = providers
        .create_dns_provider(pb::CreateDnsProviderRequest {
            name: "misnamed".to_owned(),
            kind: "rfc2136".to_owned(),
            settings: misnamed,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "settings.zone: \"www.wild.test\" is not a DNS zone (the zone holding it is wild.test)"
    );
    // The provider test writes a probe, sees it on BIND, removes it.
    let probe = providers
        .test_dns_provider(pb::TestDnsProviderRequest {
            id: "bind".to_owned(),
            domain: "wild.test".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.record_name, "_acme-challenge.wild.test");
    assert_eq!(probe.zone, "wild.test");
    assert_eq!(probe.nameservers, [bind.addr().to_string()]);
    no_challenge_records(&bind).await;

    let root = env.pebble.root_pem().await.unwrap();
    for names in [
        vec!["*.wild.test", "wild.test"],
        vec!["a.wild.test", "b.other.test"],
        vec!["www.cname.test"],
    ] {
        let created = client
            .create_certificate(dns01(&names, "bind"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.challenge_type, pb::ChallengeType::Dns01 as i32);
        let done = wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
            .await
            .unwrap_or_else(|error| panic!("{names:?}: {error:#}\n{}", bind.logs()));
        let bundle = bundle(&mut bundles, &done.id).await.unwrap();
        verify_chain(&bundle, &root).unwrap();
        let mut issued = leaf_facts(&bundle.certificate_pem).names;
        issued.sort();
        let mut wanted: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        wanted.sort();
        assert_eq!(issued, wanted);
        no_challenge_records(&bind).await;
    }
    env.stop().await;
    no_challenge_records(&bind).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_update_fails_the_certificate_in_plain_words_and_leaves_nothing() {
    let bind = bind().await;
    let env = env_resolving_through(bind.addr()).await;
    let (write, _) = organization(env.grpc, &env.admin_token, "refused").await;
    let mut providers = dns_providers(env.grpc, &write).await;
    let mut client = certfleet_e2e::certificates(env.grpc, &write).await;
    let denied = bind.denied_secret_base64().to_owned();
    add_provider(
        &mut providers,
        "denied",
        "rfc2136",
        rfc2136_settings(&bind, bind.denied_key_name(), &denied),
    )
    .await;
    let created = client
        .create_certificate(dns01(&["*.wild.test", "wild.test"], "denied"))
        .await
        .unwrap()
        .into_inner();
    let failed = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(60),
        |certificate| !certificate.last_error.is_empty(),
    )
    .await
    .unwrap();
    assert!(
        failed.last_error.contains("refused"),
        "{}",
        failed.last_error
    );
    assert!(
        !failed.last_error.contains(&denied),
        "secret in the error: {}",
        failed.last_error
    );
    assert_eq!(failed.status, pb::CertificateStatus::Failed as i32);
    let store = env.embedded.as_ref().unwrap().store.clone();
    let challenges = store
        .list_challenges(&failed.organization_id, &failed.id)
        .await
        .unwrap();
    assert!(!challenges.is_empty());
    assert!(
        challenges
            .iter()
            .all(|challenge| challenge.status == "invalid"),
        "{challenges:?}"
    );
    env.stop().await;
    no_challenge_records(&bind).await;
}

fn settings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

/// Issues `names` through `provider` and waits until valid.
async fn issue(env: &TestEnv, token: &str, names: &[&str], provider: &str) -> pb::Certificate {
    let mut client = certfleet_e2e::certificates(env.grpc, token).await;
    let created = client
        .create_certificate(dns01(names, provider))
        .await
        .unwrap()
        .into_inner();
    wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
        .await
        .unwrap_or_else(|error| panic!("{names:?}: {error:#}"))
}

/// Every DNS-01 value the certificate's attempts wrote was written through
/// the provider (a record name is noted) and removed again.
async fn all_values_removed(env: &TestEnv, certificate: &pb::Certificate) {
    let store = env.embedded.as_ref().unwrap().store.clone();
    let challenges = store
        .list_challenges(&certificate.organization_id, &certificate.id)
        .await
        .unwrap();
    assert!(!challenges.is_empty());
    for challenge in challenges {
        assert_eq!(challenge.challenge_type, "dns-01");
        assert!(challenge.dns_record_name.is_some(), "{challenge:?}");
        assert!(challenge.dns_cleaned_at.is_some(), "{challenge:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_and_apex_through_the_powerdns_api() {
    let pdns = PowerDns::start(&["pdns.test"]).await.unwrap();
    let env = env_resolving_through(pdns.dns_addr()).await;
    let (write, bundle_token) = organization(env.grpc, &env.admin_token, "pdns").await;
    let mut providers = dns_providers(env.grpc, &write).await;
    let api_url = pdns.api_url();
    let server = pdns.dns_addr().to_string();
    add_provider(
        &mut providers,
        "powerdns",
        "pdns",
        settings(&[
            ("api_url", &api_url),
            ("api_key", pdns.api_key()),
            ("nameservers", &server),
        ]),
    )
    .await;
    let valid = issue(&env, &write, &["*.pdns.test", "pdns.test"], "powerdns").await;
    let mut bundles = certfleet_e2e::certificates(env.grpc, &bundle_token).await;
    let bundle = bundle(&mut bundles, &valid.id).await.unwrap();
    verify_chain(&bundle, &env.pebble.root_pem().await.unwrap()).unwrap();
    all_values_removed(&env, &valid).await;
    env.stop().await;
    let left = pdns.acme_challenge_records().await.unwrap();
    assert!(left.is_empty(), "left in PowerDNS: {left:?}");
}

/// A clean-up that fails after a successful issuance leaves the values in
/// the zone; the scheduler queues their removal 10 minutes later (on the
/// test's clock) and the issuer removes them. The provider is an operator's
/// program (`exec`) that writes to BIND with `nsupdate` and refuses clean-ups
/// while a flag file exists.
#[tokio::test(flavor = "multi_thread")]
async fn values_a_failed_clean_up_left_are_removed_later() {
    use std::os::unix::fs::PermissionsExt as _;

    let bind = bind().await;
    let scratch = tempfile::tempdir().unwrap();
    let flag = scratch.path().join("no-clean-up");
    let hook = scratch.path().join("dns-hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n\
             set -e\n\
             if [ \"$1\" = cleanup ] && [ -e {flag} ]; then echo 'clean-up is switched off' >&2; exit 1; fi\n\
             if [ \"$1\" = present ]; then op=\"add $2 60\"; else op=\"delete $2\"; fi\n\
             printf 'server {ip} {port}\\nzone %s\\nupdate %s TXT \"%s\"\\nsend\\n' \"$CERTFLEET_DNS_ZONE\" \"$op\" \"$3\" \\\n\
               | nsupdate -y hmac-sha256:{key}:{secret}\n",
            flag = flag.display(),
            ip = bind.addr().ip(),
            port = bind.addr().port(),
            key = bind.tsig_key_name(),
            secret = bind.tsig_secret_base64(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let allowed = hook.clone();
    let resolver = bind.addr();
    let env = TestEnv::start_with(pebble_on(resolver), move |config| {
        use_dns(config, resolver);
        config.dns.policy.exec_programs = vec![allowed];
    })
    .await
    .unwrap();
    let (write, _) = organization(env.grpc, &env.admin_token, "hook").await;
    let mut providers = dns_providers(env.grpc, &write).await;
    let program = hook.display().to_string();
    let server = resolver.to_string();
    add_provider(
        &mut providers,
        "hook",
        "exec",
        settings(&[("program", &program), ("nameservers", &server)]),
    )
    .await;

    std::fs::write(&flag, b"").unwrap();
    let name = "_acme-challenge.hook.wild.test";
    let valid = issue(
        &env,
        &write,
        &["*.hook.wild.test", "hook.wild.test"],
        "hook",
    )
    .await;
    assert_eq!(
        bind.txt_values(name).await.unwrap().len(),
        2,
        "the failed clean-up left both values"
    );

    std::fs::remove_file(&flag).unwrap();
    env.clock.advance(Duration::from_secs(11 * 60));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !bind.acme_challenge_records().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in BIND: {:?}",
            bind.acme_challenge_records().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    all_values_removed(&env, &valid).await;

    // The same for a certificate deleted before its values were removed.
    std::fs::write(&flag, b"").unwrap();
    let gone = issue(
        &env,
        &write,
        &["*.gone.wild.test", "gone.wild.test"],
        "hook",
    )
    .await;
    assert_eq!(
        bind.txt_values("_acme-challenge.gone.wild.test")
            .await
            .unwrap()
            .len(),
        2
    );
    certfleet_e2e::certificates(env.grpc, &write)
        .await
        .delete_certificate(pb::DeleteCertificateRequest {
            id: gone.id.clone(),
        })
        .await
        .unwrap();
    std::fs::remove_file(&flag).unwrap();
    env.clock.advance(Duration::from_secs(11 * 60));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !bind.acme_challenge_records().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in BIND: {:?}",
            bind.acme_challenge_records().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.stop().await;
}

/// Certificates whose challenges share a name (`x.pdns.test` and
/// `*.x.pdns.test`) issued at once through providers that do not share an
/// in-process lock (the same PowerDNS under two URLs, as two workers would
/// be): PowerDNS replaces whole record sets, so without the per-name write
/// lease in the database one writer would undo the other's value and the
/// propagation check would time out.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_of_one_name_through_powerdns_keep_every_value() {
    let pdns = PowerDns::start(&["pdns.test"]).await.unwrap();
    let env = TestEnv::start_with(pebble_on(pdns.dns_addr()), |config| {
        use_dns(config, pdns.dns_addr());
        config.dns.lookup.propagation_timeout = Duration::from_secs(10);
        config.dns.lookup.propagation_interval = Duration::from_millis(200);
    })
    .await
    .unwrap();
    let (write, _) = organization(env.grpc, &env.admin_token, "writers").await;
    let mut providers = dns_providers(env.grpc, &write).await;
    let server = pdns.dns_addr().to_string();
    for (name, url) in [
        ("first", pdns.api_url()),
        ("second", pdns.api_url().replace("127.0.0.1", "localhost")),
    ] {
        add_provider(
            &mut providers,
            name,
            "pdns",
            settings(&[
                ("api_url", &url),
                ("api_key", pdns.api_key()),
                ("nameservers", &server),
            ]),
        )
        .await;
    }
    let mut client = certfleet_e2e::certificates(env.grpc, &write).await;
    let mut ids = Vec::new();
    for index in 0..4 {
        let apex = format!("x{index}.pdns.test");
        let wildcard = format!("*.{apex}");
        for (names, provider) in [([apex.as_str()], "first"), ([wildcard.as_str()], "second")] {
            let created = client
                .create_certificate(dns01(&names, provider))
                .await
                .unwrap()
                .into_inner();
            ids.push(created.id);
        }
    }
    for id in &ids {
        wait_for(&mut client, id, Duration::from_secs(60), is_valid)
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
    }
    env.stop().await;
    let left = pdns.acme_challenge_records().await.unwrap();
    assert!(left.is_empty(), "left in PowerDNS: {left:?}");
}

/// Route 53 (moto) and Cloudflare (the fake) hold records no local DNS
/// server serves, so Pebble accepts every challenge here; the provider half
/// (write, wait for the provider, remove) runs for real. BIND with an
/// unrelated zone answers the CNAME and SOA lookups (NXDOMAIN: the providers
/// find their zones through their APIs).
#[tokio::test(flavor = "multi_thread")]
async fn wildcard_and_apex_through_route53_and_cloudflare() {
    let moto = Moto::start().await.unwrap();
    moto.create_hosted_zone("r53.test").await.unwrap();
    let cloudflare = FakeCloudflare::start().await.unwrap();
    cloudflare.add_zone("cf.test");
    let resolver = Bind::start(&["unrelated.test"]).await.unwrap();
    let options = PebbleOptions {
        va_always_valid: true,
        ..PebbleOptions::default()
    };
    let env = TestEnv::start_with(options, |config| use_dns(config, resolver.addr()))
        .await
        .unwrap();
    let (write, _) = organization(env.grpc, &env.admin_token, "clouds").await;
    let mut providers = dns_providers(env.grpc, &write).await;
    let endpoint = moto.endpoint_url();
    add_provider(
        &mut providers,
        "aws",
        "route53",
        settings(&[
            ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
            (
                "secret_access_key",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            ("endpoint_url", &endpoint),
            ("propagation_check", "false"),
        ]),
    )
    .await;
    let api_url = cloudflare.base_url();
    let token = cloudflare.token();
    add_provider(
        &mut providers,
        "cf",
        "cloudflare",
        settings(&[
            ("api_token", &token),
            ("api_url", &api_url),
            ("propagation_check", "false"),
        ]),
    )
    .await;
    let on_route53 = issue(&env, &write, &["*.r53.test", "r53.test"], "aws").await;
    all_values_removed(&env, &on_route53).await;
    let on_cloudflare = issue(&env, &write, &["*.cf.test", "cf.test"], "cf").await;
    all_values_removed(&env, &on_cloudflare).await;
    env.stop().await;
    let left = moto.all_acme_challenge_records().await.unwrap();
    assert!(left.is_empty(), "left in Route 53: {left:?}");
    let left = cloudflare.all_acme_challenge_records();
    assert!(left.is_empty(), "left in Cloudflare: {left:?}");
}

/// A worker killed while it waits for propagation leaves its values in the
/// zone; the next attempt on the certificate removes them first, and when
/// the values never reach the (unreachable) name server the attempt fails
/// after the propagation timeout, names the server, and removes them again.
#[tokio::test(flavor = "multi_thread")]
async fn values_a_killed_worker_left_are_removed_by_the_next_attempt() {
    let bind = bind().await;
    let pebble = Pebble::start(pebble_on(bind.addr())).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let resolver = ("CERTFLEET_DNS_RESOLVER", bind.addr().to_string());
    let spawn = |timeout: &'static str, log: &'static str| {
        let env = [
            resolver.clone(),
            ("CERTFLEET_DNS_PROPAGATION_TIMEOUT", timeout.to_owned()),
        ];
        let (pebble, data_dir) = (&pebble, data_dir.clone());
        async move {
            let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
            DevProcess::spawn_with_env(pebble, &data_dir, grpc, nowhere, log, &env)
                .await
                .unwrap()
        }
    };
    let mut first = spawn("600", "first.log").await;
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let (write, _) = organization(first.grpc, &admin, "killed").await;
    let mut providers = dns_providers(first.grpc, &write).await;
    let secret = bind.tsig_secret_base64().to_owned();
    let mut provider = rfc2136_settings(&bind, bind.tsig_key_name(), &secret);
    // Propagation is checked on a server that never answers.
    provider.insert("nameservers".to_owned(), nowhere.to_string());
    add_provider(&mut providers, "bind", "rfc2136", provider).await;
    let mut client = certfleet_e2e::certificates(first.grpc, &write).await;
    let created = client
        .create_certificate(dns01(&["*.killed.wild.test", "killed.wild.test"], "bind"))
        .await
        .unwrap()
        .into_inner();
    let name = "_acme-challenge.killed.wild.test";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while bind.txt_values(name).await.unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "values not written: {}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();
    assert_eq!(
        bind.txt_values(name).await.unwrap().len(),
        2,
        "left by the killed worker"
    );

    let second = spawn("1", "second.log").await;
    let mut client = certfleet_e2e::certificates(second.grpc, &write).await;
    let failed = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(60),
        |certificate| certificate.last_error.contains("authoritative name server"),
    )
    .await
    .unwrap_or_else(|error| panic!("{error:#}\n{}", second.log()));
    assert!(
        failed.last_error.contains(&nowhere.to_string()),
        "{}",
        failed.last_error
    );
    assert!(
        second.log().contains("dns-01 value removed"),
        "{}",
        second.log()
    );
    no_challenge_records(&bind).await;
}

/// The distributed mode: an api and an issuer as separate processes on
/// PostgreSQL and RabbitMQ, the DNS settings from the environment. The api
/// checks and seals the provider, the issuer opens it and writes to BIND.
#[tokio::test(flavor = "multi_thread")]
async fn wildcard_and_apex_in_the_distributed_mode() {
    let bind = bind().await;
    let pebble = Pebble::start(pebble_on(bind.addr())).await.unwrap();
    let mut stack = RoleStack::create(&pebble).await.unwrap();
    stack
        .env
        .push(("CERTFLEET_DNS_RESOLVER".to_owned(), bind.addr().to_string()));
    let (api, grpc) = stack.spawn_api().unwrap();
    let mut processes = vec![
        api,
        stack
            .spawn("certfleet-issuer", "issuer", Vec::new())
            .unwrap(),
    ];
    wait_all_healthy(&mut processes).await.unwrap();
    let (write, _) = organization(grpc, &stack.admin_token, "distributed").await;
    let mut providers = dns_providers(grpc, &write).await;
    let secret = bind.tsig_secret_base64().to_owned();
    add_provider(
        &mut providers,
        "bind",
        "rfc2136",
        rfc2136_settings(&bind, bind.tsig_key_name(), &secret),
    )
    .await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    let created = client
        .create_certificate(dns01(&["*.spread.wild.test", "spread.wild.test"], "bind"))
        .await
        .unwrap()
        .into_inner();
    wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
        .await
        .unwrap_or_else(|error| panic!("{error:#}\n{}", certfleet_e2e::all_logs(&processes)));
    no_challenge_records(&bind).await;
    terminate_all(&mut processes).unwrap();
    stack.remove().await.unwrap();
}

/// The operator's path, with the `certfleet` binary only: `certfleet dev`
/// (DNS settings from the environment), `certfleet dns add` with the TSIG
/// secret from a file, `certfleet dns test`, and
/// `certfleet cert request '*.NAME' NAME --challenge dns-01 --dns bind --wait`.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_issues_a_wildcard_and_apex_certificate() {
    let bind = bind().await;
    let pebble = Pebble::start(pebble_on(bind.addr())).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let env = [("CERTFLEET_DNS_RESOLVER", bind.addr().to_string())];
    let process = DevProcess::spawn_with_env(&pebble, &data_dir, grpc, nowhere, "cli.log", &env)
        .await
        .unwrap();
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let (write, _) = organization(grpc, &admin, "cli").await;
    let secret_file = root.path().join("tsig.secret");
    std::fs::write(&secret_file, format!("{}\n", bind.tsig_secret_base64())).unwrap();
    let cli = |arguments: &[String]| {
        let output = std::process::Command::new(certfleet_e2e::certfleet_binary())
            .args(arguments)
            .env("CERTFLEET_ENDPOINT", format!("http://{grpc}"))
            .env("CERTFLEET_TOKEN", &write)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "certfleet {arguments:?}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            process.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let args = |text: &str| -> Vec<String> { text.split(' ').map(str::to_owned).collect() };
    cli(&args(&format!(
        "dns add bind --kind rfc2136 --set server={addr} --set tsig_key={key} \
         --set-file tsig_secret={file} --set nameservers={addr}",
        addr = bind.addr(),
        key = bind.tsig_key_name(),
        file = secret_file.display(),
    ))
    .into_iter()
    .filter(|word| !word.is_empty())
    .collect::<Vec<_>>());
    let tested = cli(&args("dns test bind --domain cli.wild.test"));
    assert!(tested.contains("_acme-challenge.cli.wild.test"), "{tested}");
    let issued = cli(&args(
        "cert request *.cli.wild.test cli.wild.test --challenge dns-01 --dns bind --wait --output json",
    ));
    let certificate: serde_json::Value = serde_json::from_str(
        issued
            .lines()
            .find(|line| line.starts_with('{'))
            .unwrap_or(&issued),
    )
    .unwrap_or_else(|error| panic!("{error}: {issued}"));
    assert_eq!(certificate["status"], "valid", "{issued}");
    assert!(!process.log().contains(bind.tsig_secret_base64()));
    no_challenge_records(&bind).await;
}
