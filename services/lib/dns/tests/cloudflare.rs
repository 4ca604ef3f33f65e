//! The cloudflare provider against a local fake of the Cloudflare API v4:
//! values at one name coexist, both calls are idempotent (also past the first
//! page of a list, and for content stored without quotes), the zone is found
//! by name, a refused token is final and writes nothing. Every test ends with
//! no `_acme-challenge` record left on the server.

mod common;

use std::sync::Arc;

use anyhow::Context as _;
use certfleet_dns::{DnsError, DnsProvider, ProviderKind, TxtRecord};
use certfleet_testkit::FakeCloudflare;

use common::{NAME, ZONE, assert_nothing_left, assert_refused, build_provider, record};

fn provider_with(pairs: &[(&str, &str)]) -> anyhow::Result<Arc<dyn DnsProvider>> {
    build_provider(ProviderKind::Cloudflare, pairs)
}

/// The provider with the full token and no zone id (it finds the zone).
fn provider(cloudflare: &FakeCloudflare) -> anyhow::Result<Arc<dyn DnsProvider>> {
    provider_with(&[
        ("api_url", &cloudflare.base_url()),
        ("api_token", &cloudflare.token()),
    ])
}

fn quoted(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| format!("\"{value}\"")).collect()
}

#[tokio::test]
async fn values_coexist_and_both_calls_are_idempotent() -> anyhow::Result<()> {
    let cloudflare = FakeCloudflare::start().await?;
    let zone_id = cloudflare.add_zone(ZONE);
    let dns = provider_with(&[
        ("api_url", &cloudflare.base_url()),
        ("api_token", &cloudflare.token()),
        ("zone_id", &zone_id),
    ])?;
    let (apex, wildcard) = (record(NAME, "apex-value"), record(NAME, "wildcard-value"));

    dns.present(&apex).await.context("present apex")?;
    dns.present(&wildcard).await.context("present wildcard")?;
    let both = quoted(&["apex-value", "wildcard-value"]);
    assert_eq!(cloudflare.txt_records(NAME), both);

    dns.present(&apex).await.context("present apex again")?;
    assert_eq!(cloudflare.txt_records(NAME), both);

    dns.cleanup(&apex).await.context("cleanup apex")?;
    assert_eq!(cloudflare.txt_records(NAME), quoted(&["wildcard-value"]));
    dns.cleanup(&apex).await.context("cleanup apex again")?;
    assert_eq!(cloudflare.txt_records(NAME), quoted(&["wildcard-value"]));

    dns.cleanup(&wildcard).await.context("cleanup wildcard")?;
    assert!(cloudflare.txt_records(NAME).is_empty());
    dns.cleanup(&record("_acme-challenge.never.example.test", "x"))
        .await
        .context("cleanup at a name never written")?;
    assert_nothing_left(&cloudflare.all_acme_challenge_records());
    Ok(())
}

#[tokio::test]
async fn the_longest_zone_is_found_by_name() -> anyhow::Result<()> {
    let cloudflare = FakeCloudflare::start().await?;
    cloudflare.add_zone(ZONE);
    cloudflare.add_zone("sub.example.test");
    cloudflare.add_zone("other.test");
    let dns = provider(&cloudflare)?;

    let name = "_acme-challenge.www.sub.example.test";
    let value = record(name, "sub-value");
    dns.present(&value).await.context("present")?;
    assert_eq!(cloudflare.txt_records(name), quoted(&["sub-value"]));
    dns.cleanup(&value).await.context("cleanup")?;
    assert!(cloudflare.txt_records(name).is_empty());

    // The zone the SOA walk found is taken as given.
    let given = TxtRecord {
        zone: Some(ZONE.to_owned()),
        ..record(NAME, "given-zone")
    };
    dns.present(&given).await.context("present with a zone")?;
    assert_eq!(cloudflare.txt_records(NAME), quoted(&["given-zone"]));
    dns.cleanup(&given).await.context("cleanup with a zone")?;

    let error = dns
        .present(&record("_acme-challenge.example.org", "v"))
        .await
        .expect_err("no zone holds it");
    assert!(matches!(error, DnsError::NoZone { .. }), "{error:?}");
    assert_nothing_left(&cloudflare.all_acme_challenge_records());
    Ok(())
}

