//! The S3 provider against moto's server: round trip over paginated lists,
//! idempotent puts, missing, altered and incomplete copies reported with the
//! object named, a missing bucket refused and an unreachable endpoint
//! reported as transient.

#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod common;

use certfleet_archive::{Archive, ArchiveConfig, ArchiveError, CopyRef, S3Config};
use certfleet_testkit::Moto;
use common::sample;
use zeroize::Zeroizing;

const BUCKET: &str = "certfleet-archive";
const PREFIX: &str = "prod/certs";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn config(endpoint_url: String, bucket: &str, prefix: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint_url: Some(endpoint_url),
        path_style: true,
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: Zeroizing::new(SECRET_ACCESS_KEY.to_owned()),
        session_token: None,
    }
}

/// Moto with the bucket, and an archive under `PREFIX` in it.
async fn start() -> (Moto, Archive) {
    let moto = Moto::start().await.unwrap();
    moto.create_bucket(BUCKET).await.unwrap();
    let archive = Archive::open(&ArchiveConfig::S3(config(
        moto.endpoint_url(),
        BUCKET,
        PREFIX,
    )))
    .unwrap();
    (moto, archive)
}

fn key(copy: &CopyRef, file: &str) -> String {
    format!("{PREFIX}/{copy}/{file}")
}

