//! After a full run (issue, renew, download, revoke, delete), no private key is
//! in plaintext in the database files, the archive's copies, the logs or the
//! event stream.

use std::net::SocketAddr;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions};
use certfleet_e2e::{DevProcess, bundle, is_valid, organization, request, wait_for};
use certfleet_proto::v1::{
    self as pb, DeleteCertificateRequest, RenewCertificateRequest, RevokeCertificateRequest,
};

use crate::leaks::leak_in;

/// Every file under `dir` whose name ends with `suffix`, recursively.
fn files_named(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_named(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn no_private_key_in_plaintext_anywhere() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
    let mut process = DevProcess::spawn_on_free_port(&pebble, &data_dir, http01, "certfleet.log")
        .await
        .unwrap();
    let grpc = process.grpc;
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let (write, bundle_token) = organization(grpc, &admin, "secrets").await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    let mut bundle_client = certfleet_e2e::certificates(grpc, &bundle_token).await;

    // Record every event the organization's watchers see.
    let log = certfleet_e2e::EventLog::watch(&mut client).await;

    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for (name, key_type) in [
        ("one.secrets.test", pb::KeyType::EcdsaP256),
        ("two.secrets.test", pb::KeyType::Rsa2048),
    ] {
        let created = client
            .create_certificate(request(&[name], key_type))
            .await
            .unwrap()
            .into_inner();
        wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
            .await
            .unwrap();
        keys.push(
            bundle(&mut bundle_client, &created.id)
                .await
                .unwrap()
                .private_key_pem,
        );
        ids.push(created.id);
    }
    client
        .renew_certificate(RenewCertificateRequest { id: ids[0].clone() })
        .await
        .unwrap();
    wait_for(
        &mut client,
        &ids[0],
        Duration::from_secs(60),
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
    keys.push(
        bundle(&mut bundle_client, &ids[0])
            .await
            .unwrap()
            .private_key_pem,
    );
    client
        .revoke_certificate(RevokeCertificateRequest {
            id: ids[1].clone(),
            reason: pb::RevocationReason::Superseded as i32,
        })
        .await
        .unwrap();
    wait_for(
        &mut client,
        &ids[1],
        Duration::from_secs(30),
        |certificate| certificate.status == pb::CertificateStatus::Revoked as i32,
    )
    .await
    .unwrap();
    // The archive's copies (`<data-dir>/backups`) of all three versions,
    // before one certificate is deleted (deleted ones are not copied).
    let backups = data_dir.join("backups");
    let started = std::time::Instant::now();
    while files_named(&backups, "privkey.enc").len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no archive copies in {}: {}",
            backups.display(),
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client
        .delete_certificate(DeleteCertificateRequest { id: ids[0].clone() })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(process.terminate().success(), "{}", process.log());
    log.stop();

    let events = log.events();
    let kinds: Vec<i32> = events.iter().map(|event| event.r#type).collect();
    for expected in [
        pb::EventType::Requested,
        pb::EventType::Issued,
        pb::EventType::Renewed,
        pb::EventType::Revoked,
        pb::EventType::Deleted,
    ] {
        assert!(
            kinds.contains(&(expected as i32)),
            "no {expected:?} event in {events:?}"
        );
    }
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("events".to_owned(), format!("{events:?}").into_bytes()),
        ("log".to_owned(), std::fs::read(&process.log_path).unwrap()),
    ];
    assert!(
        places[1].1.len() > 1000,
        "the debug log should not be empty"
    );
    // Every file of the data dir but the master key: the database, its WAL,
    // the archive's copies.
    for path in files_named(&data_dir, "") {
        let name = path.strip_prefix(&data_dir).unwrap().display().to_string();
        if name != "master.key" {
            places.push((name, std::fs::read(&path).unwrap()));
        }
    }
    assert!(places.iter().any(|(name, _)| name == "certfleet.db"));
    assert!(
        places
            .iter()
            .filter(|(name, _)| name.starts_with("backups/") && name.ends_with("/privkey.enc"))
            .count()
            == 3
    );
    assert_eq!(keys.len(), 3);
    for (place, contents) in &places {
        if let Some(what) = leak_in(contents, &keys) {
            panic!("{what} in {place}");
        }
    }
}
