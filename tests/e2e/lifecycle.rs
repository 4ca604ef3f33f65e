//! Renewal (forced and by time) and revocation against Pebble.

use std::time::Duration;

use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_e2e::{TestEnv, bundle, is_valid, request, wait_for};
use certfleet_proto::v1::{self as pb, RenewCertificateRequest, RevokeCertificateRequest};

#[tokio::test(flavor = "multi_thread")]
async fn forced_and_scheduled_renewals_make_new_versions_with_new_keys() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, mut bundle_client) = env.organization("renewal").await;
    let created = client
        .create_certificate(request(
            &["renewal.test", "www.renewal.test"],
            pb::KeyType::EcdsaP256,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = wait_for(&mut client, &created.id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    let first_version = first.current.clone().unwrap();
    let first_key = bundle(&mut bundle_client, &created.id)
        .await
        .unwrap()
        .private_key_pem;

    // Nothing is due yet: a few scheduler passes later it is still version 1.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let unchanged = wait_for(&mut client, &created.id, Duration::from_secs(1), is_valid)
        .await
        .unwrap();
    assert_eq!(unchanged.current.unwrap().version, 1);

    client
        .renew_certificate(RenewCertificateRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap();
    let forced = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(30),
        |certificate| {
            is_valid(certificate)
                && certificate
                    .current
                    .as_ref()
                    .is_some_and(|version| version.version == 2)
        },
    )
    .await
    .unwrap();
    let forced_version = forced.current.clone().unwrap();
    assert_ne!(forced_version.serial, first_version.serial);
    let forced_key = bundle(&mut bundle_client, &created.id)
        .await
        .unwrap()
        .private_key_pem;
    assert_ne!(forced_key, first_key, "a renewal must use a new key");

    // Move the clock to where two thirds of the lifetime have passed.
    let lifetime_ms = (forced_version.not_after - forced_version.not_before) * 1000;
    let renew_in_ms = forced.renew_at * 1000 - env.clock_now_ms();
    assert!(
        renew_in_ms > lifetime_ms / 2,
        "renewal is planned about a third before expiry"
    );
    env.clock.set_offset_ms(renew_in_ms + 1_000);
    let scheduled = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(30),
        |certificate| {
            is_valid(certificate)
                && certificate
                    .current
                    .as_ref()
                    .is_some_and(|version| version.version >= 3)
        },
    )
    .await
    .unwrap();
    // Back to real time, so the fresh certificates are not due again at once.
    env.clock.set_offset_ms(0);
    let scheduled_version = scheduled.current.unwrap();
    assert_ne!(scheduled_version.serial, forced_version.serial);
    let scheduled_key = bundle(&mut bundle_client, &created.id)
        .await
        .unwrap()
        .private_key_pem;
    assert_ne!(scheduled_key, forced_key);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_is_reported_by_pebble_with_the_reason() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, _) = env.organization("revocation").await;
    let created = client
        .create_certificate(request(&["revoke.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();
    let issued = wait_for(&mut client, &created.id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    let serial = issued.current.unwrap().serial;
    let before = env.pebble.cert_status(&serial).await.unwrap();
    assert_eq!(before["Status"], "Valid");

    client
        .revoke_certificate(RevokeCertificateRequest {
            id: created.id.clone(),
            reason: pb::RevocationReason::KeyCompromise as i32,
        })
        .await
        .unwrap();
    let revoked = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(30),
        |certificate| certificate.status == pb::CertificateStatus::Revoked as i32,
    )
    .await
    .unwrap();
    assert!(!revoked.auto_renew, "a revoked certificate is not renewed");
    assert_eq!(
        revoked.current.unwrap().revocation_reason,
        pb::RevocationReason::KeyCompromise as i32
    );
    let after = env.pebble.cert_status(&serial).await.unwrap();
    assert_eq!(after["Status"], "Revoked");
    assert_eq!(after["Reason"], 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_the_ca_cannot_take_is_reported_and_the_certificate_stays_valid() {
    let mut env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, _) = env.organization("unrevoked").await;
    let created = client
        .create_certificate(request(&["unrevoked.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();
    wait_for(&mut client, &created.id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    env.pebble.kill().await.unwrap();
    // The CLI's --wait learns of the failure from the event stream and exits 1.
    let write_token = env.write_token("unrevoked").await;
    let output = tokio::process::Command::new(certfleet_e2e::certfleet_binary())
        .args([
            "cert",
            "revoke",
            &created.id,
            "--reason",
            "superseded",
            "--wait",
            "--timeout",
            "90",
        ])
        .env("CERTFLEET_ENDPOINT", format!("http://{}", env.grpc))
        .env("CERTFLEET_TOKEN", write_token)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("revocation failed"), "{stderr}");
    let noted = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(5),
        |certificate| certificate.last_error.starts_with("revocation failed"),
    )
    .await
    .unwrap();
    assert_eq!(noted.status, pb::CertificateStatus::Valid as i32);
    assert!(noted.auto_renew, "still managed");
    assert!(
        noted.last_error.contains("certfleet cert revoke"),
        "{}",
        noted.last_error
    );
    env.stop().await;
}
