//! Publishes outbox rows to RabbitMQ: persistent, confirmed by the broker
//! before `publish` returns, so the relay deletes only rows the broker holds.

use std::time::Instant;

use async_trait::async_trait;
use certfleet_store::OutboxMessage;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::Mutex;

use super::{EVENTS_EXCHANGE, JOBS_EXCHANGE, JobQueue, RabbitConfig, TRACEPARENT_HEADER, backoff};
use crate::{BusError, Job, Publisher, new_traceparent, valid_traceparent};

const EVENT_PREFIX: &str = "event.";
/// AMQP delivery mode of messages written to disk.
const PERSISTENT: u8 = 2;

/// A [`Publisher`] over one connection with publisher confirms. While the
/// broker is away `publish` fails fast; the first call after the backoff
/// delay reconnects.
pub struct RabbitPublisher {
    config: RabbitConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    link: Option<(Connection, Channel)>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl std::fmt::Debug for RabbitPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitPublisher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Where one outbox row goes and how it is labelled.
struct Route {
    exchange: &'static str,
    routing_key: String,
    content_type: &'static str,
    mandatory: bool,
}

impl RabbitPublisher {
    /// Connects now, so a wrong URL or a missing broker shows at start-up.
    pub async fn connect(config: RabbitConfig) -> Result<RabbitPublisher, BusError> {
        let publisher = RabbitPublisher::lazy(config);
        publisher.channel().await?;
        Ok(publisher)
    }

    /// Connects on the first publish.
    pub fn lazy(config: RabbitConfig) -> RabbitPublisher {
        RabbitPublisher {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// Closes the connection; a later publish opens a new one.
    pub async fn close(&self) {
        let link = self.state.lock().await.link.take();
        if let Some((connection, _)) = link {
            let _ = connection.close(200, "closing".into()).await;
        }
    }

    /// The open confirm-mode channel, opening one when there is none and the
    /// backoff delay has passed.
    async fn channel(&self) -> Result<Channel, BusError> {
        let mut state = self.state.lock().await;
        if let Some((connection, channel)) = &state.link {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
            state.link = None;
        }
        if let Some(retry_at) = state.retry_at
            && Instant::now() < retry_at
        {
            return Err(BusError::Unavailable(format!(
                "reconnecting in {} ms",
                retry_at
                    .saturating_duration_since(Instant::now())
                    .as_millis()
            )));
        }
        let opened = async {
            let (connection, channel) = self.config.open().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, BusError>((connection, channel))
        }
        .await;
        match opened {
            Ok((connection, channel)) => {
                if state.failures > 0 {
                    tracing::info!("rabbitmq publisher reconnected");
                }
                state.failures = 0;
                state.retry_at = None;
                state.link = Some((connection, channel.clone()));
                Ok(channel)
            }
            Err(error) => {
                state.failures += 1;
                let delay = backoff(state.failures);
                state.retry_at = Some(Instant::now() + delay);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "rabbitmq publisher cannot connect");
                Err(error)
            }
        }
    }

    /// Forgets `channel` if it is still the current one, so the next publish reconnects.
    async fn drop_channel(&self, channel: &Channel) {
        let mut state = self.state.lock().await;
        if state
            .link
            .as_ref()
            .is_some_and(|(_, current)| current.id() == channel.id())
        {
            state.link = None;
        }
    }
}

/// The exchange and routing key of a row; `None` for topics this bus does not carry.
fn route(message: &OutboxMessage) -> Result<Option<Route>, BusError> {
    if let Some(event) = message.topic.strip_prefix(EVENT_PREFIX) {
        return Ok(Some(Route {
            exchange: EVENTS_EXCHANGE,
            routing_key: event.to_owned(),
            content_type: "application/x-protobuf",
            // Nobody listening is not an error for an event.
            mandatory: false,
        }));
    }
    if Job::from_outbox(message)?.is_none() {
        return Ok(None);
    }
    let queue = JobQueue::for_topic(&message.topic).ok_or_else(|| BusError::Decode {
        topic: message.topic.clone(),
        reason: "unknown job topic".to_owned(),
    })?;
    Ok(Some(Route {
        exchange: JOBS_EXCHANGE,
        routing_key: queue.routing_key().to_owned(),
        content_type: "application/json",
        mandatory: true,
    }))
}

fn properties(message: &OutboxMessage, content_type: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    let traceparent = message
        .traceparent
        .clone()
        .filter(|value| valid_traceparent(value))
        .unwrap_or_else(new_traceparent);
    headers.insert(
        TRACEPARENT_HEADER.into(),
        AMQPValue::LongString(LongString::from(traceparent)),
    );
    if let Some(organization_id) = &message.organization_id {
        headers.insert(
            "organization_id".into(),
            AMQPValue::LongString(LongString::from(organization_id.as_str())),
        );
    }
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(content_type.into())
        .with_message_id(message.id.as_str().into())
        .with_type(message.topic.as_str().into())
        .with_timestamp(u64::try_from(message.created_at / 1000).unwrap_or_default())
        .with_app_id("certfleet".into())
        .with_headers(headers)
}

#[async_trait]
impl Publisher for RabbitPublisher {
    async fn publish(&self, message: &OutboxMessage) -> Result<(), BusError> {
        let Some(route) = route(message)? else {
            tracing::debug!(topic = %message.topic, "not a bus topic; skipped");
            return Ok(());
        };
        let channel = self.channel().await?;
        let options = BasicPublishOptions {
            mandatory: route.mandatory,
            ..BasicPublishOptions::default()
        };
        let confirmation = async {
            channel
                .basic_publish(
                    route.exchange.into(),
                    route.routing_key.as_str().into(),
                    options,
                    &message.payload,
                    properties(message, route.content_type),
                )
                .await?
                .await
        }
        .await;
        let confirmation = match confirmation {
            Ok(confirmation) => confirmation,
            Err(error) => {
                self.drop_channel(&channel).await;
                return Err(error.into());
            }
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(BusError::Unroutable {
                message_id: message.id.clone(),
                routing_key: route.routing_key,
            }),
            Confirmation::Nack(_) => Err(BusError::Nacked {
                message_id: message.id.clone(),
            }),
            Confirmation::NotRequested => {
                // Cannot happen on a confirm-mode channel; never report unconfirmed as sent.
                self.drop_channel(&channel).await;
                Err(BusError::Unavailable(
                    "channel lost confirm mode".to_owned(),
                ))
            }
        }
    }
}
