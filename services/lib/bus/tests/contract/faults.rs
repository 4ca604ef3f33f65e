//! RabbitMQ only: redelivery after a lost connection, dead letters, publisher
//! confirms and message labels, and reconnecting publishers.

use std::time::Duration;

use certfleet_bus::rabbitmq::{
    DEAD_QUEUE, EVENTS_EXCHANGE, JOBS_EXCHANGE, JobQueue, RabbitJobs, Topology,
};
use certfleet_bus::{BusError, EventBuilder, Job, JobSource, Publisher, valid_traceparent};
use certfleet_proto::v1::EventType;
use lapin::BasicProperties;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::harness::{Harness, PATIENCE, next_job, raw_channel};

#[tokio::test]
async fn an_unacked_job_is_redelivered_after_the_connection_is_closed() {
    let mut harness = Harness::rabbit().await;
    let job = Job::issue("org-1", "cert-1");
    harness.publish(&job.to_outbox(1)).await;
    let mut jobs = harness.jobs(&JobQueue::ALL).await;
    let first = next_job(&mut jobs).await;
    assert!(!first.redelivered());

    harness
        .vhost()
        .close_connections()
        .await
        .expect("connections closed");
    let again = next_job(&mut jobs).await;
    assert_eq!(again.job, job);
    assert!(again.redelivered());
    assert!(
        first.ack().await.is_err(),
        "an ack on the lost channel fails"
    );
    again.ack().await.expect("ack after reconnecting");
    drop(jobs);
    assert_eq!(
        harness.idle_queue_depth(JobQueue::Issue.name()).await,
        Some(0)
    );
    harness.finish().await;
}

#[tokio::test]
async fn a_malformed_job_is_dead_lettered_and_consumption_goes_on() {
    let harness = Harness::rabbit().await;
    let (_connection, channel) = raw_channel(harness.config()).await;
    // Confirmed, so the malformed message is queued before the valid job: the
    // consumer meets it first (it only looks at messages while asked for one).
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms on");
    channel
        .basic_publish(
            JOBS_EXCHANGE.into(),
            "issue".into(),
            BasicPublishOptions::default(),
            b"{not json",
            BasicProperties::default().with_message_id("bad-1".into()),
        )
        .await
        .expect("raw publish")
        .await
        .expect("raw publish confirmed");
    let job = Job::issue("org-1", "cert-1");
    harness.publish(&job.to_outbox(1)).await;

    let mut jobs = RabbitJobs::connect(harness.config().clone(), &JobQueue::ALL, 4)
        .await
        .expect("consumer connects");
    let delivery = tokio::time::timeout(PATIENCE, RabbitJobs::next(&mut jobs))
        .await
        .expect("a job arrives in time")
        .expect("consumer open")
        .expect("the malformed message is not an error");
    assert_eq!(delivery.job, job);
    delivery.ack().await.expect("ack");

    let dead = wait_for_message(&channel, DEAD_QUEUE).await;
    assert_eq!(dead.data, b"{not json");
    assert_eq!(
        dead.properties.message_id().as_ref().map(|id| id.as_str()),
        Some("bad-1")
    );
    jobs.close().await;
    harness.finish().await;
}

#[tokio::test]
async fn a_rejected_job_is_dead_lettered() {
    let mut harness = Harness::rabbit().await;
    let job = Job::revoke("org-1", "cert-1", "superseded");
    harness.publish(&job.to_outbox(1)).await;
    let mut jobs = harness.jobs(&[JobQueue::Revoke]).await;
    next_job(&mut jobs).await.reject().await.expect("reject");

    let (_connection, channel) = raw_channel(harness.config()).await;
    let dead = wait_for_message(&channel, DEAD_QUEUE).await;
    let dead_job: Job = serde_json::from_slice(&dead.data).expect("dead job is json");
    assert_eq!(dead_job, job);
    harness.finish().await;
}

#[tokio::test]
async fn a_retried_job_keeps_its_trace_and_counts_retries() {
    let mut harness = Harness::rabbit().await;
    harness
        .publish(&Job::issue("org-1", "cert-1").to_outbox(1))
        .await;
    let mut jobs = harness.jobs(&JobQueue::ALL).await;
    let first = next_job(&mut jobs).await;
    let trace = first.traceparent().map(str::to_owned);
    assert!(trace.as_deref().is_some_and(valid_traceparent));
    first
        .retry_later(certfleet_bus::RetryTier::Short)
        .await
        .expect("retry");
    let second = next_job(&mut jobs).await;
    assert_eq!(second.retries(), 1);
    assert_eq!(second.traceparent().map(str::to_owned), trace);
    second
        .retry_later(certfleet_bus::RetryTier::Short)
        .await
        .expect("retry");
    let third = next_job(&mut jobs).await;
    assert_eq!(third.retries(), 2);
    third.ack().await.expect("ack");
    harness.finish().await;
}

