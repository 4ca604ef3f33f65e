//! Lifecycle events from RabbitMQ for in-process watchers (WatchCertificates):
//! an exclusive, auto-deleted queue bound to `certfleet.events`, fed into a
//! broadcast channel by a background task that reconnects with backoff.
//! Events published while it reconnects are not seen; durable consumers
//! (notifier, agents) bind durable queues of their own instead.

use certfleet_proto::v1::CertificateEvent;
use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, Consumer};
use prost::Message as _;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{EVENTS_EXCHANGE, RabbitConfig, backoff};
use crate::{BusError, EventSource};

/// Binding key of every certificate event.
const ALL_CERTIFICATE_EVENTS: &str = "certificate.#";
/// Events kept for slow watchers before they start missing some.
const EVENT_BUFFER: usize = 4096;

/// An [`EventSource`] fed from the broker. Dropping it stops the feed.
#[derive(Debug)]
pub struct RabbitEvents {
    events: broadcast::Sender<CertificateEvent>,
    task: JoinHandle<()>,
}

impl RabbitEvents {
    /// Binds the queue before returning, so every event published after this
    /// call is seen (while the connection lasts).
    pub async fn start(config: RabbitConfig) -> Result<RabbitEvents, BusError> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let first = subscribe(&config).await?;
        let task = tokio::spawn(feed(config, first, events.clone()));
        Ok(RabbitEvents { events, task })
    }
}

impl EventSource for RabbitEvents {
    fn subscribe(&self) -> broadcast::Receiver<CertificateEvent> {
        self.events.subscribe()
    }
}

impl Drop for RabbitEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection consuming a fresh exclusive queue bound to every certificate event.
async fn subscribe(config: &RabbitConfig) -> Result<(Connection, Consumer), BusError> {
    let (connection, channel) = config.open().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            EVENTS_EXCHANGE.into(),
            ALL_CERTIFICATE_EVENTS.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                // Watchers are best effort: no acks for a queue that dies with us.
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((connection, consumer))
}

async fn feed(
    config: RabbitConfig,
    first: (Connection, Consumer),
    events: broadcast::Sender<CertificateEvent>,
) {
    let mut current = Some(first);
    let mut failures = 0_u32;
    loop {
        let (_connection, mut consumer) = match current.take() {
            Some(link) => link,
            None => {
                tokio::time::sleep(backoff(failures)).await;
                match subscribe(&config).await {
                    Ok(link) => {
                        tracing::info!("rabbitmq event feed reconnected");
                        link
                    }
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(%error, "rabbitmq event feed cannot reconnect");
                        continue;
                    }
                }
            }
        };
        failures = 1;
        while let Some(delivery) = consumer.next().await {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(%error, "rabbitmq event feed interrupted; reconnecting");
                    break;
                }
            };
            match CertificateEvent::decode(delivery.data.as_slice()) {
                // No watcher is not an error: the event is simply not seen by anyone.
                Ok(event) => {
                    let _ = events.send(event);
                }
                Err(error) => tracing::warn!(
                    routing_key = %delivery.routing_key,
                    %error,
                    "undecodable event message skipped"
                ),
            }
        }
    }
}
