//! The route53 provider against moto's Route 53: values at one name coexist
//! although Route 53 rewrites whole record sets, both calls are idempotent,
//! the hosted zone is found by name, a refusal is final and writes nothing.
//! Every test ends with no `_acme-challenge` record left on the server.

mod common;
#[path = "common/concurrent.rs"]
mod concurrent;

use std::sync::Arc;

use anyhow::Context as _;
use certfleet_dns::{DnsError, DnsProvider, ProviderKind, TxtRecord};
use certfleet_testkit::Moto;

use common::{NAME, ZONE, assert_nothing_left, assert_refused, build_provider, record};
use concurrent::at_once;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn provider_with(moto: &Moto, extra: &[(&str, &str)]) -> anyhow::Result<Arc<dyn DnsProvider>> {
    let endpoint = moto.endpoint_url();
    let mut pairs = vec![
        ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
        ("secret_access_key", SECRET),
        ("endpoint_url", endpoint.as_str()),
    ];
    pairs.extend_from_slice(extra);
    build_provider(ProviderKind::Route53, &pairs)
}

fn quoted(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| format!("\"{value}\"")).collect()
}

#[tokio::test]
async fn values_coexist_and_both_calls_are_idempotent() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let zone_id = moto.create_hosted_zone(ZONE).await?;
    let dns = provider_with(&moto, &[("hosted_zone_id", &zone_id)])?;
    let (apex, wildcard) = (record(NAME, "apex-value"), record(NAME, "wildcard-value"));

    dns.present(&apex).await.context("present apex")?;
    dns.present(&wildcard).await.context("present wildcard")?;
    let both = quoted(&["apex-value", "wildcard-value"]);
    assert_eq!(moto.txt_values(&zone_id, NAME).await?, both);

    dns.present(&apex).await.context("present apex again")?;
    assert_eq!(moto.txt_values(&zone_id, NAME).await?, both);

    dns.cleanup(&apex).await.context("cleanup apex")?;
    assert_eq!(
        moto.txt_values(&zone_id, NAME).await?,
        quoted(&["wildcard-value"])
    );
    dns.cleanup(&apex).await.context("cleanup apex again")?;
    assert_eq!(
        moto.txt_values(&zone_id, NAME).await?,
        quoted(&["wildcard-value"])
    );

    // The last value goes with its record set (a DELETE of the exact set).
    dns.cleanup(&wildcard).await.context("cleanup wildcard")?;
    assert!(moto.txt_values(&zone_id, NAME).await?.is_empty());
    dns.cleanup(&wildcard)
        .await
        .context("cleanup wildcard again")?;
    dns.cleanup(&record("_acme-challenge.never.example.test", "x"))
        .await
        .context("cleanup at a name never written")?;
    assert_nothing_left(&moto.all_acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn the_longest_hosted_zone_is_found_by_name() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let parent_id = moto.create_hosted_zone(ZONE).await?;
    let sub_id = moto.create_hosted_zone("sub.example.test").await?;
    moto.create_hosted_zone("other.test").await?;
    let dns = provider_with(&moto, &[])?;

    let name = "_acme-challenge.www.sub.example.test";
    let value = record(name, "sub-value");
    dns.present(&value).await.context("present")?;
    assert_eq!(
        moto.txt_values(&sub_id, name).await?,
        quoted(&["sub-value"])
    );
    assert!(moto.txt_values(&parent_id, name).await?.is_empty());
    dns.cleanup(&value).await.context("cleanup")?;
    assert!(moto.txt_values(&sub_id, name).await?.is_empty());

    // The zone the SOA walk found is taken as given.
    let given = TxtRecord {
        zone: Some(ZONE.to_owned()),
        ..record(NAME, "given-zone")
    };
    dns.present(&given).await.context("present with a zone")?;
    assert_eq!(
        moto.txt_values(&parent_id, NAME).await?,
        quoted(&["given-zone"])
    );
    dns.cleanup(&given).await.context("cleanup with a zone")?;

    let error = dns
        .present(&record("_acme-challenge.example.org", "v"))
        .await
        .expect_err("no hosted zone holds it");
    assert!(matches!(error, DnsError::NoZone { .. }), "{error:?}");
    assert_nothing_left(&moto.all_acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn concurrent_presents_at_one_name_are_all_kept() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let zone_id = moto.create_hosted_zone(ZONE).await?;
    let values: Vec<String> = (0..5).map(|index| format!("value-{index}")).collect();
    let new_provider = || provider_with(&moto, &[]);
    at_once(&values, new_provider, |dns, wanted| dns.present(wanted))
        .await
        .context("present")?;
    let mut stored = moto.txt_values(&zone_id, NAME).await?;
    stored.sort();
    let expected: Vec<&str> = values.iter().map(String::as_str).collect();
    assert_eq!(stored, quoted(&expected));

    at_once(&values, new_provider, |dns, wanted| dns.cleanup(wanted))
        .await
        .context("cleanup")?;
    assert_nothing_left(&moto.all_acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn an_unknown_hosted_zone_is_refused_and_writes_nothing() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    moto.create_hosted_zone(ZONE).await?;
    let dns = provider_with(&moto, &[("hosted_zone_id", "ZNOSUCHZONE0001")])?;

    let error = dns
        .present(&record(NAME, "v"))
        .await
        .expect_err("the hosted zone does not exist");
    assert_refused(&error, "ZNOSUCHZONE0001", &[SECRET]);
    let error = dns
        .cleanup(&record(NAME, "v"))
        .await
        .expect_err("the hosted zone does not exist");
    assert_refused(&error, "NoSuchHostedZone", &[SECRET]);
    assert_nothing_left(&moto.all_acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn a_name_outside_the_hosted_zone_is_refused() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let zone_id = moto.create_hosted_zone(ZONE).await?;
    let dns = provider_with(&moto, &[("hosted_zone_id", &zone_id)])?;

    let error = dns
        .present(&record("_acme-challenge.example.org", "v"))
        .await
        .expect_err("the name is not in the zone");
    assert_refused(&error, "not permitted in zone", &[SECRET]);
    assert_nothing_left(&moto.all_acme_challenge_records().await?);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let closed = format!("http://127.0.0.1:{}", certfleet_testkit::free_port());
    // The later endpoint_url replaces moto's.
    let dns = provider_with(
        &moto,
        &[("endpoint_url", &closed), ("hosted_zone_id", "Z1")],
    )?;

    let error = dns
        .present(&record(NAME, "v"))
        .await
        .expect_err("nothing listens there");
    assert!(matches!(error, DnsError::Unavailable { .. }), "{error:?}");
    assert!(error.is_transient());
    assert!(!error.to_string().contains(SECRET), "{error}");
    assert_nothing_left(&moto.all_acme_challenge_records().await?);
    Ok(())
}
