//! The in-process bus of the embedded mode: jobs to the issuer pool through a
//! queue, events to every watcher through a broadcast channel.

use async_trait::async_trait;
use certfleet_proto::v1::CertificateEvent;
use certfleet_store::OutboxMessage;
use tokio::sync::{broadcast, mpsc};

use crate::relay::Publisher;
use crate::{BusError, Job, decode_event};

/// Events kept for slow watchers before they start missing some.
const EVENT_BUFFER: usize = 4096;

#[derive(Debug, Clone)]
pub struct InProcessBus {
    jobs: mpsc::UnboundedSender<Job>,
    events: broadcast::Sender<CertificateEvent>,
}

impl InProcessBus {
    /// The bus and the receiving end of its job queue.
    pub fn new() -> (InProcessBus, mpsc::UnboundedReceiver<Job>) {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        (InProcessBus { jobs, events }, receiver)
    }

    /// Queues a job directly (used when a job is retried in place).
    pub fn send_job(&self, job: Job) -> Result<(), BusError> {
        self.jobs.send(job).map_err(|_| BusError::Closed)
    }
}

#[async_trait]
impl Publisher for InProcessBus {
    async fn publish(&self, message: &OutboxMessage) -> Result<(), BusError> {
        if let Some(job) = Job::from_outbox(message)? {
            return self.send_job(job);
        }
        if let Some(event) = decode_event(message)? {
            // No watcher is not an error: the event is simply not seen by anyone.
            let _ = self.events.send(event);
        }
        Ok(())
    }
}

impl crate::EventSource for InProcessBus {
    fn subscribe(&self) -> broadcast::Receiver<CertificateEvent> {
        self.events.subscribe()
    }
}
