//! Dead letters in the distributed mode: a job the broker gives up on (here a
//! consumer that never finishes it, until the quorum queue's delivery limit
//! dead-letters it) is recorded on its certificate by a scheduler, which then
//! empties the dead-letter queue; a malformed dead letter is dropped without
//! harm.

use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions};
use certfleet_e2e::{RoleStack, all_logs, organization, request, terminate_all, wait_all_healthy};
use certfleet_proto::v1::{self as pb, GetCertificateRequest};
use futures_util::StreamExt as _;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::time::Instant;

/// Messages in `queue` (a passive declare).
async fn depth(channel: &lapin::Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_lettered_job_is_recorded_on_its_certificate() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let stack = RoleStack::create(&pebble).await.unwrap();
    let (api, grpc) = stack.spawn_api().unwrap();
    let mut processes = vec![
        api,
        stack
            .spawn(
                "certfleet-scheduler",
                "scheduler",
                vec!["--scheduler-interval".to_owned(), "1".to_owned()],
            )
            .unwrap(),
    ];
    wait_all_healthy(&mut processes).await.unwrap();

    // No issuer runs: the test is the worker that never finishes the job.
    let connection = Connection::connect(&stack.vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            "certfleet.issue".into(),
            "never-finishes".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let (write, _) = organization(grpc, &stack.admin_token, "dead").await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    let created = client
        .create_certificate(request(&["dead.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();

    // Hand every delivery back unfinished until the broker dead-letters the
    // job (delivery limit 10) and the scheduler records it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut deliveries = 0;
    let certificate = loop {
        if let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(200), consumer.next()).await
        {
            let delivery = delivery.unwrap();
            deliveries += 1;
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .unwrap();
        }
        let certificate = client
            .get_certificate(GetCertificateRequest {
                id: created.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if !certificate.last_error.is_empty() {
            break certificate;
        }
        assert!(
            Instant::now() < deadline,
            "nothing recorded after {deliveries} deliveries: {}",
            all_logs(&processes)
        );
    };
    assert!(
        deliveries > 10,
        "dead-lettered after only {deliveries} deliveries"
    );
    assert!(
        certificate
            .last_error
            .contains("the issuance job was dead-lettered from certfleet.issue")
            && certificate.last_error.contains("delivery limit"),
        "{}",
        certificate.last_error
    );
    // Still waiting for a certificate: the next attempt comes later.
    assert_eq!(certificate.status, pb::CertificateStatus::Pending as i32);

    // A message in the dead-letter queue that is not a job is dropped.
    let confirm = channel
        .basic_publish(
            "certfleet.dead-letter".into(),
            "".into(),
            BasicPublishOptions::default(),
            b"not a job",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    drop(confirm);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = all_logs(&processes);
        if log.contains("job dead-lettered; recorded on the certificate")
            && log.contains("malformed message in the dead-letter queue; dropped")
            && depth(&channel, "certfleet.dead").await == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead-letter queue is not emptied: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    connection.close(200, "done".into()).await.unwrap();

    terminate_all(&mut processes).unwrap();
    drop(processes);
    stack.remove().await.unwrap();
}
