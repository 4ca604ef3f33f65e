//! Bus contract tests: each contract runs against the in-process bus and
//! against RabbitMQ (a fresh vhost per test); RabbitMQ's fault behaviour is
//! tested in `faults`.

mod faults;
mod harness;

use std::time::{Duration, Instant};

use certfleet_bus::rabbitmq::JobQueue;
use certfleet_bus::{EventBuilder, Job, JobKind, RetryTier};
use certfleet_proto::v1::EventType;
use harness::{Harness, PATIENCE, RETRY_DELAYS, next_job, no_job};

/// Runs a contract once per bus.
macro_rules! contract {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn in_process() {
                let mut harness = Harness::in_process().await;
                super::$name(&mut harness).await;
                harness.finish().await;
            }

            #[tokio::test]
            async fn rabbitmq() {
                let mut harness = Harness::rabbit().await;
                super::$name(&mut harness).await;
                harness.finish().await;
            }
        }
    };
}

contract!(an_issue_job_is_received_once_and_acked);
contract!(a_revoke_job_goes_to_the_revoke_consumer);
contract!(events_reach_a_subscriber_with_type_and_payload);
contract!(retried_jobs_come_back);

async fn an_issue_job_is_received_once_and_acked(harness: &mut Harness) {
    let job = Job::issue("org-1", "cert-1");
    harness.publish(&job.to_outbox(1)).await;

    let mut jobs = harness.jobs(&JobQueue::ALL).await;
    let delivery = next_job(&mut jobs).await;
    assert_eq!(delivery.job, job);
    assert!(!delivery.redelivered());
    delivery.ack().await.expect("ack");
    no_job(&mut jobs).await;

    drop(jobs);
    if let Some(depth) = harness.idle_queue_depth(JobQueue::Issue.name()).await {
        assert_eq!(
            depth, 0,
            "an acked job is not requeued when its consumer leaves"
        );
    }
}

async fn a_revoke_job_goes_to_the_revoke_consumer(harness: &mut Harness) {
    let revoke = Job::revoke("org-1", "cert-1", "key_compromise");
    let issue = Job::issue("org-1", "cert-2");
    harness.publish(&revoke.to_outbox(1)).await;
    harness.publish(&issue.to_outbox(2)).await;

    let mut revocations = harness.jobs(&[JobQueue::Revoke]).await;
    let delivery = next_job(&mut revocations).await;
    assert_eq!(delivery.job, revoke);
    assert!(
        matches!(delivery.job.kind, JobKind::Revoke { ref reason } if reason == "key_compromise")
    );
    delivery.ack().await.expect("ack");

    match harness.idle_queue_depth(JobQueue::Issue.name()).await {
        // RabbitMQ: the issue job waits in its own queue, unseen by this consumer.
        Some(_) => {
            no_job(&mut revocations).await;
            drop(revocations);
            assert_eq!(
                harness.idle_queue_depth(JobQueue::Issue.name()).await,
                Some(1)
            );
            assert_eq!(
                harness.idle_queue_depth(JobQueue::Revoke.name()).await,
                Some(0)
            );
        }
        // In-process: one queue carries every job.
        None => {
            let delivery = next_job(&mut revocations).await;
            assert_eq!(delivery.job, issue);
            delivery.ack().await.expect("ack");
        }
    }
}

async fn events_reach_a_subscriber_with_type_and_payload(harness: &mut Harness) {
    let events = harness.events().await;
    let mut watcher = events.subscribe();
    let event = EventBuilder::new(
        EventType::Issued,
        "org-1",
        "cert-1",
        vec!["a.test".to_owned(), "b.test".to_owned()],
        1_700_000_000_000,
    )
    .version(3, "0ABC", 1_800_000_000_000)
    .build();
    harness.publish(&certfleet_bus::event_message(&event)).await;
    // A job is not an event.
    harness
        .publish(&Job::issue("org-1", "cert-1").to_outbox(1))
        .await;

    let received = tokio::time::timeout(PATIENCE, watcher.recv())
        .await
        .expect("event arrives in time")
        .expect("event channel open");
    assert_eq!(received.r#type(), EventType::Issued);
    assert_eq!(received, event);
    assert!(
        tokio::time::timeout(harness::QUIET, watcher.recv())
            .await
            .is_err(),
        "one event published, one received"
    );
}

async fn retried_jobs_come_back(harness: &mut Harness) {
    let job = Job::issue("org-1", "cert-1");
    harness.publish(&job.to_outbox(1)).await;
    let mut jobs = harness.jobs(&JobQueue::ALL).await;
    let delivery = next_job(&mut jobs).await;
    assert_eq!(delivery.retries(), 0);
    let started = Instant::now();
    delivery
        .retry_later(RetryTier::Short)
        .await
        .expect("retry scheduled");

    let again = next_job(&mut jobs).await;
    let waited = started.elapsed();
    assert_eq!(again.job, job);
    assert!(
        waited >= RETRY_DELAYS[0] - Duration::from_millis(50),
        "came back after {waited:?}"
    );
    assert!(
        waited < RETRY_DELAYS[1] + Duration::from_secs(2),
        "came back after {waited:?}"
    );
    again.ack().await.expect("ack");
    no_job(&mut jobs).await;
}
