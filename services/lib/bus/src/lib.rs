//! Jobs and events: what goes into the outbox, how it is encoded, and how it
//! reaches workers and watchers (in-process here; RabbitMQ in the distributed mode).

mod inprocess;
mod messages;
mod relay;

pub use inprocess::InProcessBus;
pub use messages::{EventBuilder, Job, JobKind, decode_event, event_message};
pub use relay::{OutboxRelay, Publisher};

/// Where watchers get lifecycle events from (the in-process bus here; a broker
/// queue in the distributed mode).
pub trait EventSource: Send + Sync {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<certfleet_proto::v1::CertificateEvent>;
}

/// Errors of encoding and publishing.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot decode {topic} message: {reason}")]
    Decode { topic: String, reason: String },
    #[error("bus closed")]
    Closed,
    #[error(transparent)]
    Store(#[from] certfleet_store::StoreError),
}
