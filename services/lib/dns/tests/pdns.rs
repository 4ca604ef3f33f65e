//! The pdns provider against a real PowerDNS: values at one name coexist
//! although the API replaces whole RRsets, both calls are idempotent, the zone
//! is found on the server, a refusal is final and writes nothing. Every test
//! ends with no `_acme-challenge` record left on the server.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use certfleet_dns::{
    DnsError, DnsPolicy, DnsProvider, ProviderConfig, ProviderKind, TxtRecord, providers,
};
use certfleet_testkit::PowerDns;

const ZONE: &str = "example.test";
const NAME: &str = "_acme-challenge.example.test";

fn provider_with(pairs: &[(&str, &str)]) -> anyhow::Result<Arc<dyn DnsProvider>> {
    let values: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let policy = DnsPolicy::default();
    let config = ProviderConfig::parse(ProviderKind::Pdns, values, &policy)?;
    Ok(providers::build(&config, &policy)?)
}

/// The provider with the right key and no zone setting (it finds the zone).
fn provider(pdns: &PowerDns) -> anyhow::Result<Arc<dyn DnsProvider>> {
    provider_with(&[("api_url", &pdns.api_url()), ("api_key", pdns.api_key())])
}

fn record(fqdn: &str, value: &str) -> TxtRecord {
    TxtRecord {
        fqdn: fqdn.to_owned(),
        zone: None,
        value: value.to_owned(),
    }
}

async fn assert_nothing_left(pdns: &PowerDns) -> anyhow::Result<()> {
    let left = pdns.acme_challenge_records().await?;
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
    let pdns = PowerDns::start(&[ZONE]).await?;
    let dns = provider(&pdns)?;
    let (apex, wildcard) = (record(NAME, "apex-value"), record(NAME, "wildcard-value"));

    dns.present(&apex).await.context("present apex")?;
    dns.present(&wildcard).await.context("present wildcard")?;
    assert_eq!(
        pdns.txt_values(NAME).await?,
        ["apex-value", "wildcard-value"]
    );

    dns.present(&apex).await.context("present apex again")?;
    assert_eq!(
        pdns.txt_values(NAME).await?,
        ["apex-value", "wildcard-value"]
    );
    assert_eq!(pdns.acme_challenge_records().await?.len(), 2);

    dns.cleanup(&apex).await.context("cleanup apex")?;
    assert_eq!(pdns.txt_values(NAME).await?, ["wildcard-value"]);
    dns.cleanup(&apex).await.context("cleanup apex again")?;
    assert_eq!(pdns.txt_values(NAME).await?, ["wildcard-value"]);

    dns.cleanup(&wildcard).await.context("cleanup wildcard")?;
    assert!(pdns.txt_values(NAME).await?.is_empty());
    dns.cleanup(&record("_acme-challenge.never.example.test", "x"))
        .await
        .context("cleanup at a name never written")?;
    assert_nothing_left(&pdns).await
}

#[tokio::test]
async fn the_longest_zone_on_the_server_is_used() -> anyhow::Result<()> {
    let pdns = PowerDns::start(&[ZONE, "sub.example.test"]).await?;
    let dns = provider(&pdns)?;
    let name = "_acme-challenge.www.sub.example.test";
    let value = record(name, "sub-value");

    dns.present(&value).await.context("present")?;
    // Served only when written to sub.example.test, not its parent.
    assert_eq!(pdns.txt_values(name).await?, ["sub-value"]);
    dns.cleanup(&value).await.context("cleanup")?;
    assert!(pdns.txt_values(name).await?.is_empty());

    let error = dns
        .present(&record("_acme-challenge.example.org", "v"))
        .await
        .expect_err("no zone holds it");
    assert!(matches!(error, DnsError::NoZone { .. }), "{error:?}");
    assert_nothing_left(&pdns).await
}

#[tokio::test]
async fn concurrent_presents_at_one_name_are_all_kept() -> anyhow::Result<()> {
    let pdns = PowerDns::start(&[ZONE]).await?;
    let values: Vec<String> = (0..6).map(|index| format!("value-{index}")).collect();
    let mut tasks = Vec::new();
    for value in &values {
        // One provider each, as separate issuances would have.
        let dns = provider(&pdns)?;
        let wanted = record(NAME, value);
        tasks.push(tokio::spawn(async move { dns.present(&wanted).await }));
    }
    for task in tasks {
        task.await?.context("present")?;
    }
    assert_eq!(pdns.txt_values(NAME).await?, values);

    let mut tasks = Vec::new();
    for value in &values {
        let dns = provider(&pdns)?;
        let wanted = record(NAME, value);
        tasks.push(tokio::spawn(async move { dns.cleanup(&wanted).await }));
    }
    for task in tasks {
        task.await?.context("cleanup")?;
    }
    assert_nothing_left(&pdns).await
}

#[tokio::test]
async fn a_wrong_api_key_is_refused_and_writes_nothing() -> anyhow::Result<()> {
    let pdns = PowerDns::start(&[ZONE]).await?;
    let wrong_key = "not-the-api-key";
    let dns = provider_with(&[
        ("api_url", &pdns.api_url()),
        ("api_key", wrong_key),
        ("zone", ZONE),
    ])?;
    let error = dns.present(&record(NAME, "v")).await.expect_err("refused");
    assert_refused(&error, "API key was not accepted");
    assert!(!error.to_string().contains(wrong_key), "{error}");
    assert_nothing_left(&pdns).await
}

#[tokio::test]
async fn a_zone_not_on_the_server_is_refused() -> anyhow::Result<()> {
    let pdns = PowerDns::start(&[ZONE]).await?;
    let dns = provider_with(&[
        ("api_url", &pdns.api_url()),
        ("api_key", pdns.api_key()),
        ("zone", "missing.test"),
    ])?;
    let error = dns
        .present(&record("_acme-challenge.missing.test", "v"))
        .await
        .expect_err("refused");
    assert_refused(&error, "does not exist");
    assert_nothing_left(&pdns).await
}

#[tokio::test]
async fn no_server_is_unavailable() -> anyhow::Result<()> {
    // Nothing listens here: the port was free a moment ago.
    let api_url = format!("http://127.0.0.1:{}", certfleet_testkit::free_port());
    let dns = provider_with(&[("api_url", &api_url), ("api_key", "k"), ("zone", ZONE)])?;
    let error = dns
        .present(&record(NAME, "v"))
        .await
        .expect_err("no server");
    assert!(matches!(error, DnsError::Unavailable { .. }), "{error:?}");
    assert!(error.is_transient());
    Ok(())
}
