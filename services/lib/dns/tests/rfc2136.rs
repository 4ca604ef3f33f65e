//! The rfc2136 provider against a real BIND: values at one name coexist, both
//! calls are idempotent, a refusal is final and writes nothing. Every test
//! ends with no `_acme-challenge` record left on the server.

mod common;
#[path = "common/concurrent.rs"]
mod concurrent;

use std::sync::Arc;

use anyhow::Context as _;
use certfleet_dns::{DnsError, DnsProvider, ProviderKind};
use certfleet_testkit::{Bind, BindZone};

use common::{NAME, ZONE, assert_nothing_left, assert_refused, build_provider, record};
use concurrent::at_once;

fn provider_with(pairs: &[(&str, &str)]) -> anyhow::Result<Arc<dyn DnsProvider>> {
    build_provider(ProviderKind::Rfc2136, pairs)
}

/// The provider signing with `key` and `secret`, `zone` set to example.test.
fn provider_signing(bind: &Bind, key: &str, secret: &str) -> anyhow::Result<Arc<dyn DnsProvider>> {
    let server = bind.addr().to_string();
    provider_with(&[
        ("server", &server),
        ("tsig_key", key),
        ("tsig_secret", secret),
        ("zone", ZONE),
    ])
}

/// The provider with the update key, `zone` set to example.test.
fn provider(bind: &Bind) -> anyhow::Result<Arc<dyn DnsProvider>> {
    provider_signing(bind, bind.tsig_key_name(), bind.tsig_secret_base64())
}

/// How `dns` fails to write a value at `_acme-challenge.example.test`.
async fn refusal(dns: Arc<dyn DnsProvider>) -> DnsError {
    dns.present(&record(NAME, "v")).await.expect_err("refused")
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
    assert_nothing_left(&bind.acme_challenge_records().await?);
    Ok(())
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
    assert_nothing_left(&bind.acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn concurrent_presents_at_one_name_are_all_kept() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE]).await?;
    let values: Vec<String> = (0..6).map(|index| format!("value-{index}")).collect();
    let new_provider = || provider(&bind);
    at_once(&values, new_provider, |dns, wanted| dns.present(wanted))
        .await
        .context("present")?;
    assert_eq!(bind.txt_values(NAME).await?, values);

    let dns = provider(&bind)?;
    for value in &values {
        dns.cleanup(&record(NAME, value)).await.context("cleanup")?;
    }
    assert_nothing_left(&bind.acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn a_key_without_update_rights_is_refused_and_writes_nothing() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE]).await?;
    let denied = provider_signing(&bind, bind.denied_key_name(), bind.denied_secret_base64())?;
    assert_refused(&refusal(denied).await, "REFUSED", &[]);
    assert_nothing_left(&bind.acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn a_zone_without_updates_is_refused() -> anyhow::Result<()> {
    let bind = Bind::start_zones(vec![BindZone::new(ZONE).read_only()]).await?;
    assert_refused(&refusal(provider(&bind)?).await, "REFUSED", &[]);
    assert_nothing_left(&bind.acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn a_wrong_secret_is_refused_in_plain_words() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE]).await?;
    let wrong_secret = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=";
    let dns = provider_signing(&bind, bind.tsig_key_name(), wrong_secret)?;
    assert_refused(&refusal(dns).await, "TSIG key or secret", &[wrong_secret]);

    let unknown_key = provider_signing(&bind, "no-such-key", bind.tsig_secret_base64())?;
    assert_refused(&refusal(unknown_key).await, "TSIG key or secret", &[]);
    assert_nothing_left(&bind.acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn a_name_outside_the_zone_is_refused_before_sending() -> anyhow::Result<()> {
    let bind = Bind::start(&[ZONE]).await?;
    let error = provider(&bind)?
        .present(&record("_acme-challenge.example.org", "v"))
        .await
        .expect_err("outside the zone");
    assert!(matches!(error, DnsError::NoZone { .. }), "{error:?}");
    assert_nothing_left(&bind.acme_challenge_records().await?);
    Ok(())
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
