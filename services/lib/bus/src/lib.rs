//! Jobs and events: what goes into the outbox, how it is encoded, and how it
//! reaches workers and watchers (in-process in the embedded mode; RabbitMQ in
//! the distributed mode).

mod inprocess;
mod jobs;
mod messages;
pub mod rabbitmq;
mod relay;
mod trace;

pub use inprocess::{InProcessBus, InProcessJobs};
pub use jobs::{Death, JobDelivery, JobSource, RetryTier};
pub use messages::{EventBuilder, Job, JobKind, decode_event, event_message};
pub use relay::{OutboxRelay, Publisher};
pub use trace::{current_traceparent, in_trace, new_traceparent, valid_traceparent};

/// Where watchers get lifecycle events from (the in-process bus here; a broker
/// queue in the distributed mode).
pub trait EventSource: Send + Sync {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<certfleet_proto::v1::CertificateEvent>;
}

/// Errors of encoding, publishing and consuming.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot decode {topic} message: {reason}")]
    Decode { topic: String, reason: String },
    #[error("bus closed")]
    Closed,
    #[error(transparent)]
    Store(#[from] certfleet_store::StoreError),
    #[error("rabbitmq: {0}")]
    Broker(#[from] lapin::Error),
    #[error("rabbitmq unavailable: {0}")]
    Unavailable(String),
    #[error("rabbitmq refused message {message_id}")]
    Nacked { message_id: String },
    #[error("rabbitmq could not route message {message_id} with routing key {routing_key}")]
    Unroutable {
        message_id: String,
        routing_key: String,
    },
}
