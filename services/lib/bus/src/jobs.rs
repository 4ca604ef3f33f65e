//! Consuming jobs on either bus: a [`JobSource`] hands out [`JobDelivery`]s,
//! each settled once by `ack`, `retry_later` or `reject`.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::rabbitmq::RabbitSettle;
use crate::{BusError, Job};

/// Where the issuer gets its jobs: the in-process queue or RabbitMQ.
#[async_trait]
pub trait JobSource: Send {
    /// The next job; `None` once the source is closed. Broker trouble is
    /// logged and retried inside, never returned.
    async fn next(&mut self) -> Option<JobDelivery>;
}

/// How long a job waits before it is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryTier {
    /// 10 s by default.
    Short,
    /// 1 min by default.
    Medium,
    /// 10 min by default.
    Long,
}

impl RetryTier {
    pub const ALL: [RetryTier; 3] = [RetryTier::Short, RetryTier::Medium, RetryTier::Long];

    pub(crate) fn index(self) -> usize {
        match self {
            RetryTier::Short => 0,
            RetryTier::Medium => 1,
            RetryTier::Long => 2,
        }
    }
}

/// Why a job reached the dead-letter queue, as the broker recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// The queue it died in, e.g. `certfleet.issue`.
    pub queue: String,
    /// The broker's reason: `delivery_limit` (delivered too often without
    /// being settled), `rejected` (a worker gave it up), `expired`.
    pub reason: String,
    /// Deliveries before it died, where the broker counts them.
    pub delivery_count: Option<u32>,
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = match self.reason.as_str() {
            "delivery_limit" => "it was delivered too often without finishing (delivery limit)",
            "rejected" => "a worker gave it up",
            "expired" => "it expired",
            other => other,
        };
        write!(f, "dead-lettered from {}: {reason}", self.queue)?;
        if let Some(count) = self.delivery_count {
            write!(f, " after {count} deliveries")?;
        }
        Ok(())
    }
}

/// One received job. Settle it after the database commit that finishes it:
/// a delivery dropped unsettled is redelivered by the broker once the
/// consumer's connection ends (in-process, it is simply gone).
#[derive(Debug)]
#[must_use = "a job delivery must be acked, retried or rejected"]
pub struct JobDelivery {
    pub job: Job,
    redelivered: bool,
    retries: u32,
    traceparent: Option<String>,
    death: Option<Death>,
    settle: Settle,
}

#[derive(Debug)]
enum Settle {
    InProcess {
        requeue: mpsc::WeakUnboundedSender<Job>,
        retry_delays: [Duration; 3],
    },
    Rabbit(Box<RabbitSettle>),
}

impl JobDelivery {
    pub(crate) fn in_process(
        job: Job,
        requeue: mpsc::WeakUnboundedSender<Job>,
        retry_delays: [Duration; 3],
    ) -> JobDelivery {
        JobDelivery {
            job,
            redelivered: false,
            retries: 0,
            traceparent: None,
            death: None,
            settle: Settle::InProcess {
                requeue,
                retry_delays,
            },
        }
    }

    pub(crate) fn rabbit(
        job: Job,
        redelivered: bool,
        retries: u32,
        traceparent: Option<String>,
        death: Option<Death>,
        settle: RabbitSettle,
    ) -> JobDelivery {
        JobDelivery {
            job,
            redelivered,
            retries,
            traceparent,
            death,
            settle: Settle::Rabbit(Box::new(settle)),
        }
    }

    /// Whether the broker delivered this message before (to a consumer that
    /// died or lost its connection without settling it).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// How many times the job went through [`retry_later`](Self::retry_later)
    /// (always 0 in-process).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The W3C `traceparent` the job was published with, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// Why the broker dead-lettered the job, for a delivery from the
    /// dead-letter queue.
    pub fn death(&self) -> Option<&Death> {
        self.death.as_ref()
    }

    /// Done: the broker forgets the message.
    pub async fn ack(self) -> Result<(), BusError> {
        match self.settle {
            Settle::InProcess { .. } => Ok(()),
            Settle::Rabbit(settle) => settle.ack().await,
        }
    }

    /// Brings the job back after the tier's delay. On RabbitMQ a copy is
    /// published (with confirm) to the tier's queue before the original is
    /// acked, so a crash in between repeats the job rather than losing it.
    pub async fn retry_later(self, tier: RetryTier) -> Result<(), BusError> {
        match self.settle {
            Settle::InProcess {
                requeue,
                retry_delays,
            } => {
                let delay = retry_delays[tier.index()];
                let job = self.job;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    // A closed bus means the process is stopping: the
                    // scheduler's reconcile pass finds the work again.
                    if let Some(sender) = requeue.upgrade() {
                        let _ = sender.send(job);
                    }
                });
                Ok(())
            }
            Settle::Rabbit(settle) => settle.retry_later(tier, self.retries).await,
        }
    }

    /// Gives up on the message: on RabbitMQ it goes to the dead-letter queue;
    /// in-process it is dropped with a log line.
    pub async fn reject(self) -> Result<(), BusError> {
        match self.settle {
            Settle::InProcess { .. } => {
                tracing::warn!(
                    organization_id = %self.job.organization_id,
                    certificate_id = %self.job.certificate_id,
                    "job rejected"
                );
                Ok(())
            }
            Settle::Rabbit(settle) => settle.reject().await,
        }
    }
}