#[tokio::test]
async fn publishes_are_confirmed_persistent_and_labelled() {
    let harness = Harness::rabbit().await;
    let (_connection, channel) = raw_channel(harness.config()).await;
    let events = declare_bound_queue(
        &channel,
        "test.events",
        EVENTS_EXCHANGE,
        "certificate.issued",
        FieldTable::default(),
    )
    .await;

    let job = Job::issue("org-1", "cert-1").to_outbox(1_700_000_000_000);
    harness.publish(&job).await;
    // Confirmed means enqueued: the broker counts it before publish returned.
    assert_eq!(
        harness.idle_queue_depth(JobQueue::Issue.name()).await,
        Some(1)
    );
    let message = wait_for_message(&channel, JobQueue::Issue.name()).await;
    let properties = &message.properties;
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(
        properties.message_id().as_ref().map(|v| v.as_str()),
        Some(job.id.as_str())
    );
    assert_eq!(
        properties.kind().as_ref().map(|v| v.as_str()),
        Some("job.issue")
    );
    assert_eq!(
        properties.content_type().as_ref().map(|v| v.as_str()),
        Some("application/json")
    );
    assert!(traceparent(properties).is_some_and(|value| valid_traceparent(&value)));

    let event = EventBuilder::new(
        EventType::Issued,
        "org-1",
        "cert-1",
        vec!["a.test".into()],
        5,
    )
    .to_outbox();
    harness.publish(&event).await;
    let message = wait_for_message(&channel, &events).await;
    assert_eq!(message.delivery.routing_key.as_str(), "certificate.issued");
    assert_eq!(message.data, event.payload);
    let properties = &message.properties;
    assert_eq!(
        properties.content_type().as_ref().map(|v| v.as_str()),
        Some("application/x-protobuf")
    );
    assert_eq!(
        properties.kind().as_ref().map(|v| v.as_str()),
        Some("event.certificate.issued")
    );
    assert!(traceparent(properties).is_some_and(|value| valid_traceparent(&value)));
    harness.finish().await;
}

#[tokio::test]
async fn a_nacked_publish_is_an_error_so_the_relay_keeps_the_row() {
    let harness = Harness::rabbit().await;
    let (_connection, channel) = raw_channel(harness.config()).await;
    let mut full = FieldTable::default();
    full.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    full.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("reject-publish")),
    );
    declare_bound_queue(&channel, "test.full", JOBS_EXCHANGE, "issue", full).await;

    let result = harness
        .publisher()
        .publish(&Job::issue("org-1", "cert-1").to_outbox(1))
        .await;
    assert!(matches!(result, Err(BusError::Nacked { .. })), "{result:?}");
    harness.finish().await;
}

#[tokio::test]
async fn the_publisher_reconnects_after_losing_its_connection() {
    let harness = Harness::rabbit().await;
    let message = Job::issue("org-1", "cert-1").to_outbox(1);
    harness
        .publisher()
        .publish(&message)
        .await
        .expect("first publish");
    harness
        .vhost()
        .close_connections()
        .await
        .expect("connections closed");

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut failures = 0;
    while let Err(error) = harness.publisher().publish(&message).await {
        failures += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "still failing: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failures < 50);
    assert_eq!(
        harness.idle_queue_depth(JobQueue::Issue.name()).await,
        Some(2)
    );
    harness.finish().await;
}

#[tokio::test]
async fn the_job_consumer_reconnects_and_keeps_consuming() {
    let mut harness = Harness::rabbit().await;
    let mut jobs: Box<dyn JobSource> = harness.jobs(&JobQueue::ALL).await;
    harness
        .vhost()
        .close_connections()
        .await
        .expect("connections closed");
    let job = Job::issue("org-1", "cert-9");
    // The publisher was cut off too: retry until it is back.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while harness
        .publisher()
        .publish(&job.to_outbox(1))
        .await
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivery = next_job(&mut jobs).await;
    assert_eq!(delivery.job, job);
    delivery.ack().await.expect("ack");
    harness.finish().await;
}

fn traceparent(properties: &BasicProperties) -> Option<String> {
    match properties.headers().as_ref()?.inner().get("traceparent")? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        _ => None,
    }
}

async fn declare_bound_queue(
    channel: &lapin::Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
    arguments: FieldTable,
) -> String {
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::default(), arguments)
        .await
        .expect("test queue declared");
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("test queue bound");
    queue.to_owned()
}

/// The first message of `queue`, taken with `basic.get` (auto-ack).
async fn wait_for_message(
    channel: &lapin::Channel,
    queue: &str,
) -> lapin::message::BasicGetMessage {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let message = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get");
        if let Some(message) = message {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing arrived in {queue}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_job_over_its_delivery_limit_is_dead_lettered() {
    let mut harness = Harness::rabbit_with(Topology {
        delivery_limit: 1,
        ..Topology::default()
    })
    .await;
    let job = Job::issue("org-1", "cert-1");
    harness.publish(&job.to_outbox(1)).await;
    let mut jobs = harness.jobs(&JobQueue::ALL).await;
    // Two deliveries that die with their connection exceed a limit of one.
    for _ in 0..2 {
        let delivery = next_job(&mut jobs).await;
        assert_eq!(delivery.job, job);
        harness
            .vhost()
            .close_connections()
            .await
            .expect("connections closed");
        drop(delivery);
    }
    let (_connection, channel) = raw_channel(harness.config()).await;
    let dead = wait_for_message(&channel, DEAD_QUEUE).await;
    assert_eq!(serde_json::from_slice::<Job>(&dead.data).ok(), Some(job));
    drop(jobs);
    assert_eq!(
        harness.idle_queue_depth(JobQueue::Issue.name()).await,
        Some(0)
    );
    harness.finish().await;
}
