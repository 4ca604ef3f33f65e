//! Expiry warnings: a certificate whose current version nears its expiry,
//! with no newer version, gets one `expiring` event at 7, 3 and 1 days left,
//! each once; one whose clock jumps past several thresholds gets only the
//! nearest.

use std::time::Duration;

use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_e2e::{EventLog, TestEnv, is_valid, request, wait_for};
use certfleet_proto::v1::{self as pb};

const DAY_MS: i64 = 86_400_000;

fn expiring(log: &EventLog, id: &str) -> Vec<String> {
    log.events()
        .iter()
        .filter(|event| {
            event.r#type == pb::EventType::Expiring as i32 && event.certificate_id == id
        })
        .map(|event| event.reason.clone())
        .collect()
}

async fn until(events: &EventLog, id: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while expiring(events, id).len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} expiring events for {id}; got {:?}",
            expiring(events, id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_warning_per_threshold_and_only_the_nearest_after_a_jump() {
    let options = PebbleOptions {
        certificate_validity: Some(Duration::from_secs(30 * 86_400)),
        ..PebbleOptions::default()
    };
    let env = TestEnv::start(options).await.unwrap();
    let (mut client, _) = env.organization("expiry").await;
    let events = EventLog::watch(&mut client).await;
    // Not renewed automatically, so no newer version ends the warnings.
    let create = |name: &str| {
        let mut create = request(&[name], pb::KeyType::EcdsaP256);
        create.auto_renew = Some(false);
        create
    };
    let first = client
        .create_certificate(create("first.expiry.test"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let issued = wait_for(&mut client, &first, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    let not_after_ms = issued.current.as_ref().unwrap().not_after * 1000;
    let move_to = |left_ms: i64| {
        env.clock.set_offset_ms(0);
        let offset = not_after_ms - left_ms - env.clock_now_ms();
        env.clock.set_offset_ms(offset);
    };

    move_to(6 * DAY_MS + DAY_MS / 2);
    until(&events, &first, 1).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        expiring(&events, &first),
        ["7 days left"],
        "once per threshold"
    );

    move_to(2 * DAY_MS + DAY_MS / 2);
    until(&events, &first, 2).await;

    // A second certificate, issued now: its expiry is about 2.5 days after
    // the first's on the certfleet clock.
    let second = client
        .create_certificate(create("second.expiry.test"))
        .await
        .unwrap()
        .into_inner()
        .id;
    wait_for(&mut client, &second, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    assert!(expiring(&events, &second).is_empty());

    // Half a day before the first expires the second has under a day too:
    // the first gets its third warning, the second only the nearest one.
    move_to(DAY_MS / 2);
    until(&events, &first, 3).await;
    until(&events, &second, 1).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        expiring(&events, &first),
        ["7 days left", "3 days left", "1 day left"]
    );
    assert_eq!(expiring(&events, &second), ["1 day left"]);
    let warning = events
        .events()
        .into_iter()
        .find(|event| event.r#type == pb::EventType::Expiring as i32)
        .unwrap();
    assert_eq!(warning.not_after * 1000, not_after_ms);
    assert_eq!(warning.version, 1);
    env.stop().await;
}
