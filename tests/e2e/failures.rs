//! What an operator sees when issuance cannot succeed, and what happens when
//! certificates run out.

use std::net::Ipv4Addr;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_e2e::{TestEnv, is_valid, request, wait_for};
use certfleet_proto::v1::{self as pb, GetCertificateRequest};

#[tokio::test(flavor = "multi_thread")]
async fn a_name_the_ca_cannot_reach_fails_in_plain_words_after_three_attempts() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    // The CA resolves the name to an address where nothing answers; the
    // self-check (pointed at the responder) passes, so the CA is asked.
    env.pebble
        .add_a_record("unreachable.failures.test", Ipv4Addr::new(127, 0, 0, 2))
        .await
        .unwrap();
    let (mut client, _) = env.organization("failures").await;
    let created = client
        .create_certificate(request(
            &["unreachable.failures.test"],
            pb::KeyType::EcdsaP256,
        ))
        .await
        .unwrap()
        .into_inner();
    let get = |client: &mut certfleet_e2e::Certificates| {
        let mut client = client.clone();
        let id = created.id.clone();
        async move {
            client
                .get_certificate(GetCertificateRequest {
                    id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut seen_attempts = 0;
    for (attempt, wait) in [
        (1, Duration::from_secs(2 * 60)),
        (2, Duration::from_secs(11 * 60)),
        (3, Duration::ZERO),
    ] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let certificate = loop {
            let certificate = get(&mut client).await;
            if certificate.attempts >= attempt {
                break certificate;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "attempt {attempt} never ended: {certificate:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        seen_attempts = certificate.attempts;
        assert!(
            certificate.last_error.contains("unreachable.failures.test"),
            "the error names the name: {}",
            certificate.last_error
        );
        if attempt < 3 {
            assert_eq!(
                certificate.status,
                pb::CertificateStatus::Issuing as i32,
                "{certificate:?}"
            );
            assert!(certificate.next_attempt_at > 0, "a retry is scheduled");
            env.clock.advance(wait);
        } else {
            assert_eq!(
                certificate.status,
                pb::CertificateStatus::Failed as i32,
                "{certificate:?}"
            );
            assert_eq!(certificate.next_attempt_at, 0, "no more attempts");
        }
    }
    assert_eq!(seen_attempts, 3);
    // The failed orders' tokens are no longer answered.
    let store = &env.embedded.as_ref().unwrap().store;
    let challenges = store
        .list_challenges(&created.organization_id, &created.id)
        .await
        .unwrap();
    assert_eq!(
        challenges.len(),
        3,
        "one challenge per order: {challenges:?}"
    );
    for challenge in &challenges {
        assert_eq!(challenge.status, "invalid");
        assert_eq!(
            store
                .http01_key_authorization(&challenge.token)
                .await
                .unwrap(),
            None
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn challenges_close_after_validation_and_certificates_expire() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, _) = env.organization("expiry").await;
    let mut no_renewal = request(&["expiry.test"], pb::KeyType::EcdsaP256);
    no_renewal.auto_renew = Some(false);
    let created = client
        .create_certificate(no_renewal)
        .await
        .unwrap()
        .into_inner();
    let issued = wait_for(&mut client, &created.id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();

    // The responder no longer answers the tokens of a finished order.
    let store = &env.embedded.as_ref().unwrap().store;
    let challenges = store
        .list_challenges(&created.organization_id, &created.id)
        .await
        .unwrap();
    assert!(!challenges.is_empty());
    for challenge in &challenges {
        assert_eq!(challenge.status, "valid");
        assert_eq!(
            store
                .http01_key_authorization(&challenge.token)
                .await
                .unwrap(),
            None
        );
    }

    // Past its expiry a certificate that is not renewed is `expired`.
    let version = issued.current.unwrap();
    let now_s = env.clock_now_ms() / 1000;
    env.clock
        .set_offset_ms((version.not_after - now_s + 60) * 1000);
    let expired = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(10),
        |certificate| certificate.status == pb::CertificateStatus::Expired as i32,
    )
    .await
    .unwrap();
    assert_eq!(expired.current.unwrap().version, 1, "not renewed");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_failing_near_expiry_warns_before_its_back_off_runs_past_it() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, _) = env.organization("near-expiry").await;
    let created = client
        .create_certificate(request(&["late.failures.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();
    let issued = wait_for(&mut client, &created.id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    let log = certfleet_e2e::EventLog::watch(&mut client).await;
    // From now on the CA cannot reach the name; the clock goes to half a
    // minute before expiry, so the one-minute back-off ends after it.
    env.pebble
        .add_a_record("late.failures.test", Ipv4Addr::new(127, 0, 0, 2))
        .await
        .unwrap();
    let not_after_ms = issued.current.unwrap().not_after * 1000;
    env.clock.set_offset_ms(
        not_after_ms - 30_000 - certfleet_core::Clock::now_ms(&certfleet_core::SystemClock),
    );
    let failed = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(30),
        |certificate| certificate.attempts >= 1,
    )
    .await
    .unwrap();
    assert!(failed.next_attempt_at * 1000 > not_after_ms, "{failed:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let warning = loop {
        let found = log
            .events()
            .into_iter()
            // (Besides the scheduler's "1 day left" warning.)
            .find(|event| {
                event.r#type == pb::EventType::Expiring as i32 && event.reason == "renewal failing"
            });
        if let Some(found) = found {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no renewal failing event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(warning.certificate_id, created.id);
    assert_eq!(warning.reason, "renewal failing");
    assert!(
        warning.error.contains("is after the certificate expires"),
        "{}",
        warning.error
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_whose_names_left_stops_renewing_after_seven_days_and_says_so() {
    use certfleet_e2e::certfleet_testkit::TcpProxy;

    // The self-check reaches the responder through a link the test can cut,
    // as if the names were pointed at another platform.
    let link = std::sync::Arc::new(std::sync::Mutex::new(None::<TcpProxy>));
    let slot = link.clone();
    let env = TestEnv::start_with(PebbleOptions::default(), |config| {
        let responder = config.self_check_addr.unwrap();
        let proxy = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(TcpProxy::start(responder))
        })
        .unwrap();
        config.self_check_addr = Some(proxy.address());
        config.self_check_timeout = Duration::from_secs(1);
        *slot.lock().unwrap() = Some(proxy);
    })
    .await
    .unwrap();
    let (mut client, _) = env.organization("orphan").await;
    let created = client
        .create_certificate(request(
            &["gone.failures.test", "www.gone.failures.test"],
            pb::KeyType::EcdsaP256,
        ))
        .await
        .unwrap()
        .into_inner();
    wait_for(&mut client, &created.id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    link.lock().unwrap().as_ref().unwrap().cut();
    client
        .renew_certificate(pb::RenewCertificateRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap();
    let first = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(30),
        |certificate| certificate.attempts >= 1,
    )
    .await
    .unwrap();
    assert!(
        first
            .last_error
            .contains("every name of the certificate failed"),
        "{}",
        first.last_error
    );
    assert!(
        !first.last_error.starts_with("stopped renewing"),
        "one failed week is not enough"
    );

    // Eight days of failing self-checks later, renewal stops.
    env.clock.advance(Duration::from_secs(8 * 86_400));
    let stopped = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(30),
        |certificate| certificate.last_error.starts_with("stopped renewing"),
    )
    .await
    .unwrap();
    assert!(
        stopped
            .last_error
            .starts_with("stopped renewing: the HTTP-01 self-check has failed for every name"),
        "{}",
        stopped.last_error
    );
    assert_eq!(stopped.status, pb::CertificateStatus::Valid as i32);
    assert_eq!(stopped.next_attempt_at, 0);
    assert_eq!(stopped.renew_at, 0, "nothing schedules it any more");
    assert!(
        stopped.renew_reason.contains("orphan"),
        "{}",
        stopped.renew_reason
    );
    let attempts = stopped.attempts;
    // Nothing more is tried.
    env.clock.advance(Duration::from_secs(2 * 86_400));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = wait_for(&mut client, &created.id, Duration::from_secs(1), |_| true)
        .await
        .unwrap();
    assert_eq!(later.attempts, attempts);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_the_ca_does_not_offer_fails_before_ordering_and_a_bad_name_is_refused() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, _) = env.organization("profiles").await;
    let mut asked = request(&["profile.failures.test"], pb::KeyType::EcdsaP256);
    asked.profile = "shortlived".to_owned();
    let created = client.create_certificate(asked).await.unwrap().into_inner();
    assert_eq!(created.profile, "shortlived");
    let failed = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(30),
        |certificate| certificate.status == pb::CertificateStatus::Failed as i32,
    )
    .await
    .unwrap();
    assert!(
        failed.last_error.contains(
            "asks for the ACME profile \"shortlived\", which default does not offer (offered: none)"
        ),
        "{}",
        failed.last_error
    );
    assert_eq!(failed.attempts, 1, "final at once");
    let mut bad = request(&["bad-profile.failures.test"], pb::KeyType::EcdsaP256);
    bad.profile = "short lived".to_owned();
    let refused = client.create_certificate(bad).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("profile"),
        "{}",
        refused.message()
    );
    env.stop().await;
}
