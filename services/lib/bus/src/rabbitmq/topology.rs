//! The broker topology of the distributed mode, declared idempotently by every
//! connection: the jobs exchange with its quorum queues, the delayed-retry
//! tiers, the dead letters, and the events exchange.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::{BusError, RetryTier};

/// Direct exchange every job is published to, by routing key `issue` or `revoke`.
pub const JOBS_EXCHANGE: &str = "certfleet.jobs";
/// Topic exchange of lifecycle events, routing keys `certificate.<type>`.
pub const EVENTS_EXCHANGE: &str = "certfleet.events";
/// Fanout exchange that collects rejected and over-delivered jobs.
pub const DEAD_LETTER_EXCHANGE: &str = "certfleet.dead-letter";
/// Where rejected and over-delivered jobs end up, for an operator to inspect.
pub const DEAD_QUEUE: &str = "certfleet.dead";

/// A queue of jobs, each bound to [`JOBS_EXCHANGE`] by its own routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobQueue {
    /// Issuance and renewal: `certfleet.issue`, routing key `issue`.
    Issue,
    /// Revocation: `certfleet.revoke`, routing key `revoke`.
    Revoke,
    /// The dead letters: `certfleet.dead`, fed by [`DEAD_LETTER_EXCHANGE`]
    /// (a fanout, so no routing key). Consumed by the scheduler, which
    /// records each job's failure on its certificate.
    Dead,
}

impl JobQueue {
    /// Both job queues, which is what an issuer consumes.
    pub const ALL: [JobQueue; 2] = [JobQueue::Issue, JobQueue::Revoke];

    pub fn name(self) -> &'static str {
        match self {
            JobQueue::Issue => "certfleet.issue",
            JobQueue::Revoke => "certfleet.revoke",
            JobQueue::Dead => DEAD_QUEUE,
        }
    }

    pub fn routing_key(self) -> &'static str {
        match self {
            JobQueue::Issue => "issue",
            JobQueue::Revoke => "revoke",
            JobQueue::Dead => "",
        }
    }

    /// The queue of an outbox job topic (`job.issue`, `job.revoke`).
    pub fn for_topic(topic: &str) -> Option<JobQueue> {
        match topic {
            "job.issue" => Some(JobQueue::Issue),
            "job.revoke" => Some(JobQueue::Revoke),
            _ => None,
        }
    }
}

/// The parts of the topology an operator may tune. Changing a value of an
/// existing queue is refused by the broker, so retry queues are named after
/// their delay (`certfleet.retry.10s`) and a new delay gets a new queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Delays of [`RetryTier::Short`], [`RetryTier::Medium`] and [`RetryTier::Long`].
    pub retry_delays: [Duration; 3],
    /// Deliveries of one message after which a quorum queue dead-letters it.
    pub delivery_limit: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            retry_delays: [
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(600),
            ],
            delivery_limit: 10,
        }
    }
}

impl Topology {
    pub fn retry_delay(&self, tier: RetryTier) -> Duration {
        self.retry_delays[tier.index()]
    }

    /// Name of a tier's exchange and of its queue, e.g. `certfleet.retry.1m`.
    pub fn retry_queue(&self, tier: RetryTier) -> String {
        format!("certfleet.retry.{}", short_duration(self.retry_delay(tier)))
    }

    /// Declares everything; safe to repeat with the same settings.
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), BusError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let no_arguments = FieldTable::default();
        channel
            .exchange_declare(
                JOBS_EXCHANGE.into(),
                ExchangeKind::Direct,
                durable,
                no_arguments.clone(),
            )
            .await?;
        channel
            .exchange_declare(
                EVENTS_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                no_arguments.clone(),
            )
            .await?;
        channel
            .exchange_declare(
                DEAD_LETTER_EXCHANGE.into(),
                ExchangeKind::Fanout,
                durable,
                no_arguments.clone(),
            )
            .await?;
        declare_bound_queue(channel, DEAD_QUEUE, quorum(), DEAD_LETTER_EXCHANGE, "").await?;

        for queue in JobQueue::ALL {
            let mut arguments = quorum();
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
            arguments.insert(
                "x-dead-letter-exchange".into(),
                string(DEAD_LETTER_EXCHANGE),
            );
            declare_bound_queue(
                channel,
                queue.name(),
                arguments,
                JOBS_EXCHANGE,
                queue.routing_key(),
            )
            .await?;
        }

        for tier in RetryTier::ALL {
            // A fanout exchange per tier keeps the job's own routing key on the
            // message, so the dead-lettering after the TTL routes it home.
            let name = self.retry_queue(tier);
            channel
                .exchange_declare(
                    name.as_str().into(),
                    ExchangeKind::Fanout,
                    durable,
                    no_arguments.clone(),
                )
                .await?;
            let mut arguments = FieldTable::default();
            let ttl_ms = i64::try_from(self.retry_delay(tier).as_millis()).unwrap_or(i64::MAX);
            arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
            arguments.insert("x-dead-letter-exchange".into(), string(JOBS_EXCHANGE));
            declare_bound_queue(channel, &name, arguments, &name, "").await?;
        }
        Ok(())
    }
}

async fn declare_bound_queue(
    channel: &Channel,
    queue: &str,
    arguments: FieldTable,
    exchange: &str,
    routing_key: &str,
) -> Result<(), BusError> {
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("quorum"));
    arguments
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// `10s`, `1m`, `2h`, or milliseconds when the delay is not whole seconds.
fn short_duration(delay: Duration) -> String {
    let millis = delay.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let seconds = delay.as_secs();
    match seconds {
        s if s != 0 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s != 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retry_queues_are_named_after_their_delay() {
        let topology = Topology::default();
        let names: Vec<String> = RetryTier::ALL
            .into_iter()
            .map(|tier| topology.retry_queue(tier))
            .collect();
        assert_eq!(
            names,
            [
                "certfleet.retry.10s",
                "certfleet.retry.1m",
                "certfleet.retry.10m"
            ]
        );
        assert_eq!(short_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(short_duration(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn job_topics_map_to_queues() {
        assert_eq!(JobQueue::for_topic("job.issue"), Some(JobQueue::Issue));
        assert_eq!(JobQueue::for_topic("job.revoke"), Some(JobQueue::Revoke));
        assert_eq!(JobQueue::for_topic("job.other"), None);
    }
}
