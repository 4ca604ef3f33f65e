//! Named CAs: when the default CA is down (its port closed), the certificate
//! is issued by the next configured one and says which, and the down CA is
//! skipped for a while instead of being tried again for every certificate.

use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{PebbleOptions, free_port};
use certfleet_e2e::{TestEnv, is_valid, request, wait_for};
use certfleet_proto::v1::{self as pb, RenewCertificateRequest};

#[tokio::test(flavor = "multi_thread")]
async fn with_the_first_ca_down_the_second_issues_and_is_named() {
    let down = format!("https://127.0.0.1:{}/dir", free_port());
    let env = TestEnv::start_with(PebbleOptions::default(), |config| {
        let pebble_url = std::mem::replace(&mut config.ca_directory, down.clone());
        let pebble_root = config.ca_root.take().unwrap();
        config.fallback_cas = vec![format!("backup={pebble_url}")];
        config.fallback_ca_roots = vec![format!("backup={}", pebble_root.display())];
    })
    .await
    .unwrap();
    let (mut client, _) = env.organization("fallback").await;
    let id = client
        .create_certificate(request(&["fallback.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner()
        .id;
    let issued = wait_for(&mut client, &id, Duration::from_secs(60), is_valid)
        .await
        .unwrap();
    let version = issued.current.clone().unwrap();
    assert_eq!(version.issuer, "backup", "{issued:?}");
    assert!(
        version
            .order_url
            .starts_with(&env.pebble.directory_url().replace("/dir", "")),
        "the order is Pebble's: {}",
        version.order_url
    );
    assert_eq!(issued.attempts, 0, "falling back is not a failed attempt");

    // Within a minute the CA found down is skipped at once.
    let renewing_since = std::time::Instant::now();
    client
        .renew_certificate(RenewCertificateRequest { id: id.clone() })
        .await
        .unwrap();
    let renewed = wait_for(&mut client, &id, Duration::from_secs(60), |certificate| {
        is_valid(certificate) && certificate.current.as_ref().is_some_and(|v| v.version == 2)
    })
    .await
    .unwrap();
    assert_eq!(renewed.current.unwrap().issuer, "backup");
    assert!(
        renewing_since.elapsed() < Duration::from_secs(5),
        "the down CA is not tried again at once: {:?}",
        renewing_since.elapsed()
    );
    env.stop().await;
}
