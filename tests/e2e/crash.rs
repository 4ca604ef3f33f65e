//! A SIGKILL while an order is in flight: the restarted process finishes the
//! same ACME order instead of placing a second one.

use std::net::SocketAddr;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions, free_port};
use certfleet_e2e::{DevProcess, is_valid, organization, request, wait_for};
use certfleet_proto::v1 as pb;
use certfleet_store::Store;

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_order_is_resumed_after_restart() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    // The self-check first points at a closed port, so the order waits after it was placed.
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut first = DevProcess::spawn_on_free_port(&pebble, &data_dir, nowhere, "first.log")
        .await
        .unwrap();
    let grpc = first.grpc;
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let (write, _) = organization(grpc, &admin, "crash").await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    let created = client
        .create_certificate(request(
            &["crash.test", "www.crash.test"],
            pb::KeyType::EcdsaP256,
        ))
        .await
        .unwrap()
        .into_inner();

    // Read the saved order URL straight from the database the process uses.
    let store = Store::connect(&data_dir.join("certfleet.db").to_string_lossy())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let order_url = loop {
        let row = store
            .get_certificate(&created.organization_id, &created.id)
            .await
            .unwrap()
            .unwrap();
        if let Some(url) = row.pending_order_url {
            assert_eq!(row.status, "issuing");
            break url;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no order placed: {}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let it reach the self-check loop, then pull the plug.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill();
    assert_eq!(
        first.log().matches("order placed").count(),
        1,
        "{}",
        first.log()
    );
    drop(store);

    let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
    let second = DevProcess::spawn(&pebble, &data_dir, grpc, http01, "second.log")
        .await
        .unwrap();
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    let issued = wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", second.log()));
    let version = issued.current.unwrap();
    assert_eq!(
        version.order_url, order_url,
        "the certificate must come from the first order"
    );
    let log = second.log();
    assert!(log.contains("resuming order"), "{log}");
    assert!(
        !log.contains("order placed"),
        "a second order was placed: {log}"
    );
    // Pebble's own account of it: one order in its database, ever.
    let pebble_log = std::fs::read_to_string(pebble.state_dir().join("pebble.log")).unwrap();
    assert_eq!(pebble_log.matches("Added order").count(), 1, "{pebble_log}");
}
