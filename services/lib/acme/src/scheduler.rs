//! The scheduler: one active instance (by lease) finds certificates due for
//! renewal and work that was lost (a crash, a dropped job, a backoff that ended)
//! and queues it again through the outbox.

use std::sync::Arc;
use std::time::Duration;

use certfleet_bus::{Job, OutboxRelay};
use certfleet_core::Clock;
use certfleet_store::{Effects, Store, StoreError};

/// Certificates handled per pass and query.
const BATCH: i64 = 500;
/// Re-queued work is not queued again before this.
const REQUEUE_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub interval: Duration,
    /// Names this instance in the scheduler lease.
    pub owner: String,
}

#[derive(Clone)]
pub struct Scheduler {
    store: Store,
    relay: OutboxRelay,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub renewals: usize,
    pub requeued: usize,
    /// Certificates whose current version ran out.
    pub expired: usize,
}

impl Scheduler {
    pub fn new(
        store: Store,
        relay: OutboxRelay,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
    ) -> Scheduler {
        Scheduler {
            store,
            relay,
            clock,
            config,
        }
    }

    /// One pass, if this instance holds the scheduler lease.
    pub async fn pass(&self) -> Result<PassReport, StoreError> {
        let now = self.clock.now_ms();
        let lease_until = now + (self.config.interval * 3).as_millis() as i64;
        if !self
            .store
            .acquire_named_lease("scheduler", &self.config.owner, now, lease_until)
            .await?
        {
            return Ok(PassReport::default());
        }
        let mut report = PassReport {
            expired: self.store.mark_expired(now).await?,
            ..PassReport::default()
        };
        for (organization_id, certificate_id) in self.store.due_for_renewal(now, BATCH).await? {
            let effects = Effects {
                outbox: vec![Job::issue(&organization_id, &certificate_id).to_outbox(now)],
                audit: Vec::new(),
            };
            if self
                .store
                .mark_renewal_due(&organization_id, &certificate_id, now, effects)
                .await?
            {
                report.renewals += 1;
            }
        }
        let retry_at = now + REQUEUE_AFTER.as_millis() as i64;
        for (organization_id, certificate_id) in self.store.due_attempts(now, BATCH).await? {
            let effects = Effects {
                outbox: vec![Job::issue(&organization_id, &certificate_id).to_outbox(now)],
                audit: Vec::new(),
            };
            if self
                .store
                .requeue_attempt(&organization_id, &certificate_id, now, retry_at, effects)
                .await?
            {
                report.requeued += 1;
            }
        }
        if report != PassReport::default() {
            tracing::info!(
                renewals = report.renewals,
                requeued = report.requeued,
                expired = report.expired,
                "scheduler pass"
            );
            self.relay.wake();
        }
        Ok(report)
    }

    /// Runs passes forever at the configured interval.
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = self.pass().await {
                tracing::warn!(%error, "scheduler pass failed");
            }
        }
    }
}
