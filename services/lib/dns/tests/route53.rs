//! The route53 provider against moto's Route 53: values at one name coexist
//! although Route 53 rewrites whole record sets, both calls are idempotent,
//! the hosted zone is found by name, a refusal is final and writes nothing.
//! Every test ends with no `_acme-challenge` record left on the server.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use certfleet_dns::{
    DnsError, DnsPolicy, DnsProvider, ProviderConfig, ProviderKind, TxtRecord, providers,
};
use certfleet_testkit::Moto;

const ZONE: &str = "example.test";
const NAME: &str = "_acme-challenge.example.test";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn provider_with(moto: &Moto, extra: &[(&str, &str)]) -> anyhow::Result<Arc<dyn DnsProvider>> {
    let endpoint = moto.endpoint_url();
    let mut pairs = vec![
        ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
        ("secret_access_key", SECRET),
        ("endpoint_url", endpoint.as_str()),
    ];
    pairs.extend_from_slice(extra);
    let values: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let policy = DnsPolicy::default();
    let config = ProviderConfig::parse(ProviderKind::Route53, values, &policy)?;
    Ok(providers::build(&config, &policy)?)
}

fn record(fqdn: &str, value: &str) -> TxtRecord {
    TxtRecord {
        fqdn: fqdn.to_owned(),
        zone: None,
        value: value.to_owned(),
    }
}

fn quoted(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| format!("\"{value}\"")).collect()
}

async fn assert_nothing_left(moto: &Moto) -> anyhow::Result<()> {
    let left = moto.all_acme_challenge_records().await?;
    assert!(left.is_empty(), "records left behind: {left:?}");
    Ok(())
}

fn assert_refused(error: &DnsError, words: &str) {
    assert!(
        matches!(error, DnsError::Refused { .. }),
        "not refused: {error:?}"
    );
    assert!(!error.is_transient(), "{error}");
    let text = error.to_string();
    assert!(text.contains(words), "{text} lacks {words:?}");
    assert!(!text.contains(SECRET), "{text}");
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
    assert_nothing_left(&moto).await
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
    assert_nothing_left(&moto).await
}

#[tokio::test]
async fn concurrent_presents_at_one_name_are_all_kept() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let zone_id = moto.create_hosted_zone(ZONE).await?;
    let values: Vec<String> = (0..5).map(|index| format!("value-{index}")).collect();
    let mut tasks = Vec::new();
    for value in &values {
        // One provider each, as separate issuances would have.
        let dns = provider_with(&moto, &[])?;
        let wanted = record(NAME, value);
        tasks.push(tokio::spawn(async move { dns.present(&wanted).await }));
    }
    for task in tasks {
        task.await?.context("present")?;
    }
    let mut stored = moto.txt_values(&zone_id, NAME).await?;
    stored.sort();
    let expected: Vec<&str> = values.iter().map(String::as_str).collect();
    assert_eq!(stored, quoted(&expected));

    let mut tasks = Vec::new();
    for value in &values {
        let dns = provider_with(&moto, &[])?;
        let wanted = record(NAME, value);
        tasks.push(tokio::spawn(async move { dns.cleanup(&wanted).await }));
    }
    for task in tasks {
        task.await?.context("cleanup")?;
    }
    assert_nothing_left(&moto).await
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
    assert_refused(&error, "ZNOSUCHZONE0001");
    let error = dns
        .cleanup(&record(NAME, "v"))
        .await
        .expect_err("the hosted zone does not exist");
    assert_refused(&error, "NoSuchHostedZone");
    assert_nothing_left(&moto).await
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
    assert_refused(&error, "not permitted in zone");
    assert_nothing_left(&moto).await
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
    assert_nothing_left(&moto).await
}
