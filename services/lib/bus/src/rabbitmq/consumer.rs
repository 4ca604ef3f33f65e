//! Consumes jobs from the quorum queues with manual acks and a prefetch equal
//! to the worker's concurrency; reconnects with backoff when the connection
//! drops (the broker then redelivers whatever was not acked).

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use futures_util::stream::SelectAll;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection, Consumer};

use super::{
    JobQueue, RETRIES_HEADER, RabbitConfig, TRACEPARENT_HEADER, backoff, header_count,
    header_death, header_string,
};
use crate::{BusError, Job, JobDelivery, JobSource, RetryTier};

/// Jobs a consumer holds unacked when no concurrency is given.
pub const DEFAULT_PREFETCH: u16 = 32;

/// A consumer of some job queues. Use [`next`](Self::next) directly to see
/// broker errors, or the [`JobSource`] implementation, which logs them.
pub struct RabbitJobs {
    config: RabbitConfig,
    queues: Vec<JobQueue>,
    prefetch: u16,
    retry_exchanges: Arc<[String; 3]>,
    link: Option<Link>,
    failures: u32,
    stopped: bool,
}

struct Link {
    _connection: Connection,
    channel: Channel,
    consumer_tags: Vec<String>,
    deliveries: SelectAll<Consumer>,
}

impl std::fmt::Debug for RabbitJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitJobs")
            .field("queues", &self.queues)
            .field("prefetch", &self.prefetch)
            .field("connected", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl RabbitJobs {
    /// A consumer that connects on the first [`next`](Self::next). `prefetch`
    /// bounds the unacked jobs per queue (quorum queues only support a
    /// per-consumer limit).
    pub fn new(config: RabbitConfig, queues: &[JobQueue], prefetch: u16) -> RabbitJobs {
        let retry_exchanges =
            Arc::new(RetryTier::ALL.map(|tier| config.topology.retry_queue(tier)));
        RabbitJobs {
            config,
            queues: queues.to_vec(),
            prefetch: prefetch.max(1),
            retry_exchanges,
            link: None,
            failures: 0,
            stopped: false,
        }
    }

    /// Like [`new`](Self::new), but consuming before it returns, so a broker
    /// problem shows at start-up and no job published afterwards is missed.
    pub async fn connect(
        config: RabbitConfig,
        queues: &[JobQueue],
        prefetch: u16,
    ) -> Result<RabbitJobs, BusError> {
        let mut jobs = RabbitJobs::new(config, queues, prefetch);
        jobs.link = Some(jobs.open().await?);
        Ok(jobs)
    }

    /// The next job. `Some(Err(_))` reports a lost or refused connection; the
    /// call after it waits out the backoff and reconnects. `None` after
    /// [`stop`](Self::stop).
    pub async fn next(&mut self) -> Option<Result<JobDelivery, BusError>> {
        loop {
            if self.stopped {
                return None;
            }
            if self.link.is_none() {
                if self.failures > 0 {
                    tokio::time::sleep(backoff(self.failures)).await;
                }
                match self.open().await {
                    Ok(link) => {
                        if self.failures > 0 {
                            tracing::info!(queues = ?self.queues, "rabbitmq job consumer reconnected");
                        }
                        self.link = Some(link);
                    }
                    Err(error) => {
                        self.failures += 1;
                        return Some(Err(error));
                    }
                }
            }
            let Some(link) = self.link.as_mut() else {
                continue;
            };
            match link.deliveries.next().await {
                Some(Ok(delivery)) => {
                    self.failures = 0;
                    let channel = link.channel.clone();
                    if let Some(job) = self.decode(delivery, channel).await {
                        return Some(Ok(job));
                    }
                }
                Some(Err(error)) => {
                    self.link = None;
                    self.failures += 1;
                    return Some(Err(error.into()));
                }
                None => {
                    self.link = None;
                    self.failures += 1;
                    return Some(Err(BusError::Unavailable(
                        "job consumer cancelled by the broker".to_owned(),
                    )));
                }
            }
        }
    }

    /// Stops taking new jobs; deliveries already handed out can still be
    /// settled until [`close`](Self::close). Prefetched jobs that were not
    /// handed out go back to the queue when the connection closes.
    pub async fn stop(&mut self) {
        self.stopped = true;
        if let Some(link) = &self.link {
            for tag in &link.consumer_tags {
                let _ = link
                    .channel
                    .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                    .await;
            }
        }
    }

    /// Stops and closes the connection; unsettled deliveries are redelivered
    /// to other consumers.
    pub async fn close(mut self) {
        self.stop().await;
        if let Some(link) = self.link.take() {
            let _ = link._connection.close(200, "closing".into()).await;
        }
    }

    async fn open(&self) -> Result<Link, BusError> {
        let (connection, channel) = self.config.open().await?;
        // Retries are published on the consuming channel, with confirms.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let mut deliveries = SelectAll::new();
        let mut consumer_tags = Vec::with_capacity(self.queues.len());
        for queue in &self.queues {
            let consumer = channel
                .basic_consume(
                    queue.name().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumer_tags.push(consumer.tag().as_str().to_owned());
            deliveries.push(consumer);
        }
        Ok(Link {
            _connection: connection,
            channel,
            consumer_tags,
            deliveries,
        })
    }

    /// The job in a delivery; a message that is not a job is dead-lettered.
    async fn decode(&self, delivery: Delivery, channel: Channel) -> Option<JobDelivery> {
        let headers = delivery.properties.headers().as_ref();
        let retries = header_count(headers, RETRIES_HEADER).unwrap_or(0);
        let traceparent = header_string(headers, TRACEPARENT_HEADER);
        let death = header_death(headers);
        match serde_json::from_slice::<Job>(&delivery.data) {
            Ok(job) => Some(JobDelivery::rabbit(
                job,
                delivery.redelivered,
                retries,
                traceparent,
                death,
                RabbitSettle {
                    acker: delivery.acker,
                    channel,
                    routing_key: delivery.routing_key.as_str().to_owned(),
                    properties: delivery.properties,
                    data: delivery.data,
                    retry_exchanges: self.retry_exchanges.clone(),
                },
            )),
            Err(error) => {
                let message_id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned())
                    .unwrap_or_default();
                if self.queues == [JobQueue::Dead] {
                    // Logged when it was dead-lettered; nothing to record it on.
                    tracing::error!(
                        %message_id,
                        %error,
                        "malformed message in the dead-letter queue; dropped"
                    );
                    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                        tracing::warn!(%message_id, %error, "cannot drop malformed dead letter");
                    }
                    return None;
                }
                tracing::error!(
                    %message_id,
                    routing_key = %delivery.routing_key,
                    %error,
                    "malformed job message; moved to the dead-letter queue"
                );
                if let Err(error) = delivery.acker.nack(dead_letter()).await {
                    tracing::warn!(%message_id, %error, "cannot reject malformed job message");
                }
                None
            }
        }
    }
}

