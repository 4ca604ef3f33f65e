//! The distributed bus over RabbitMQ (lapin): jobs on `certfleet.jobs` with
//! quorum queues, retry tiers and dead letters; events on the topic exchange
//! `certfleet.events`. Every connection declares the topology first, and every
//! user of a connection reconnects with backoff when it is lost.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties};
use rand::Rng as _;

use crate::BusError;

mod consumer;
mod events;
mod publisher;
mod queue;
mod topology;

pub(crate) use consumer::RabbitSettle;
pub use consumer::{DEFAULT_PREFETCH, RabbitJobs};
pub use events::RabbitEvents;
pub use publisher::RabbitPublisher;
pub use queue::DurableEvents;
pub use topology::{
    DEAD_LETTER_EXCHANGE, DEAD_QUEUE, EVENTS_EXCHANGE, JOBS_EXCHANGE, JobQueue, Topology,
};

/// Header carrying the W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// Header counting how often a job went through a retry tier.
pub const RETRIES_HEADER: &str = "x-certfleet-retries";

/// How long one connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the broker is and how its topology is shaped.
#[derive(Clone)]
pub struct RabbitConfig {
    url: String,
    /// Shown by the broker's management tools, e.g. `certfleet-issuer`.
    pub connection_name: String,
    pub topology: Topology,
}

impl std::fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("url", &redacted(&self.url))
            .field("connection_name", &self.connection_name)
            .field("topology", &self.topology)
            .finish()
    }
}

impl RabbitConfig {
    /// `url` as in `amqp://user:password@host:5672/vhost` (vhost URL-encoded).
    pub fn new(url: impl Into<String>) -> RabbitConfig {
        RabbitConfig {
            url: url.into(),
            connection_name: "certfleet".to_owned(),
            topology: Topology::default(),
        }
    }

    /// The broker URL, password included: not for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn with_connection_name(mut self, name: impl Into<String>) -> RabbitConfig {
        self.connection_name = name.into();
        self
    }

    pub fn with_topology(mut self, topology: Topology) -> RabbitConfig {
        self.topology = topology;
        self
    }

    /// A new connection and a channel on it, with the topology declared.
    pub(crate) async fn open(&self) -> Result<(Connection, Channel), BusError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.connection_name.as_str()));
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, properties))
                .await
                .map_err(|_| {
                    BusError::Unavailable(format!(
                        "no connection to {} within {} s",
                        redacted(&self.url),
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })??;
        let channel = connection.create_channel().await?;
        self.topology.declare(&channel).await?;
        Ok((connection, channel))
    }
}

/// Exponential backoff with jitter: 100 ms doubling up to 10 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(7);
    let base = Duration::from_millis(100 * (1 << exponent)).min(Duration::from_secs(10));
    // Up to a quarter more, so replicas cut off together do not return together.
    let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 4);
    base + Duration::from_millis(jitter)
}

/// A string header, or `None`.
pub(crate) fn header_string(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

/// Why the broker dead-lettered a message, from its `x-death` header (the
/// latest death first) or, failing that, `x-first-death-*`.
pub(crate) fn header_death(headers: Option<&FieldTable>) -> Option<crate::Death> {
    let delivery_count = header_count(headers, "x-delivery-count");
    if let Some(AMQPValue::FieldArray(deaths)) = headers?.inner().get("x-death")
        && let Some(AMQPValue::FieldTable(latest)) = deaths.as_slice().first()
    {
        let latest = Some(latest);
        return Some(crate::Death {
            queue: header_string(latest, "queue").unwrap_or_default(),
            reason: header_string(latest, "reason").unwrap_or_default(),
            delivery_count,
        });
    }
    let reason = header_string(headers, "x-first-death-reason")?;
    Some(crate::Death {
        queue: header_string(headers, "x-first-death-queue").unwrap_or_default(),
        reason,
        delivery_count,
    })
}

/// An integer header, or `None`.
pub(crate) fn header_count(headers: Option<&FieldTable>, name: &str) -> Option<u32> {
    let count = match headers?.inner().get(name)? {
        AMQPValue::LongLongInt(value) => *value,
        AMQPValue::LongInt(value) => i64::from(*value),
        AMQPValue::LongUInt(value) => i64::from(*value),
        AMQPValue::ShortInt(value) => i64::from(*value),
        AMQPValue::ShortUInt(value) => i64::from(*value),
        _ => return None,
    };
    u32::try_from(count).ok()
}

/// The URL with its password replaced, for logs and errors.
fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|index| index + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("amqp://guest:secret@127.0.0.1:5672/vh"),
            "amqp://guest:***@127.0.0.1:5672/vh"
        );
        assert_eq!(redacted("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_millis(100));
        assert!(backoff(1) <= Duration::from_millis(125));
        assert!(backoff(4) >= Duration::from_millis(800));
        assert!(backoff(100) <= Duration::from_millis(12_500));
    }
}
