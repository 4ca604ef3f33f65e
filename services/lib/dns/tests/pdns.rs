//! The pdns provider against a real PowerDNS: values at one name coexist
//! although the API replaces whole RRsets, both calls are idempotent, the zone
//! is found on the server, a refusal is final and writes nothing. Every test
//! ends with no `_acme-challenge` record left on the server.

mod common;
#[path = "common/concurrent.rs"]
mod concurrent;

use std::sync::Arc;

use anyhow::Context as _;
use certfleet_dns::{DnsError, DnsProvider, ProviderKind};
use certfleet_testkit::PowerDns;

use common::{NAME, ZONE, assert_nothing_left, assert_refused, build_provider, record};
use concurrent::at_once;

fn provider_with(pairs: &[(&str, &str)]) -> anyhow::Result<Arc<dyn DnsProvider>> {
    build_provider(ProviderKind::Pdns, pairs)
}

/// The provider with the right key and no zone setting (it finds the zone).
fn provider(pdns: &PowerDns) -> anyhow::Result<Arc<dyn DnsProvider>> {
    provider_with(&[("api_url", &pdns.api_url()), ("api_key", pdns.api_key())])
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
    assert_nothing_left(&pdns.acme_challenge_records().await?);
    Ok(())
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
    assert_nothing_left(&pdns.acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn concurrent_presents_at_one_name_are_all_kept() -> anyhow::Result<()> {
    let pdns = PowerDns::start(&[ZONE]).await?;
    let values: Vec<String> = (0..6).map(|index| format!("value-{index}")).collect();
    let new_provider = || provider(&pdns);
    at_once(&values, new_provider, |dns, wanted| dns.present(wanted))
        .await
        .context("present")?;
    assert_eq!(pdns.txt_values(NAME).await?, values);

    at_once(&values, new_provider, |dns, wanted| dns.cleanup(wanted))
        .await
        .context("cleanup")?;
    assert_nothing_left(&pdns.acme_challenge_records().await?);
    Ok(())
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
    assert_refused(&error, "API key was not accepted", &[wrong_key]);
    assert_nothing_left(&pdns.acme_challenge_records().await?);
    Ok(())
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
    assert_refused(&error, "does not exist", &[]);
    assert_nothing_left(&pdns.acme_challenge_records().await?);
    Ok(())
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
