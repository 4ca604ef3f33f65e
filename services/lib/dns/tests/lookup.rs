//! Zone discovery, CNAME delegation and the propagation check against a real
//! BIND.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use certfleet_dns::{DnsError, DnsLookup, LookupConfig, TxtRecord};
use certfleet_testkit::{Bind, BindZone};

async fn bind() -> Bind {
    Bind::start_zones(vec![
        BindZone::new("example.test")
            .record("_acme-challenge.www.example.test. 60 IN CNAME www.acme.delegated.test.")
            .record("_acme-challenge.loop.example.test. 60 IN CNAME _acme-challenge.loop2.example.test.")
            .record("_acme-challenge.loop2.example.test. 60 IN CNAME _acme-challenge.loop.example.test.")
            .record("_acme-challenge.ready.example.test. 60 IN TXT \"already-here\"")
            .record("_acme-challenge.ready.example.test. 60 IN TXT \"and-another\""),
        BindZone::new("acme.delegated.test"),
    ])
    .await
    .unwrap()
}

fn lookup(resolver: SocketAddr) -> DnsLookup {
    DnsLookup::new(LookupConfig {
        propagation_timeout: Duration::from_millis(600),
        propagation_interval: Duration::from_millis(100),
        ..LookupConfig::new(resolver)
    })
}

#[tokio::test]
async fn zones_are_found_by_walking_soa_records() {
    let bind = bind().await;
    let lookup = lookup(bind.addr());
    assert_eq!(
        lookup
            .find_zone("_acme-challenge.a.b.example.test")
            .await
            .unwrap()
            .as_deref(),
        Some("example.test")
    );
    assert_eq!(
        lookup.find_zone("example.test").await.unwrap().as_deref(),
        Some("example.test")
    );
    assert_eq!(
        lookup
            .find_zone("x.acme.delegated.test")
            .await
            .unwrap()
            .as_deref(),
        Some("acme.delegated.test")
    );
    // Outside every zone only the root answers: no zone.
    assert_eq!(lookup.find_zone("nowhere.invalid").await.unwrap(), None);
}

#[tokio::test]
async fn challenge_cnames_are_followed_and_loops_refused() {
    let bind = bind().await;
    let lookup = lookup(bind.addr());
    assert_eq!(
        lookup.challenge_name("www.example.test").await.unwrap(),
        "www.acme.delegated.test"
    );
    assert_eq!(
        lookup.challenge_name("plain.example.test").await.unwrap(),
        "_acme-challenge.plain.example.test"
    );
    let error = lookup
        .challenge_name("loop.example.test")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("loops"), "{error}");
}

#[tokio::test]
async fn authoritative_servers_come_from_the_ns_records() {
    let bind = bind().await;
    let lookup = lookup(bind.addr());
    assert_eq!(
        lookup.authoritative_servers("example.test").await.unwrap(),
        vec![SocketAddr::from(([127, 0, 0, 1], 53))]
    );
}

#[tokio::test]
async fn propagation_waits_for_the_value_and_names_the_missing_servers() {
    let bind = bind().await;
    let lookup = lookup(bind.addr());
    let served = TxtRecord {
        fqdn: "_acme-challenge.ready.example.test".to_owned(),
        zone: Some("example.test".to_owned()),
        value: "and-another".to_owned(),
    };
    let started = Instant::now();
    lookup
        .wait_until_served(&served, &[bind.addr()])
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "no fixed sleep"
    );

    let absent = TxtRecord {
        value: "never-written".to_owned(),
        ..served
    };
    let started = Instant::now();
    let error = lookup
        .wait_until_served(&absent, &[bind.addr()])
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, DnsError::NotPropagated { .. }), "{error}");
    assert!(
        error.to_string().contains(&bind.addr().to_string()),
        "{error}"
    );
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}
