//! A durable queue of one's own on `certfleet.events`, for consumers that must
//! not miss an event while they are away (the notifier, proxy agents): a
//! quorum queue bound to the routing keys given, consumed with manual acks.
//! An event is acked once its handler succeeded; a handler error puts it back
//! (after a pause) so it is handled again; a lost connection is reopened with
//! backoff and what was unacked is redelivered.

use std::future::Future;
use std::time::Duration;

use certfleet_proto::v1::CertificateEvent;
use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Connection, Consumer};
use prost::Message as _;
use tokio::sync::watch;

use super::{EVENTS_EXCHANGE, RabbitConfig, backoff};
use crate::BusError;

/// Events a consumer holds unacked at once.
const PREFETCH: u16 = 16;
/// Pause before an event whose handler failed comes back.
const FAILED_PAUSE: Duration = Duration::from_secs(1);

/// A consumer's own durable queue and what it is bound to.
#[derive(Debug, Clone)]
pub struct DurableEvents {
    config: RabbitConfig,
    queue: String,
    routing_keys: Vec<String>,
}

impl DurableEvents {
    /// `queue` is declared (durable, quorum) and bound to each routing key
    /// (e.g. `certificate.issued`, or `certificate.#`) when connecting.
    pub fn new(config: RabbitConfig, queue: impl Into<String>, routing_keys: &[&str]) -> Self {
        DurableEvents {
            config,
            queue: queue.into(),
            routing_keys: routing_keys.iter().map(|key| (*key).to_owned()).collect(),
        }
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Declares and binds the queue (so events published from now on are
    /// kept), then returns; the first [`DurableEvents::run`] connects again.
    pub async fn declare(&self) -> Result<(), BusError> {
        let (connection, _consumer) = self.subscribe().await?;
        let _ = connection.close(200, "declared".into()).await;
        Ok(())
    }

    /// Hands each event to `handle` until `stop` turns true; acks what was
    /// handled. Undecodable messages are logged and dropped.
    pub async fn run<F, Fut>(self, mut handle: F, mut stop: watch::Receiver<bool>)
    where
        F: FnMut(CertificateEvent) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut failures = 0_u32;
        while !*stop.borrow() {
            let (connection, mut consumer) = match self.subscribe().await {
                Ok(link) => {
                    if failures > 0 {
                        tracing::info!(queue = %self.queue, "event queue reconnected");
                    }
                    failures = 0;
                    link
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(queue = %self.queue, %error, "cannot consume the event queue yet");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(failures)) => continue,
                        _ = stop.wait_for(|stopped| *stopped) => break,
                    }
                }
            };
            loop {
                let delivery = tokio::select! {
                    delivery = consumer.next() => delivery,
                    _ = stop.wait_for(|stopped| *stopped) => None,
                };
                let Some(delivery) = delivery else {
                    break;
                };
                let delivery = match delivery {
                    Ok(delivery) => delivery,
                    Err(error) => {
                        tracing::warn!(queue = %self.queue, %error, "event queue interrupted; reconnecting");
                        break;
                    }
                };
                let event = match CertificateEvent::decode(delivery.data.as_slice()) {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!(routing_key = %delivery.routing_key, %error, "undecodable event message dropped");
                        let _ = delivery.ack(BasicAckOptions::default()).await;
                        continue;
                    }
                };
                let event_id = event.id.clone();
                match handle(event).await {
                    Ok(()) => {
                        if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                            tracing::warn!(queue = %self.queue, event_id, %error, "cannot ack a handled event; it comes back");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(queue = %self.queue, event_id, %error, "event not handled; it comes back");
                        tokio::time::sleep(FAILED_PAUSE).await;
                        let _ = delivery
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            })
                            .await;
                    }
                }
            }
            let _ = connection.close(200, "stopping".into()).await;
        }
    }

    async fn subscribe(&self) -> Result<(Connection, Consumer), BusError> {
        let (connection, channel) = self.config.open().await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        for key in &self.routing_keys {
            channel
                .queue_bind(
                    self.queue.as_str().into(),
                    EVENTS_EXCHANGE.into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((connection, consumer))
    }
}
