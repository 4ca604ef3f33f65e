//! The distributed mode under faults: 2 api, 3 issuer, 2 scheduler and 1
//! responder processes on a fresh PostgreSQL database, RabbitMQ vhost and
//! Pebble. 300 certificates are requested concurrently over gRPC (through
//! both APIs); while they are issued, one issuer and the active scheduler are
//! SIGKILLed, the vhost's connections are closed once and the issuance queue
//! is purged once. Every certificate still ends valid, from exactly one ACME
//! order, and a durable consumer of `certfleet.events` bound before the run
//! sees every certificate's `issued` event.
//!
//! The admin token is bootstrapped with `certfleet-api --create-admin-token`
//! (migrates the database, prints a new token, exits): the way an operator
//! of the distributed mode gets the first token.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions, free_port};
use certfleet_e2e::{RoleProcess, RoleStack, organization, request};
use certfleet_proto::v1::{self as pb, CertificateEvent, GetCertificateRequest};
use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use prost::Message as _;
use tokio::time::Instant;

const CERTIFICATES: usize = 300;
/// Concurrent gRPC callers creating the certificates, spread over both APIs.
const CALLERS: usize = 16;
const EVENTS_QUEUE: &str = "certfleet-e2e.events";

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// One value from the database (`psql -tA`), trimmed.
fn psql(url: &str, sql: &str) -> String {
    let output = std::process::Command::new("psql")
        .args([url, "-tAXc", sql])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The last segment of an order URL: what Pebble logs as the order id.
fn order_id(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Events of a durable queue bound to `certfleet.events`, by event id.
type Events = Arc<Mutex<HashMap<String, CertificateEvent>>>;

async fn open_amqp(url: &str) -> lapin::Result<(Connection, lapin::Channel)> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// Declares and binds the test's own durable queue; the exchange must exist.
async fn bind_durable_events_queue(url: &str) {
    let (connection, channel) = open_amqp(url).await.unwrap();
    certfleet_e2e::bind_events_queue(&channel, EVENTS_QUEUE)
        .await
        .unwrap();
    connection.close(200, "bound".into()).await.unwrap();
}

/// Consumes the events queue into `events` forever, reconnecting when the
/// connection is closed (the test closes every connection of the vhost once).
/// Returns how many deliveries it received, duplicates included.
async fn consume_events(url: String, events: Events, received: Arc<Mutex<usize>>) {
    loop {
        let consumed = async {
            let (connection, channel) = open_amqp(&url).await?;
            let mut consumer = channel
                .basic_consume(
                    EVENTS_QUEUE.into(),
                    "certfleet-e2e".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery?;
                let event = CertificateEvent::decode(delivery.data.as_slice())
                    .expect("an event body decodes as CertificateEvent");
                *received.lock().unwrap() += 1;
                events.lock().unwrap().insert(event.id.clone(), event);
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            drop(connection);
            lapin::Result::Ok(())
        };
        if let Err(error) = consumed.await {
            eprintln!("events consumer: {error}; reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn all_logs(processes: &[(RoleProcess, SocketAddr)], pebble_log: &Path) -> String {
    let mut logs = certfleet_e2e::all_logs(processes);
    logs.push_str("--- pebble (Added order lines)\n");
    logs.push_str(
        &std::fs::read_to_string(pebble_log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("Added order"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    logs
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_roles_survive_kills_disconnects_and_a_purge() {
    let started = Instant::now();
    let phase = |name: &str| eprintln!("[{:>6.1} s] {name}", started.elapsed().as_secs_f64());
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let pebble_log = pebble.state_dir().join("pebble.log");
    let stack = RoleStack::create(&pebble).await.unwrap();
    let (database, vhost, admin) = (&stack.database, &stack.vhost, &stack.admin_token);

    let http01 = loopback(pebble.http01_port());
    let grpc = [loopback(free_port()), loopback(free_port())];
    let mut processes = Vec::new();
    let mut spawn = |binary: &str, name: &str, args: Vec<String>| {
        processes.push(stack.spawn(binary, name, args).unwrap());
    };
    for (index, address) in grpc.iter().enumerate() {
        spawn(
            "certfleet-api",
            &format!("api-{index}"),
            strings(&["--grpc-listen", &address.to_string()]),
        );
    }
    spawn(
        "certfleet-responder",
        "responder",
        strings(&["--http01-listen", &http01.to_string()]),
    );
    // 4 orders at a time per issuer: Pebble 2.4 deadlocks more often the more
    // new orders arrive at once (see `Pebble::answers_store_reads`).
    for index in 0..3 {
        spawn(
            "certfleet-issuer",
            &format!("issuer-{index}"),
            strings(&[
                "--issuer-concurrency",
                "4",
                "--http01-self-check-addr",
                &http01.to_string(),
            ]),
        );
    }
    for index in 0..2 {
        spawn(
            "certfleet-scheduler",
            &format!("scheduler-{index}"),
            strings(&["--scheduler-interval", "1"]),
        );
    }
    for (process, health) in &mut processes {
        process.wait_healthy(*health).await.unwrap();
    }
    phase("8 processes healthy");
    // The test's own durable consumer, bound before any certificate exists
    // (the processes have declared the exchange by now).
    bind_durable_events_queue(&vhost.amqp_url()).await;
    let events: Events = Arc::default();
    let received = Arc::new(Mutex::new(0_usize));
    let consumer = tokio::spawn(consume_events(
        vhost.amqp_url(),
        events.clone(),
        received.clone(),
    ));

    let (write, _) = organization(grpc[0], admin, "distributed").await;
    let clients = [
        certfleet_e2e::certificates(grpc[0], &write).await,
        certfleet_e2e::certificates(grpc[1], &write).await,
    ];
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let mut client = clients[caller % 2].clone();
        callers.spawn(async move {
            let mut ids = Vec::new();
            for index in (caller..CERTIFICATES).step_by(CALLERS) {
                let name = format!("host{index}.distributed.test");
                ids.push(
                    client
                        .create_certificate(request(&[&name], pb::KeyType::EcdsaP256))
                        .await
                        .unwrap()
                        .into_inner()
                        .id,
                );
            }
            ids
        });
    }
    let ids: Vec<String> = callers.join_all().await.into_iter().flatten().collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), CERTIFICATES);
    phase("300 certificates requested");

    // Fault 1: SIGKILL an issuer while it holds certificate leases: the
    // owner of a lease is an instance id, which only its own process logs.
    let url = database.url();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (issuer, owner) = loop {
        let owners = psql(
            &url,
            "SELECT lease_owner, count(*) FROM certificates \
             WHERE lease_owner LIKE 'issuer-%' GROUP BY lease_owner",
        );
        let found = owners.lines().find_map(|line| {
            let (owner, held) = line.split_once('|')?;
            let issuer = processes.iter().position(|(process, _)| {
                process.name.starts_with("issuer-") && process.log().contains(owner)
            })?;
            (held != "0").then(|| (issuer, owner.to_owned()))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no issuer ever held a lease: {}",
            all_logs(&processes, &pebble_log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    processes[issuer].0.kill();
    // What it held when it died: nobody else touches these leases before
    // they run out.
    let held: usize = psql(
        &url,
        &format!("SELECT count(*) FROM certificates WHERE lease_owner = '{owner}'"),
    )
    .parse()
    .unwrap();
    phase(&format!(
        "{} SIGKILLed holding {held} leases",
        processes[issuer].0.name
    ));

    // Fault 2: every connection of the vhost is closed once.
    vhost.close_connections().await.unwrap();
    phase("vhost connections closed");

    // Fault 3: the issuance queue is purged once, while it still has jobs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (connection, channel) = open_amqp(&vhost.amqp_url()).await.unwrap();
    let purged = channel
        .queue_purge("certfleet.issue".into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    connection.close(200, "purged".into()).await.unwrap();
    let valid_at_purge = psql(
        &url,
        "SELECT count(*) FROM certificates WHERE status = 'valid'",
    );
    phase(&format!(
        "certfleet.issue purged: {purged} jobs dropped, {valid_at_purge} certificates valid"
    ));

    // Fault 4: SIGKILL the active scheduler (the owner of the "scheduler"
    // lease, an instance id that appears in exactly one scheduler's log).
    let leader = psql(&url, "SELECT owner FROM leases WHERE name = 'scheduler'");
    assert!(!leader.is_empty(), "no scheduler leads");
    let active = processes
        .iter()
        .position(|(process, _)| {
            process.name.starts_with("scheduler-") && process.log().contains(&leader)
        })
        .unwrap_or_else(|| panic!("no scheduler logged the leader id {leader}"));
    processes[active].0.kill();
    let killed_at = Instant::now();
    phase(&format!("active {} SIGKILLed", processes[active].0.name));
    let killed = [issuer, active];

    // Every certificate ends valid. The standby takes over within a lease
    // (15 s); the killed issuer's leases (30 s) run out; the purged and lost
    // jobs are queued again by the reconcile pass once their
    // next_attempt_at passes (at most 30 s after they were last queued).
    let mut check = clients[1].clone();
    let mut remaining: HashSet<String> = ids.iter().cloned().collect();
    let mut took_over = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !remaining.is_empty() {
        if took_over.is_none() {
            let owner = psql(&url, "SELECT owner FROM leases WHERE name = 'scheduler'");
            if owner != leader && !owner.is_empty() {
                took_over = Some(killed_at.elapsed());
                phase(&format!(
                    "the standby scheduler leads after {:.1} s",
                    killed_at.elapsed().as_secs_f64()
                ));
            }
        }
        for id in remaining.clone() {
            let certificate = check
                .get_certificate(GetCertificateRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_ne!(
                certificate.status,
                pb::CertificateStatus::Failed as i32,
                "{id} failed: {}\n{}",
                certificate.last_error,
                all_logs(&processes, &pebble_log)
            );
            if certificate.status == pb::CertificateStatus::Valid as i32 {
                remaining.remove(&id);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} certificates never became valid (Pebble answers store reads: {}; \
             Pebble 2.4 can deadlock under concurrent new orders): {}",
            remaining.len(),
            pebble.answers_store_reads(),
            all_logs(&processes, &pebble_log)
        );
        if !remaining.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    phase("all 300 valid");
    let took_over = took_over.expect("the standby scheduler took over");
    assert!(
        took_over < Duration::from_secs(30),
        "took over after {took_over:?}"
    );

    // One version per certificate, each from its own order.
    let store = certfleet_store::Store::connect(&url).await.unwrap();
    let organization_id = store
        .find_organization_by_slug("distributed")
        .await
        .unwrap()
        .unwrap()
        .id;
    let mut version_orders = HashSet::new();
    for id in &ids {
        let versions = store.list_versions(&organization_id, id).await.unwrap();
        assert_eq!(versions.len(), 1, "{id} has {} versions", versions.len());
        assert!(
            version_orders.insert(order_id(&versions[0].order_url).to_owned()),
            "two certificates share the order {}",
            versions[0].order_url
        );
    }
    assert_eq!(version_orders.len(), CERTIFICATES);

    // Pebble saw exactly one order per certificate. Every order whose URL was
    // saved is finished by whoever takes the certificate over, even after its
    // finalize (the key is sealed and saved before it); an order the killed
    // issuer placed but died before saving is found again in the account's
    // orders list by the next attempt and finished too.
    let pebble_orders: HashSet<String> = std::fs::read_to_string(&pebble_log)
        .unwrap()
        .split("Added order \"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    let extra: Vec<&String> = pebble_orders.difference(&version_orders).collect();
    assert!(
        extra.is_empty() && version_orders.is_subset(&pebble_orders),
        "Pebble has {} orders for {CERTIFICATES} certificates; not issued: {extra:?}\n{}",
        pebble_orders.len(),
        all_logs(&processes, &pebble_log)
    );
    let recovered = processes
        .iter()
        .map(|(process, _)| {
            process
                .log()
                .matches("resuming the order an interrupted attempt placed")
                .count()
        })
        .sum::<usize>();
    phase(&format!(
        "{} ACME orders, one per certificate ({recovered} found again in the orders list after the kill; the killed issuer held {held} leases)",
        pebble_orders.len()
    ));

    // The durable consumer saw every certificate's issued event.
    let expected: HashSet<String> = ids.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let issued = loop {
        let issued: HashSet<String> = events
            .lock()
            .unwrap()
            .values()
            .filter(|event| event.r#type == pb::EventType::Issued as i32)
            .map(|event| event.certificate_id.clone())
            .collect();
        if issued == expected || Instant::now() > deadline {
            break issued;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        expected.difference(&issued).count(),
        0,
        "issued events missing"
    );
    assert_eq!(issued, expected);
    phase(&format!(
        "{} events ({} deliveries) seen, every certificate's issued event among them",
        events.lock().unwrap().len(),
        received.lock().unwrap()
    ));
    consumer.abort();

    // The survivors stop cleanly on SIGTERM.
    for (index, (process, _)) in processes.iter_mut().enumerate() {
        if !killed.contains(&index) {
            let status = process.terminate();
            assert!(
                status.success(),
                "{} exited with {status}: {}",
                process.name,
                process.log()
            );
        }
    }
    drop(processes);
    stack.remove().await.unwrap();
    phase("done");
}