#[async_trait]
impl JobSource for RabbitJobs {
    async fn next(&mut self) -> Option<JobDelivery> {
        loop {
            match RabbitJobs::next(self).await? {
                Ok(delivery) => return Some(delivery),
                Err(error) => {
                    tracing::warn!(%error, "rabbitmq job consumer interrupted; reconnecting")
                }
            }
        }
    }
}

fn dead_letter() -> BasicNackOptions {
    BasicNackOptions {
        multiple: false,
        requeue: false,
    }
}

/// What settling a RabbitMQ delivery needs.
#[derive(Debug)]
pub(crate) struct RabbitSettle {
    acker: Acker,
    channel: Channel,
    routing_key: String,
    properties: BasicProperties,
    data: Vec<u8>,
    retry_exchanges: Arc<[String; 3]>,
}

impl RabbitSettle {
    pub(crate) async fn ack(self) -> Result<(), BusError> {
        settled(self.acker.ack(BasicAckOptions::default()).await?)
    }

    pub(crate) async fn reject(self) -> Result<(), BusError> {
        settled(self.acker.nack(dead_letter()).await?)
    }

    pub(crate) async fn retry_later(self, tier: RetryTier, retries: u32) -> Result<(), BusError> {
        if !self.acker.usable() {
            // The broker redelivers it anyway; a copy now would run the job twice.
            return settled(false);
        }
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(
            RETRIES_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(retries) + 1),
        );
        let properties = self.properties.clone().with_headers(headers);
        let message_id = properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        let exchange = &self.retry_exchanges[tier.index()];
        let confirmation = self
            .channel
            .basic_publish(
                exchange.as_str().into(),
                self.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &self.data,
                properties,
            )
            .await?
            .await?;
        match confirmation {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(_)) => {
                return Err(BusError::Unroutable {
                    message_id,
                    routing_key: exchange.clone(),
                });
            }
            Confirmation::Nack(_) | Confirmation::NotRequested => {
                return Err(BusError::Nacked { message_id });
            }
        }
        settled(self.acker.ack(BasicAckOptions::default()).await?)
    }
}

/// lapin answers `false` for a delivery of a closed channel or one already settled.
fn settled(done: bool) -> Result<(), BusError> {
    if done {
        Ok(())
    } else {
        Err(BusError::Unavailable(
            "delivery can no longer be settled: its channel closed, so the broker redelivers it"
                .to_owned(),
        ))
    }
}
