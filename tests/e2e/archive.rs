//! A copy that cannot be written does not hold issuance up: the certificate
//! is valid at once, the version shows why its copy is missing and when the
//! next attempt is, and once the bucket exists the copy is written on that
//! attempt.

use std::time::Duration;

use certfleet_archive::{ArchiveConfig, S3Config};
use certfleet_e2e::certfleet_testkit::{Moto, PebbleOptions};
use certfleet_e2e::{TestEnv, is_valid, request, wait_for};
use certfleet_proto::v1 as pb;

const BUCKET: &str = "late-bucket";

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_copy_is_shown_retried_and_never_blocks_issuance() {
    let moto = Moto::start().await.unwrap();
    let archive = ArchiveConfig::S3(S3Config {
        bucket: BUCKET.to_owned(),
        prefix: "copies".to_owned(),
        region: "us-east-1".to_owned(),
        endpoint_url: Some(moto.endpoint_url()),
        path_style: true,
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned().into(),
        session_token: None,
    });
    let env = TestEnv::start_with(PebbleOptions::default(), |config| {
        config.archive = Some(archive);
    })
    .await
    .unwrap();
    let (mut client, _) = env.organization("archive").await;
    let created = client
        .create_certificate(request(&["late.archive.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();
    // Valid although the bucket does not exist.
    wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
        .await
        .unwrap();

    // The version shows the failed copy and the next attempt.
    let failed = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(30),
        |certificate| {
            certificate
                .current
                .as_ref()
                .is_some_and(|version| version.backup_attempts >= 1)
        },
    )
    .await
    .unwrap();
    let version = failed.current.unwrap();
    assert!(version.backup_location.is_empty());
    assert!(
        version.backup_error.contains(BUCKET),
        "{}",
        version.backup_error
    );
    assert!(!version.backup_error.contains("wJalrXUtnFEMI"));
    let now = env.clock_now_ms() / 1000;
    assert!(
        version.backup_next_at >= now + 50 && version.backup_next_at <= now + 61,
        "next attempt {} (now {now})",
        version.backup_next_at
    );
    // Not retried before it is due.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = wait_for(&mut client, &created.id, Duration::from_secs(1), is_valid)
        .await
        .unwrap();
    assert_eq!(
        waiting.current.unwrap().backup_attempts,
        version.backup_attempts
    );

    // The bucket appears; at the next attempt the copy is written.
    moto.create_bucket(BUCKET).await.unwrap();
    env.clock.advance(Duration::from_secs(61));
    let copied = wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(30),
        |certificate| {
            certificate
                .current
                .as_ref()
                .is_some_and(|version| !version.backup_location.is_empty())
        },
    )
    .await
    .unwrap();
    let version = copied.current.unwrap();
    assert!(
        version
            .backup_location
            .starts_with(&format!("s3://{BUCKET}/copies/")),
        "{}",
        version.backup_location
    );
    assert!(version.backup_error.is_empty() && version.backup_attempts == 0);
    let objects = moto.list_objects(BUCKET).await.unwrap();
    assert_eq!(
        objects
            .iter()
            .filter(|key| key.ends_with("/privkey.enc"))
            .count(),
        1,
        "{objects:?}"
    );
    env.stop().await;
}
