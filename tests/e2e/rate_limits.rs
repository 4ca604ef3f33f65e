//! Rate-limit budgets (DESIGN section 6): work over budget waits, with the
//! reason on the certificate, until the window frees on the certfleet clock;
//! renewals are exempt from the per-domain budget; a `rateLimited` answer of
//! the CA is obeyed until its Retry-After; failed validations of a name stop
//! before they burn the account's budget.

use std::net::Ipv4Addr;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_e2e::{Certificates, TestEnv, is_valid, request, wait_for};
use certfleet_proto::v1::{self as pb, RenewCertificateRequest};

const HOUR_S: i64 = 3600;

async fn create(client: &mut Certificates, name: &str) -> String {
    client
        .create_certificate(request(&[name], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner()
        .id
}

fn waiting(certificate: &pb::Certificate) -> bool {
    !certificate.waiting_reason.is_empty()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fourth_certificate_for_a_domain_waits_for_the_window_and_renewals_do_not() {
    let env = TestEnv::start_with(PebbleOptions::default(), |config| {
        config.rate_limits = vec!["certificates-per-domain=3/1h".to_owned()];
    })
    .await
    .unwrap();
    let (mut client, _) = env.organization("budget").await;
    let mut valid = Vec::new();
    for name in ["a.budget.test", "b.budget.test", "www.c.budget.test"] {
        let id = create(&mut client, name).await;
        wait_for(&mut client, &id, Duration::from_secs(30), is_valid)
            .await
            .unwrap();
        valid.push(id);
    }
    let spent_at_s = env.clock_now_ms() / 1000;

    // The fourth new certificate for budget.test is not ordered.
    let fourth = create(&mut client, "d.budget.test").await;
    let held = wait_for(&mut client, &fourth, Duration::from_secs(30), waiting)
        .await
        .unwrap();
    assert_eq!(
        held.status,
        pb::CertificateStatus::Pending as i32,
        "{held:?}"
    );
    assert_eq!(held.attempts, 0, "waiting is not a failed attempt");
    assert!(
        held.waiting_reason.contains(
            "new certificates for the registered domain budget.test at default: 3 per 1 hour"
        ),
        "the reason names the budget: {}",
        held.waiting_reason
    );
    let frees_in = held.next_attempt_at - spent_at_s;
    assert!(
        (HOUR_S - 60..=HOUR_S).contains(&frees_in),
        "the next attempt is when the first of the three leaves the window: {frees_in} s"
    );

    // Several scheduler passes later it still waits: nothing was sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = wait_for(&mut client, &fourth, Duration::from_secs(1), waiting)
        .await
        .unwrap();
    assert_eq!(still.status, pb::CertificateStatus::Pending as i32);
    let store = &env.embedded.as_ref().unwrap().store;
    let used = store
        .rate_limit_usage(
            &env.pebble.directory_url(),
            "registered-domain",
            "budget.test",
            HOUR_S * 1000,
            env.clock_now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(used, 3);

    // A renewal of one of the three is not held by the spent domain budget.
    client
        .renew_certificate(RenewCertificateRequest {
            id: valid[0].clone(),
        })
        .await
        .unwrap();
    wait_for(
        &mut client,
        &valid[0],
        Duration::from_secs(30),
        |certificate| {
            is_valid(certificate) && certificate.current.as_ref().is_some_and(|v| v.version == 2)
        },
    )
    .await
    .unwrap();

    // Once the window frees on the certfleet clock, the fourth is issued.
    env.clock
        .advance(Duration::from_secs(u64::try_from(HOUR_S).unwrap() + 30));
    let issued = wait_for(&mut client, &fourth, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    assert!(issued.waiting_reason.is_empty(), "{issued:?}");
    assert_eq!(issued.current.unwrap().issuer, "default");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cas_rate_limited_answer_is_obeyed_until_its_retry_after() {
    let env = TestEnv::start_fronted(PebbleOptions::default(), |_| {})
        .await
        .unwrap();
    let front = env.front.as_ref().unwrap();
    front.inject_rate_limited(1, 1800);
    let (mut client, _) = env.organization("limited").await;
    let asked_at_s = env.clock_now_ms() / 1000;
    let id = create(&mut client, "limited.test").await;
    let held = wait_for(&mut client, &id, Duration::from_secs(30), waiting)
        .await
        .unwrap();
    assert!(
        held.waiting_reason.contains("rate-limited this order")
            && held.waiting_reason.contains("too many new orders recently"),
        "the CA's words are kept: {}",
        held.waiting_reason
    );
    assert_eq!(held.attempts, 0, "{held:?}");
    let wait = held.next_attempt_at - asked_at_s;
    assert!(
        (1790..=1815).contains(&wait),
        "the next attempt is at the CA's Retry-After: {wait} s"
    );
    // Not asked again before then.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(front.new_orders(), 1);

    env.clock.advance(Duration::from_secs(1800 + 30));
    let issued = wait_for(&mut client, &id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    assert!(issued.waiting_reason.is_empty());
    assert_eq!(front.new_orders(), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_validations_of_a_name_stop_before_they_burn_the_budget() {
    let env = TestEnv::start_with(PebbleOptions::default(), |config| {
        config.rate_limits = vec!["failed-authorizations-per-name=2/1h".to_owned()];
    })
    .await
    .unwrap();
    // The CA finds nothing at the name's address; the self-check passes.
    env.pebble
        .add_a_record("broken.budget.test", Ipv4Addr::new(127, 0, 0, 2))
        .await
        .unwrap();
    let (mut client, _) = env.organization("broken").await;
    let id = create(&mut client, "broken.budget.test").await;
    for attempt in 1..=2 {
        wait_for(&mut client, &id, Duration::from_secs(30), |certificate| {
            certificate.attempts >= attempt
        })
        .await
        .unwrap();
        // Past the back-off (1 min, then 10 min).
        env.clock.advance(Duration::from_secs(11 * 60));
    }
    let held = wait_for(&mut client, &id, Duration::from_secs(30), waiting)
        .await
        .unwrap();
    assert!(
        held.waiting_reason
            .contains("failed validations of broken.budget.test at default: 2 per 1 hour"),
        "{}",
        held.waiting_reason
    );
    assert_eq!(held.attempts, 2, "the third attempt was not made: {held:?}");
    assert_ne!(held.status, pb::CertificateStatus::Failed as i32);
    env.stop().await;
}
