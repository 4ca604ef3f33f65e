//! The distributed mode: 1 api, 2 issuers, 2 schedulers and 1 responder as
//! separate processes on a fresh PostgreSQL database and RabbitMQ vhost. An
//! issuer SIGKILLed mid-run loses no certificate and orders none twice.
//!
//! The admin token is bootstrapped with `certfleet-api --create-admin-token`
//! (migrates the database, prints a new token, exits): the way an operator
//! of the distributed mode gets the first token.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions, TestDatabase, TestVhost, free_port};
use certfleet_e2e::{RoleProcess, is_valid, organization, request, role_binary, wait_for};
use certfleet_proto::v1::{self as pb, GetCertificateRequest, WatchCertificatesRequest};
use tokio_stream::StreamExt as _;

const CERTIFICATES: usize = 20;

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_roles_issue_every_certificate_exactly_once() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let database = TestDatabase::create().await.unwrap();
    let vhost = TestVhost::create().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let key = std::process::Command::new("openssl")
        .args(["rand", "-base64", "32"])
        .output()
        .unwrap();
    assert!(key.status.success());
    let env: Vec<(String, String)> = [
        ("CERTFLEET_DATABASE_URL", database.url()),
        ("CERTFLEET_AMQP_URL", vhost.amqp_url()),
        (
            "CERTFLEET_MASTER_KEY",
            String::from_utf8(key.stdout).unwrap().trim().to_owned(),
        ),
        ("CERTFLEET_CA_DIRECTORY", pebble.directory_url()),
        (
            "CERTFLEET_CA_ROOT",
            pebble.listener_ca_path().to_string_lossy().into_owned(),
        ),
        ("CERTFLEET_LOG", "info,certfleet_acme=debug".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();

    let bootstrap = std::process::Command::new(role_binary("certfleet-api"))
        .arg("--create-admin-token")
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()
        .unwrap();
    assert!(
        bootstrap.status.success(),
        "{}",
        String::from_utf8_lossy(&bootstrap.stderr)
    );
    let admin = String::from_utf8(bootstrap.stdout)
        .unwrap()
        .trim()
        .to_owned();

    let http01 = loopback(pebble.http01_port());
    let grpc = loopback(free_port());
    let mut processes = Vec::new();
    let mut spawn = |binary: &str, name: &str, mut args: Vec<String>| {
        let health = loopback(free_port());
        args.extend(strings(&["--health-listen", &health.to_string()]));
        let process = RoleProcess::spawn(binary, name, &args, &env, logs.path()).unwrap();
        processes.push((process, health));
    };
    spawn(
        "certfleet-api",
        "api",
        strings(&["--grpc-listen", &grpc.to_string()]),
    );
    spawn(
        "certfleet-responder",
        "responder",
        strings(&["--http01-listen", &http01.to_string()]),
    );
    for index in 0..2 {
        spawn(
            "certfleet-issuer",
            &format!("issuer-{index}"),
            strings(&[
                "--issuer-concurrency",
                "8",
                "--http01-self-check-addr",
                &http01.to_string(),
            ]),
        );
        spawn(
            "certfleet-scheduler",
            &format!("scheduler-{index}"),
            strings(&["--scheduler-interval", "1"]),
        );
    }
    for (process, health) in &mut processes {
        process.wait_healthy(*health).await.unwrap();
    }
    let all_logs = |processes: &[(RoleProcess, SocketAddr)]| {
        processes
            .iter()
            .map(|(process, _)| format!("--- {}\n{}", process.name, process.log()))
            .collect::<String>()
    };

    let (write, _) = organization(grpc, &admin, "distributed").await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    let mut watch = client
        .watch_certificates(WatchCertificatesRequest {})
        .await
        .unwrap()
        .into_inner();
    let watcher = tokio::spawn(async move {
        let mut issued = HashSet::new();
        while let Some(Ok(event)) = watch.next().await {
            if event.r#type == pb::EventType::Issued as i32 {
                issued.insert(event.certificate_id);
                if issued.len() == CERTIFICATES {
                    break;
                }
            }
        }
        issued
    });

    let mut requests = tokio::task::JoinSet::new();
    for index in 0..CERTIFICATES {
        let mut client = client.clone();
        requests.spawn(async move {
            let name = format!("host{index}.distributed.test");
            client
                .create_certificate(request(&[&name], pb::KeyType::EcdsaP256))
                .await
                .unwrap()
                .into_inner()
                .id
        });
    }
    let ids: Vec<String> = requests.join_all().await;

    // Kill an issuer once work is in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    'in_flight: loop {
        for id in &ids {
            let certificate = client
                .get_certificate(GetCertificateRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner();
            if certificate.status == pb::CertificateStatus::Issuing as i32 {
                break 'in_flight;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing in flight: {}",
            all_logs(&processes)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = processes
        .iter()
        .position(|(process, _)| process.name == "issuer-0")
        .unwrap();
    processes[killed].0.kill();

    // Certificates the killed issuer held wait for its leases (60 s) to run
    // out; then the active scheduler queues them again.
    let mut order_urls = HashSet::new();
    for id in &ids {
        let certificate = wait_for(&mut client, id, Duration::from_secs(150), is_valid)
            .await
            .unwrap_or_else(|error| panic!("{error}\n{}", all_logs(&processes)));
        let version = certificate.current.unwrap();
        assert!(
            order_urls.insert(version.order_url.clone()),
            "two certificates share the order {}",
            version.order_url
        );
    }
    assert_eq!(order_urls.len(), CERTIFICATES);
    let pebble_log = std::fs::read_to_string(pebble.state_dir().join("pebble.log")).unwrap();
    assert_eq!(
        pebble_log.matches("Added order").count(),
        CERTIFICATES,
        "a second order was placed: {}",
        all_logs(&processes)
    );
    let issued = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the watcher did not see every issued event")
        .unwrap();
    let expected: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(issued, expected);

    // The survivors stop cleanly on SIGTERM.
    for (index, (process, _)) in processes.iter_mut().enumerate() {
        if index != killed {
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
    database.drop_database().await.unwrap();
    vhost.delete().await.unwrap();
}
