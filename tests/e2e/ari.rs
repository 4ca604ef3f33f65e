//! ACME Renewal Information (RFC 9773) against a directory that offers it
//! (Pebble behind the test kit's ARI front): the window is fetched after
//! issuance and again at the CA's Retry-After, the renewal time is chosen
//! in it, a changed window moves it, and the renewal order names the
//! certificate it replaces and is exempt from the budgets.

use std::time::Duration;

use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_e2e::certfleet_testkit::acme_front::AcmeFront;
use certfleet_e2e::{Certificates, TestEnv, is_valid, request, wait_for};
use certfleet_proto::v1::{self as pb};

/// Requests an HTTP-01 certificate for `name` and waits until it is valid.
async fn issue(client: &mut Certificates, name: &str) -> pb::Certificate {
    let id = client
        .create_certificate(request(&[name], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner()
        .id;
    wait_for(client, &id, Duration::from_secs(30), is_valid)
        .await
        .unwrap()
}

/// In how many milliseconds of the certfleet clock the CA's window of
/// `certificate` is fetched again.
async fn ari_recheck_in_ms(env: &TestEnv, certificate: &pb::Certificate) -> i64 {
    let store = &env.embedded.as_ref().unwrap().store;
    let row = store
        .get_certificate(&certificate.organization_id, &certificate.id)
        .await
        .unwrap()
        .unwrap();
    row.ari_next_at.unwrap() - env.clock_now_ms()
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_follows_the_cas_window_and_names_what_it_replaces() {
    let env = TestEnv::start_fronted(PebbleOptions::default(), |config| {
        // One certificate per name set per week: only an ARI renewal may
        // get a second one.
        config.rate_limits = vec!["certificates-per-name-set=1/7d".to_owned()];
    })
    .await
    .unwrap();
    let front = env.front.as_ref().unwrap();
    front.set_retry_after(120);
    let (mut client, mut bundles) = env.organization("ari").await;
    let issued = issue(&mut client, "ari.test").await;
    let id = issued.id.clone();
    let first = issued.current.clone().unwrap();
    let leaf = certfleet_e2e::bundle(&mut bundles, &id)
        .await
        .unwrap()
        .certificate_pem;
    let cert_id = AcmeFront::cert_id(&leaf).unwrap();

    // The front's default window: the last third of the lifetime, one
    // sixth of it long; the renewal time is inside it.
    let lifetime = first.not_after - first.not_before;
    let start = first.not_before + lifetime * 2 / 3;
    // (Whole seconds here, milliseconds at the front: one second either way.)
    assert!((first.ari_window_start - start).abs() <= 1, "{first:?}");
    assert!(
        (first.ari_window_end - (start + lifetime / 6)).abs() <= 1,
        "{first:?}"
    );
    assert!(
        (first.ari_window_start..=first.ari_window_end).contains(&issued.renew_at),
        "renew_at {} in the window {first:?}",
        issued.renew_at
    );
    assert!(
        issued.renew_reason.contains("renewal window"),
        "{}",
        issued.renew_reason
    );
    assert!(issued.renew_reason.contains("(ARI)"));
    assert_eq!(front.renewal_info_requests(&cert_id), 1);
    let recheck_in = ari_recheck_in_ms(&env, &issued).await;
    assert!(
        (100_000..=121_000).contains(&recheck_in),
        "asked again at the CA's Retry-After: {recheck_in} ms"
    );

    // The CA moves the window into the past (say, a revocation is coming).
    // At the Retry-After the window is fetched again and renewal is due now.
    let now_ms = env.clock_now_ms();
    front.set_window(&cert_id, now_ms - 2 * 3_600_000, now_ms - 3_600_000);
    env.clock.advance(Duration::from_secs(125));
    let renewed = wait_for(&mut client, &id, Duration::from_secs(30), |certificate| {
        is_valid(certificate) && certificate.current.as_ref().is_some_and(|v| v.version == 2)
    })
    .await
    .unwrap();
    assert_eq!(front.renewal_info_requests(&cert_id), 2);
    assert_eq!(
        front.replaces_seen(),
        vec![cert_id.clone()],
        "the renewal order names the certificate it replaces"
    );
    assert!(front.refused_replaces().is_empty());
    assert!(
        renewed.waiting_reason.is_empty(),
        "ARI renewals skip the budgets"
    );
    let second = renewed.current.unwrap();
    assert_ne!(second.serial, first.serial);
    assert!(
        second.ari_window_start > 0,
        "the new version has its own window"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_retry_after_is_capped_at_twelve_hours() {
    let env = TestEnv::start_fronted(PebbleOptions::default(), |_| {})
        .await
        .unwrap();
    let front = env.front.as_ref().unwrap();
    front.set_retry_after(3 * 86_400);
    let (mut client, _) = env.organization("ari-cap").await;
    let issued = issue(&mut client, "cap.ari.test").await;
    let recheck_in = ari_recheck_in_ms(&env, &issued).await;
    assert!(
        recheck_in <= 12 * 3_600_000 && recheck_in > 11 * 3_600_000,
        "at least twice a day: {recheck_in} ms"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_ari_the_lifetime_rule_applies_and_says_so() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, _) = env.organization("no-ari").await;
    let issued = issue(&mut client, "plain.ari.test").await;
    let version = issued.current.unwrap();
    assert_eq!(version.ari_window_start, 0);
    assert!(
        issued.renew_reason.contains("lifetime left"),
        "{}",
        issued.renew_reason
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_the_directory_offers_is_sent_with_the_order() {
    let env = TestEnv::start_fronted(PebbleOptions::default(), |_| {})
        .await
        .unwrap();
    let front = env.front.as_ref().unwrap();
    front.offer_profiles(&[
        ("classic", "the long-lived default"),
        ("shortlived", "about six days"),
    ]);
    let (mut client, _) = env.organization("profiles").await;
    let mut asked = request(&["short.profile.test"], pb::KeyType::EcdsaP256);
    asked.profile = "shortlived".to_owned();
    let id = client
        .create_certificate(asked)
        .await
        .unwrap()
        .into_inner()
        .id;
    wait_for(&mut client, &id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    assert_eq!(front.profiles_seen(), vec!["shortlived".to_owned()]);

    let mut unknown = request(&["other.profile.test"], pb::KeyType::EcdsaP256);
    unknown.profile = "tlsserver".to_owned();
    let id = client
        .create_certificate(unknown)
        .await
        .unwrap()
        .into_inner()
        .id;
    let failed = wait_for(&mut client, &id, Duration::from_secs(30), |certificate| {
        certificate.status == pb::CertificateStatus::Failed as i32
    })
    .await
    .unwrap();
    assert!(
        failed
            .last_error
            .contains("\"tlsserver\", which default does not offer (offered: ")
            && failed.last_error.contains("classic")
            && failed.last_error.contains("shortlived"),
        "{}",
        failed.last_error
    );
    assert_eq!(front.profiles_seen().len(), 1, "no order for it");
    env.stop().await;
}
