//! The rfc2136 provider against a real BIND: values at one name coexist, both
//! calls are idempotent, a refusal is final and writes nothing. Every test
//! ends with no `_acme-challenge` record left on the server.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use certfleet_dns::{
    DnsError, DnsPolicy, DnsProvider, ProviderConfig, ProviderKind, TxtRecord, providers,
};
use certfleet_testkit::{Bind, BindZone};

const ZONE: &str = "example.test";
const NAME: &str = "_acme-challenge.example.test";

fn provider_with(pairs: &[(&str, &str)]) -> anyhow::Result<Arc<dyn DnsProvider>> {
    let values: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let policy = DnsPolicy::default();
    let config = ProviderConfig::parse(ProviderKind::Rfc2136, values, &policy)?;
    Ok(providers::build(&config, &policy)?)
}

/// The provider with the update key, `zone` set to example.test.
fn provider(bind: &Bind) -> anyhow::Result<Arc<dyn DnsProvider>> {
    let server = bind.addr().to_string();
    provider_with(&[
        ("server", &server),
        ("tsig_key", bind.tsig_key_name()),
        ("tsig_secret", bind.tsig_secret_base64()),
        ("zone", ZONE),
    ])
}

fn record(fqdn: &str, value: &str) -> TxtRecord {
    TxtRecord {
        fqdn: fqdn.to_owned(),
        zone: None,
        value: value.to_owned(),
    }
}

async fn assert_nothing_left(bind: &Bind) -> anyhow::Result<()> {
    let left = bind.acme_challenge_records().await?;
    assert!(left.is_empty(), "records left behind: {left:?}");
    Ok(())
}

fn assert_refused(error: &DnsError, words: &str) {
    assert!(
        matches!(error, DnsError::Refused { .. }),
        "not refused: {error:?}"
    );
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains(words), "{error} lacks {words:?}");
}

#[tokio::test]
async fn values_coexist_and_both_calls_are_idempotent() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE]).await?;
    let dns = provider(&bind)?;
    let (apex, wildcard) = (record(NAME, "apex-value"), record(NAME, "wildcard-value"));

    dns.present(&apex).await.context("present apex")?;
    dns.present(&wildcard).await.context("present wildcard")?;
    assert_eq!(
        bind.txt_values(NAME).await?,
        ["apex-value", "wildcard-value"]
    );

    dns.present(&apex).await.context("present apex again")?;
    assert_eq!(
        bind.txt_values(NAME).await?,
        ["apex-value", "wildcard-value"]
    );

    dns.cleanup(&apex).await.context("cleanup apex")?;
    assert_eq!(bind.txt_values(NAME).await?, ["wildcard-value"]);
    dns.cleanup(&apex).await.context("cleanup apex again")?;
    assert_eq!(bind.txt_values(NAME).await?, ["wildcard-value"]);

    dns.cleanup(&wildcard).await.context("cleanup wildcard")?;
    assert!(bind.txt_values(NAME).await?.is_empty());
    dns.cleanup(&record("_acme-challenge.never.example.test", "x"))
        .await
        .context("cleanup at a name never written")?;
    assert_nothing_left(&bind).await
}

#[tokio::test]
async fn the_record_zone_wins_over_the_setting() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE, "delegated.test"]).await?;
    let dns = provider(&bind)?;
    let name = "_acme-challenge.x.delegated.test";
    let mut target = record(name, "delegated-value");
    target.zone = Some("delegated.test".to_owned());

    dns.present(&target).await.context("present")?;
    assert_eq!(bind.txt_values(name).await?, ["delegated-value"]);
    dns.cleanup(&target).await.context("cleanup")?;
    assert!(bind.txt_values(name).await?.is_empty());
    assert_nothing_left(&bind).await
}

#[tokio::test]
async fn concurrent_presents_at_one_name_are_all_kept() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE]).await?;
    let values: Vec<String> = (0..6).map(|index| format!("value-{index}")).collect();
    let mut tasks = Vec::new();
    for value in &values {
        // One provider each, as separate issuances would have.
        let dns = provider(&bind)?;
        let wanted = record(NAME, value);
        tasks.push(tokio::spawn(async move { dns.present(&wanted).await }));
    }
    for task in tasks {
        task.await?.context("present")?;
    }
    assert_eq!(bind.txt_values(NAME).await?, values);

    let dns = provider(&bind)?;
    for value in &values {
        dns.cleanup(&record(NAME, value)).await.context("cleanup")?;
    }
    assert_nothing_left(&bind).await
}

#[tokio::test]
async fn a_key_without_update_rights_is_refused_and_writes_nothing() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE]).await?;
    let server = bind.addr().to_string();
    let denied = provider_with(&[
        ("server", &server),
        ("tsig_key", bind.denied_key_name()),
        ("tsig_secret", bind.denied_secret_base64()),
        ("zone", ZONE),
    ])?;
    let error = denied
        .present(&record(NAME, "v"))
        .await
        .expect_err("refused");
    assert_refused(&error, "REFUSED");
    assert_nothing_left(&bind).await
}

#[tokio::test]
async fn a_zone_without_updates_is_refused() -> anyhow::Result<()> {
    let bind = Bind::start_zones(vec![BindZone::new(ZONE).read_only()]).await?;
    let error = provider(&bind)?
        .present(&record(NAME, "v"))
        .await
        .expect_err("refused");
    assert_refused(&error, "REFUSED");
    assert_nothing_left(&bind).await
}

#[tokio::test]
async fn a_wrong_secret_is_refused_in_plain_words() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE]).await?;
    let server = bind.addr().to_string();
    let wrong_secret = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=";
    let dns = provider_with(&[
        ("server", &server),
        ("tsig_key", bind.tsig_key_name()),
        ("tsig_secret", wrong_secret),
        ("zone", ZONE),
    ])?;
    let error = dns.present(&record(NAME, "v")).await.expect_err("refused");
    assert_refused(&error, "TSIG key or secret");
    assert!(!error.to_string().contains(wrong_secret), "{error}");

    let unknown_key = provider_with(&[
        ("server", &server),
        ("tsig_key", "no-such-key"),
        ("tsig_secret", bind.tsig_secret_base64()),
        ("zone", ZONE),
    ])?;
    let error = unknown_key
        .present(&record(NAME, "v"))
        .await
        .expect_err("refused");
    assert_refused(&error, "TSIG key or secret");
    assert_nothing_left(&bind).await
}

#[tokio::test]
async fn a_name_outside_the_zone_is_refused_before_sending() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE]).await?;
    let error = provider(&bind)?
        .present(&record("_acme-challenge.example.org", "v"))
        .await
        .expect_err("outside the zone");
    assert!(matches!(error, DnsError::NoZone { .. }), "{error:?}");
    assert_nothing_left(&bind).await
}

#[tokio::test]
async fn no_server_is_unavailable() -> anyhow::Result<()> {
    // Nothing listens here: the port was free a moment ago.
    let server = format!("127.0.0.1:{}", certfleet_testkit::free_port());
    let dns = provider_with(&[("server", &server), ("zone", ZONE)])?;
    let error = dns
        .present(&record(NAME, "v"))
        .await
        .expect_err("no server");
    assert!(matches!(error, DnsError::Unavailable { .. }), "{error:?}");
    assert!(error.is_transient());
    Ok(())
}
