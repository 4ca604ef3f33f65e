//! PostgreSQL out of reach of a `certfleet-api`: calls answer UNAVAILABLE
//! promptly (no hang, no panic, nothing half-written), and the api recovers by
//! itself when the database is back. The database server keeps running; the
//! api reaches it through a proxy whose link the test cuts.

use std::net::SocketAddr;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions, TcpProxy, free_port};
use certfleet_e2e::{RoleStack, all_logs, organization, request, terminate_all, wait_all_healthy};
use certfleet_proto::v1::{self as pb, GetCertificateRequest, ListCertificatesRequest};
use tokio::time::Instant;
use tonic::Code;

/// How long a call may take while the database is away.
const PROMPT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_unavailable_without_its_database_and_recovers() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let stack = RoleStack::create(&pebble).await.unwrap();
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], 5432)))
        .await
        .unwrap();
    let database_url = stack
        .database
        .url()
        .replace("127.0.0.1:5432", &proxy.address().to_string());
    assert_ne!(
        database_url,
        stack.database.url(),
        "the URL goes through the proxy"
    );
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (mut api, health) = stack
        .spawn(
            "certfleet-api",
            "api",
            vec![
                "--grpc-listen".to_owned(),
                grpc.to_string(),
                "--database-url".to_owned(),
                database_url,
            ],
        )
        .unwrap();
    api.wait_healthy(health).await.unwrap();

    let (write, _) = organization(grpc, &stack.admin_token, "outage").await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    let before = client
        .create_certificate(request(&["before.outage.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();

    proxy.cut();
    // Reads and writes alike: UNAVAILABLE, within seconds.
    let started = Instant::now();
    let status = tokio::time::timeout(
        PROMPT,
        client.get_certificate(GetCertificateRequest {
            id: before.id.clone(),
            ..Default::default()
        }),
    )
    .await
    .expect("GetCertificate hangs without the database")
    .expect_err("GetCertificate without the database");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = tokio::time::timeout(
        PROMPT,
        client.list_certificates(ListCertificatesRequest::default()),
    )
    .await
    .expect("ListCertificates hangs without the database")
    .expect_err("ListCertificates without the database");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = tokio::time::timeout(
        PROMPT,
        client.create_certificate(request(&["during.outage.test"], pb::KeyType::EcdsaP256)),
    )
    .await
    .expect("CreateCertificate hangs without the database")
    .expect_err("CreateCertificate without the database");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    eprintln!(
        "three calls answered UNAVAILABLE in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(api.exited().unwrap().is_none(), "{}", api.log());

    // Back by itself: the same calls work again, and the refused create left
    // nothing behind (creating it now is not "already exists").
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .get_certificate(GetCertificateRequest {
                id: before.id.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(certificate) => {
                assert_eq!(certificate.into_inner().id, before.id);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(
                    Instant::now() < deadline,
                    "the api did not recover: {}",
                    api.log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let during = client
        .create_certificate(request(&["during.outage.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(during.names, ["during.outage.test"]);
    let listed = client
        .list_certificates(ListCertificatesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.certificates.len(), 2);

    // A network that drops packets instead of refusing them: open
    // connections and new ones hang. Calls still end within seconds.
    proxy.blackhole();
    for attempt in 0..2 {
        let started = Instant::now();
        let status = tokio::time::timeout(
            Duration::from_secs(20),
            client.get_certificate(GetCertificateRequest {
                id: before.id.clone(),
                ..Default::default()
            }),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "call {attempt} hangs behind a silent network: {}",
                api.log()
            )
        })
        .expect_err("GetCertificate behind a silent network");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        eprintln!(
            "silent network: UNAVAILABLE after {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get_certificate(GetCertificateRequest {
            id: before.id.clone(),
            ..Default::default()
        })
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the api did not recover from the silent network: {}",
            api.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let status = api.terminate();
    assert!(status.success(), "api exited with {status}: {}", api.log());
    drop(api);
    drop(proxy);
    stack.remove().await.unwrap();
}

/// RabbitMQ out of reach of every process (the broker keeps running; the
/// processes reach it through a proxy the test cuts): certificates requested
/// meanwhile are accepted (the jobs wait in the outbox), and are all issued
/// once the broker is back, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn work_requested_while_rabbitmq_is_away_is_done_when_it_returns() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let stack = RoleStack::create(&pebble).await.unwrap();
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], 5672)))
        .await
        .unwrap();
    let amqp_url = stack
        .vhost
        .amqp_url()
        .replace("127.0.0.1:5672", &proxy.address().to_string());
    assert_ne!(
        amqp_url,
        stack.vhost.amqp_url(),
        "the URL goes through the proxy"
    );
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
    let through_proxy = |mut args: Vec<String>| {
        args.extend(["--amqp-url".to_owned(), amqp_url.clone()]);
        args
    };
    let mut processes = vec![
        stack
            .spawn(
                "certfleet-api",
                "api",
                through_proxy(vec!["--grpc-listen".to_owned(), grpc.to_string()]),
            )
            .unwrap(),
        stack
            .spawn(
                "certfleet-responder",
                "responder",
                vec!["--http01-listen".to_owned(), http01.to_string()],
            )
            .unwrap(),
        stack
            .spawn(
                "certfleet-issuer",
                "issuer",
                through_proxy(vec![
                    "--http01-self-check-addr".to_owned(),
                    http01.to_string(),
                ]),
            )
            .unwrap(),
        stack
            .spawn(
                "certfleet-scheduler",
                "scheduler",
                through_proxy(vec!["--scheduler-interval".to_owned(), "1".to_owned()]),
            )
            .unwrap(),
    ];
    wait_all_healthy(&mut processes).await.unwrap();
    let (write, _) = organization(grpc, &stack.admin_token, "brokerless").await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;

    proxy.cut();
    let mut ids = Vec::new();
    for index in 0..5 {
        let created = tokio::time::timeout(
            PROMPT,
            client.create_certificate(request(
                &[&format!("away{index}.broker.test")],
                pb::KeyType::EcdsaP256,
            )),
        )
        .await
        .expect("CreateCertificate hangs without the broker")
        .expect("CreateCertificate without the broker: the job waits in the outbox");
        ids.push(created.into_inner().id);
    }
    // Nothing can be issued while the jobs cannot reach the issuer.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for id in &ids {
        let certificate = client
            .get_certificate(GetCertificateRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            certificate.status,
            pb::CertificateStatus::Pending as i32,
            "{id} changed while the broker was away: {}",
            all_logs(&processes)
        );
    }

    proxy.restore();
    for id in &ids {
        certfleet_e2e::wait_for(
            &mut client,
            id,
            Duration::from_secs(90),
            certfleet_e2e::is_valid,
        )
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", all_logs(&processes)));
    }
    terminate_all(&mut processes).unwrap();
    drop(processes);
    drop(proxy);
    stack.remove().await.unwrap();
}