#[tokio::test]
async fn values_past_the_first_page_are_found() -> anyhow::Result<()> {
    let cloudflare = FakeCloudflare::start().await?;
    cloudflare.add_zone(ZONE);
    let dns = provider(&cloudflare)?;
    // More values at one name than one page of 100 holds.
    let values: Vec<String> = (0..130).map(|index| format!("value-{index:03}")).collect();
    for value in &values {
        dns.present(&record(NAME, value)).await.context("present")?;
    }
    assert_eq!(cloudflare.txt_records(NAME).len(), values.len());
    assert_eq!(cloudflare.max_page_served(), 2);

    // On page 2: found, so not added twice.
    dns.present(&record(NAME, "value-129"))
        .await
        .context("present again")?;
    assert_eq!(cloudflare.txt_records(NAME).len(), values.len());

    for value in values.iter().rev() {
        dns.cleanup(&record(NAME, value)).await.context("cleanup")?;
    }
    assert_nothing_left(&cloudflare.all_acme_challenge_records());
    Ok(())
}

#[tokio::test]
async fn content_stored_without_quotes_is_the_same_value() -> anyhow::Result<()> {
    let cloudflare = FakeCloudflare::start().await?;
    cloudflare.add_zone(ZONE);
    cloudflare.add_txt_record(NAME, "bare-value");
    let dns = provider(&cloudflare)?;

    dns.present(&record(NAME, "bare-value"))
        .await
        .context("present")?;
    assert_eq!(cloudflare.txt_records(NAME), ["bare-value"]);
    dns.cleanup(&record(NAME, "bare-value"))
        .await
        .context("cleanup")?;
    assert_nothing_left(&cloudflare.all_acme_challenge_records());
    Ok(())
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_writes_nothing() -> anyhow::Result<()> {
    let cloudflare = FakeCloudflare::start().await?;
    let zone_id = cloudflare.add_zone(ZONE);
    let token = "wrong-token-0123456789";
    let dns = provider_with(&[
        ("api_url", &cloudflare.base_url()),
        ("api_token", token),
        ("zone_id", &zone_id),
    ])?;

    let error = dns
        .present(&record(NAME, "v"))
        .await
        .expect_err("wrong token");
    assert_refused(&error, "Invalid access token (code 9109)", &[token]);
    let error = dns
        .cleanup(&record(NAME, "v"))
        .await
        .expect_err("wrong token");
    assert_refused(&error, "Invalid access token", &[token]);
    assert_nothing_left(&cloudflare.all_acme_challenge_records());
    Ok(())
}

#[tokio::test]
async fn a_read_only_token_is_refused_and_writes_nothing() -> anyhow::Result<()> {
    let cloudflare = FakeCloudflare::start().await?;
    cloudflare.add_zone(ZONE);
    let token = cloudflare.read_only_token();
    let dns = provider_with(&[("api_url", &cloudflare.base_url()), ("api_token", &token)])?;

    let error = dns
        .present(&record(NAME, "v"))
        .await
        .expect_err("cannot write");
    assert_refused(&error, "Authentication error (code 10000)", &[&token]);
    assert_nothing_left(&cloudflare.all_acme_challenge_records());
    Ok(())
}

#[tokio::test]
async fn an_unreachable_api_is_unavailable() -> anyhow::Result<()> {
    let cloudflare = FakeCloudflare::start().await?;
    let closed = format!(
        "http://127.0.0.1:{}/client/v4",
        certfleet_testkit::free_port()
    );
    let dns = provider_with(&[("api_url", &closed), ("api_token", &cloudflare.token())])?;

    let error = dns
        .present(&record(NAME, "v"))
        .await
        .expect_err("nothing listens there");
    assert!(matches!(error, DnsError::Unavailable { .. }), "{error:?}");
    assert!(error.is_transient());
    assert_nothing_left(&cloudflare.all_acme_challenge_records());
    Ok(())
}

#[tokio::test]
async fn a_rate_limit_is_unavailable_and_writes_nothing() -> anyhow::Result<()> {
    let cloudflare = FakeCloudflare::start().await?;
    cloudflare.add_zone(ZONE);
    let dns = provider(&cloudflare)?;
    cloudflare.set_rate_limited(true);

    let error = dns
        .present(&record(NAME, "v"))
        .await
        .expect_err("rate limited");
    assert!(matches!(error, DnsError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("HTTP 429"), "{error}");

    cloudflare.set_rate_limited(false);
    dns.present(&record(NAME, "v"))
        .await
        .context("present once allowed")?;
    dns.cleanup(&record(NAME, "v")).await.context("cleanup")?;
    assert_nothing_left(&cloudflare.all_acme_challenge_records());
    Ok(())
}