#[tokio::test]
async fn round_trip_over_paginated_lists() {
    let (moto, archive) = start().await;
    // Three copies are fifteen objects: eight pages of two keys.
    let archive = archive.with_list_page_size(2);
    let copies = [
        sample("org-b", "cert-1", "0A1B"),
        sample("org-a", "cert-9", "FF00"),
        sample("org-a", "cert-9", "FF01"),
    ];
    for copy in &copies {
        let location = archive.put(copy).await.unwrap();
        assert_eq!(
            location,
            format!("s3://{BUCKET}/{PREFIX}/{}/", copy.copy_ref().unwrap())
        );
    }
    // Objects outside the prefix or of another shape are not copies.
    moto.put_object(BUCKET, "other/org-x/cert-x/01/cert.pem", b"x")
        .await
        .unwrap();
    moto.put_object(BUCKET, &format!("{PREFIX}/README"), b"x")
        .await
        .unwrap();

    let listed = archive.list().await.unwrap();
    let mut expected: Vec<CopyRef> = copies.iter().map(|c| c.copy_ref().unwrap()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for copy in &copies {
        assert_eq!(archive.get(&copy.copy_ref().unwrap()).await.unwrap(), *copy);
    }

    let at = copies[0].copy_ref().unwrap();
    let keys = moto.list_objects(BUCKET).await.unwrap();
    assert_eq!(keys.len(), 17, "{keys:?}");
    for file in certfleet_archive::FILES {
        assert!(keys.contains(&key(&at, file)), "{file} in {keys:?}");
    }
    let stored = moto
        .get_object(BUCKET, &key(&at, "privkey.enc"))
        .await
        .unwrap();
    assert_eq!(stored, copies[0].key_sealed);
    let metadata: serde_json::Value = serde_json::from_slice(
        &moto
            .get_object(BUCKET, &key(&at, "metadata.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["format"], 1);
    assert_eq!(metadata["version"]["serial"], "0A1B");
    assert!(!archive.describe().contains(SECRET_ACCESS_KEY));
}

#[tokio::test]
async fn an_empty_prefix_stores_at_the_bucket_root() {
    let moto = Moto::start().await.unwrap();
    moto.create_bucket("certfleet-root").await.unwrap();
    let archive = Archive::open(&ArchiveConfig::S3(config(
        moto.endpoint_url(),
        "certfleet-root",
        "",
    )))
    .unwrap();
    let copy = sample("org-1", "cert-1", "0A1B");
    assert_eq!(
        archive.put(&copy).await.unwrap(),
        "s3://certfleet-root/org-1/cert-1/0A1B/"
    );
    let keys = moto.list_objects("certfleet-root").await.unwrap();
    assert!(
        keys.contains(&"org-1/cert-1/0A1B/metadata.json".to_owned()),
        "{keys:?}"
    );
    assert_eq!(archive.list().await.unwrap(), [copy.copy_ref().unwrap()]);
    assert_eq!(archive.get(&copy.copy_ref().unwrap()).await.unwrap(), copy);
}

#[tokio::test]
async fn put_is_idempotent_and_replaces_a_changed_version() {
    let (moto, archive) = start().await;
    let mut copy = sample("org-1", "cert-1", "0A1B");
    let location = archive.put(&copy).await.unwrap();
    assert_eq!(archive.put(&copy).await.unwrap(), location);
    let at = copy.copy_ref().unwrap();
    assert_eq!(archive.list().await.unwrap(), std::slice::from_ref(&at));
    assert_eq!(moto.list_objects(BUCKET).await.unwrap().len(), 5);

    copy.version.revoked_at = Some(1_701_000_000_000);
    copy.version.revocation_reason = Some("superseded".to_owned());
    archive.put(&copy).await.unwrap();
    assert_eq!(archive.get(&at).await.unwrap(), copy);
    assert_eq!(moto.list_objects(BUCKET).await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_deleted_object_is_missing_and_named() {
    let (moto, archive) = start().await;
    let copy = sample("org-1", "cert-1", "0A1B");
    archive.put(&copy).await.unwrap();
    let at = copy.copy_ref().unwrap();
    moto.delete_object(BUCKET, &key(&at, "chain.pem"))
        .await
        .unwrap();

    let error = archive.get(&at).await.unwrap_err();
    let expected = format!("s3://{BUCKET}/{PREFIX}/org-1/cert-1/0A1B/chain.pem");
    assert!(
        matches!(&error, ArchiveError::Missing { path } if *path == expected),
        "{error}"
    );
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_changed_byte_is_corrupt_and_named() {
    let (moto, archive) = start().await;
    let copy = sample("org-1", "cert-1", "0A1B");
    archive.put(&copy).await.unwrap();
    let at = copy.copy_ref().unwrap();
    let object = key(&at, "privkey.enc");
    let mut bytes = moto.get_object(BUCKET, &object).await.unwrap();
    bytes[2] ^= 0x01;
    moto.put_object(BUCKET, &object, &bytes).await.unwrap();

    let error = archive.get(&at).await.unwrap_err();
    let expected = format!("s3://{BUCKET}/{object}");
    assert!(
        matches!(&error, ArchiveError::Corrupt { path, reason } if *path == expected && reason.contains("SHA-256")),
        "{error}"
    );
}

#[tokio::test]
async fn without_metadata_a_copy_is_listed_but_not_readable() {
    let (moto, archive) = start().await;
    let copy = sample("org-1", "cert-1", "0A1B");
    archive.put(&copy).await.unwrap();
    let at = copy.copy_ref().unwrap();
    moto.delete_object(BUCKET, &key(&at, "metadata.json"))
        .await
        .unwrap();

    assert_eq!(archive.list().await.unwrap(), std::slice::from_ref(&at));
    let error = archive.get(&at).await.unwrap_err();
    let expected = format!("s3://{BUCKET}/{}", key(&at, "metadata.json"));
    assert!(
        matches!(&error, ArchiveError::Missing { path } if *path == expected),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_bucket_is_refused_and_named() {
    let moto = Moto::start().await.unwrap();
    let archive = Archive::open(&ArchiveConfig::S3(config(
        moto.endpoint_url(),
        "certfleet-no-such-bucket",
        PREFIX,
    )))
    .unwrap();
    let put = archive
        .put(&sample("org-1", "cert-1", "0A1B"))
        .await
        .unwrap_err();
    let list = archive.list().await.unwrap_err();
    for error in [put, list] {
        assert!(matches!(error, ArchiveError::Refused(_)), "{error}");
        assert!(!error.is_transient());
        assert!(
            error
                .to_string()
                .contains("the bucket certfleet-no-such-bucket does not exist"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    // Nothing listens on a port that was just free.
    let endpoint_url = format!("http://127.0.0.1:{}", certfleet_testkit::free_port());
    let archive = Archive::open(&ArchiveConfig::S3(config(endpoint_url, BUCKET, PREFIX))).unwrap();
    let put = archive
        .put(&sample("org-1", "cert-1", "0A1B"))
        .await
        .unwrap_err();
    let list = archive.list().await.unwrap_err();
    let get = archive
        .get(&CopyRef::new("org-1", "cert-1", "0A1B").unwrap())
        .await
        .unwrap_err();
    for error in [put, list, get] {
        assert!(matches!(error, ArchiveError::Unavailable(_)), "{error}");
        assert!(error.is_transient());
        assert!(
            error.to_string().contains("cannot reach the storage"),
            "{error}"
        );
        assert!(!error.to_string().contains(SECRET_ACCESS_KEY), "{error}");
    }
}
