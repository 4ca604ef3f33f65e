//! A SIGKILL while an order is in flight: the restarted process finishes the
//! same ACME order instead of placing a second one.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions, free_port};
use certfleet_e2e::{DevProcess, is_valid, organization, request, wait_for};
use certfleet_proto::v1 as pb;
use certfleet_store::Store;

/// A `certfleet dev` process killed while its order waits: its grpc address,
/// write token, the certificate and the saved order URL.
struct Interrupted {
    grpc: SocketAddr,
    write: String,
    created: pb::Certificate,
    order_url: String,
}

/// Starts `certfleet dev` with the self-check pointing at a closed port (so the
/// order waits after it was placed), requests a certificate, and SIGKILLs the
/// process once its order URL is saved.
async fn interrupt_an_order(pebble: &Pebble, data_dir: &Path) -> Interrupted {
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut first = DevProcess::spawn_on_free_port(pebble, data_dir, nowhere, "first.log")
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
    let store = Store::connect(&database(data_dir)).await.unwrap();
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
    Interrupted {
        grpc,
        write,
        created,
        order_url,
    }
}

fn database(data_dir: &Path) -> String {
    data_dir.join("certfleet.db").to_string_lossy().into_owned()
}

/// Restarts `certfleet dev` on the same data and address with a working
/// self-check; waits until the certificate is valid and checks it came from
/// `order_url`, the only order Pebble ever created.
async fn finish_after_restart(
    pebble: &Pebble,
    data_dir: &Path,
    interrupted: &Interrupted,
) -> String {
    let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
    let second = DevProcess::spawn(pebble, data_dir, interrupted.grpc, http01, "second.log")
        .await
        .unwrap();
    let mut client = certfleet_e2e::certificates(interrupted.grpc, &interrupted.write).await;
    let issued = wait_for(
        &mut client,
        &interrupted.created.id,
        Duration::from_secs(60),
        is_valid,
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", second.log()));
    let version = issued.current.unwrap();
    assert_eq!(
        version.order_url, interrupted.order_url,
        "the certificate must come from the first order"
    );
    let log = second.log();
    assert!(
        !log.contains("order placed"),
        "a second order was placed: {log}"
    );
    // Pebble's own account of it: one order in its database, ever.
    let pebble_log = std::fs::read_to_string(pebble.state_dir().join("pebble.log")).unwrap();
    assert_eq!(pebble_log.matches("Added order").count(), 1, "{pebble_log}");
    log
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_order_is_resumed_after_restart() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let interrupted = interrupt_an_order(&pebble, &data_dir).await;
    let log = finish_after_restart(&pebble, &data_dir, &interrupted).await;
    assert!(log.contains("resuming order"), "{log}");
}

/// Killed after the CA created the order but before its URL was saved: the
/// database never heard of the order. The next attempt finds it in the
/// account's orders list (Pebble offers one) and finishes it instead of
/// placing a second order.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_the_database_never_saved_is_found_in_the_orders_list() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let interrupted = interrupt_an_order(&pebble, &data_dir).await;

    // Turn the row back to the moment between the CA's answer and the save:
    // no order URL, the note that an order was being placed.
    let store = Store::connect(&database(&data_dir)).await.unwrap();
    let (organization, id) = (
        &interrupted.created.organization_id,
        &interrupted.created.id,
    );
    let now = 1_000;
    let row = store
        .get_certificate(organization, id)
        .await
        .unwrap()
        .unwrap();
    let dead = row.lease_owner.clone().unwrap();
    store.release_all_leases_of(&dead).await.unwrap();
    store
        .acquire_certificate_lease(organization, id, "rewind", now, i64::MAX)
        .await
        .unwrap()
        .unwrap();
    store
        .record_progress(organization, id, "rewind", "issuing", None, now)
        .await
        .unwrap();
    store
        .record_order_attempt(organization, id, "rewind", now)
        .await
        .unwrap();
    store
        .release_certificate_lease(organization, id, "rewind")
        .await
        .unwrap();
    drop(store);

    let log = finish_after_restart(&pebble, &data_dir, &interrupted).await;
    assert!(
        log.contains("resuming the order an interrupted attempt placed but did not save"),
        "{log}"
    );
}
