//! The in-process bus of the embedded mode: jobs to the issuer pool through a
//! queue, events to every watcher through a broadcast channel.

use std::time::Duration;

use async_trait::async_trait;
use certfleet_proto::v1::CertificateEvent;
use certfleet_store::OutboxMessage;
use tokio::sync::{broadcast, mpsc};

use crate::rabbitmq::Topology;
use crate::relay::Publisher;
use crate::{BusError, Job, JobDelivery, JobSource, decode_event};

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

/// The in-process job queue as a [`JobSource`]: `ack` does nothing, `reject`
/// drops the job with a log line, `retry_later` re-queues it after the delay.
#[derive(Debug)]
pub struct InProcessJobs {
    receiver: mpsc::UnboundedReceiver<Job>,
    requeue: mpsc::WeakUnboundedSender<Job>,
    retry_delays: [Duration; 3],
}

impl InProcessJobs {
    /// `receiver` is the one [`InProcessBus::new`] returned with `bus`. Retry
    /// delays are those of the broker's default topology.
    pub fn new(bus: &InProcessBus, receiver: mpsc::UnboundedReceiver<Job>) -> InProcessJobs {
        InProcessJobs {
            receiver,
            requeue: bus.jobs.downgrade(),
            retry_delays: Topology::default().retry_delays,
        }
    }

    /// Delays of the short, medium and long retry tiers.
    pub fn with_retry_delays(mut self, retry_delays: [Duration; 3]) -> InProcessJobs {
        self.retry_delays = retry_delays;
        self
    }
}

#[async_trait]
impl JobSource for InProcessJobs {
    async fn next(&mut self) -> Option<JobDelivery> {
        let job = self.receiver.recv().await?;
        Some(JobDelivery::in_process(
            job,
            self.requeue.clone(),
            self.retry_delays,
        ))
    }
}
