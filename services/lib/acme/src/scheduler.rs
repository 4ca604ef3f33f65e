//! The scheduler: one active instance (by lease) finds certificates due for
//! renewal and work that was lost (a crash, a dropped job, a backoff that ended)
//! and queues it again through the outbox.

use std::sync::Arc;
use std::time::Duration;

use certfleet_bus::{Death, Job, JobKind, OutboxRelay};
use certfleet_core::{Clock, SystemClock};
use certfleet_store::{Effects, Store, StoreError};

/// Certificates handled per query.
const BATCH: i64 = 500;
/// Renewal batches queued per pass at most (10,000 certificates).
const RENEWAL_BATCHES_PER_PASS: usize = 20;
/// DNS-01 values left in DNS by a settled certificate's last attempt (its
/// clean-up failed) are queued for removal this long after they were last
/// touched, and again this long after each try.
const DNS_CLEANUP_AFTER: Duration = Duration::from_secs(600);
/// The lease that makes one scheduler the active one.
const LEADER_LEASE_NAME: &str = "scheduler";
/// How long the active scheduler's lease lasts without renewal.
const LEADER_LEASE: Duration = Duration::from_secs(15);
/// How often the lease is taken or renewed.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Re-queued work is not queued again before this: how long a lost job (a
/// purged queue, a dropped message) waits to be healed. As long as a
/// certificate lease, after which a dead worker's work is free again too; a
/// job queued twice costs only a lease check.
const REQUEUE_AFTER: Duration = Duration::from_secs(30);

/// How long a certificate whose issuance job was dead-lettered waits before
/// the reconcile pass queues it again: a job that kept failing to finish
/// (a crashing worker, say) is not hammered at the pace of lost work.
pub const DEAD_JOB_PAUSE: Duration = Duration::from_secs(3600);

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

/// The effects that queue a `job.issue` for the certificate.
fn issue_job(organization_id: &str, certificate_id: &str, now_ms: i64) -> Effects {
    Effects {
        outbox: vec![Job::issue(organization_id, certificate_id).to_outbox(now_ms)],
        audit: Vec::new(),
    }
}

/// Moves a due certificate to `renewing` and queues its job, as a pass does
/// (also `certfleet renew-due`); false when it is no longer due (another
/// pass got there first).
pub async fn queue_renewal(
    store: &Store,
    organization_id: &str,
    certificate_id: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    store
        .mark_renewal_due(
            organization_id,
            certificate_id,
            now_ms,
            issue_job(organization_id, certificate_id, now_ms),
        )
        .await
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub renewals: usize,
    pub requeued: usize,
    /// Certificates whose current version ran out.
    pub expired: usize,
    /// Settled certificates whose left DNS-01 values were queued for removal.
    pub dns_cleanups: usize,
    /// `expiring` warnings sent (7, 3 and 1 days before expiry).
    pub expiry_warnings: usize,
}

/// Days before expiry at which a certificate without a newer version is
/// warned about, nearest first: one `expiring` event per threshold and
/// version. When the clock jumps past several, only the nearest is sent.
pub const EXPIRY_WARNING_DAYS: [i32; 3] = [1, 3, 7];

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

    /// Records a job the broker dead-lettered on its certificate, with a
    /// `failed` event: an issuance is tried again after [`DEAD_JOB_PAUSE`]; a
    /// revocation has to be asked for again. False when there was nothing to
    /// record it on (a deleted certificate, a duplicate of finished work).
    pub async fn record_dead_job(
        &self,
        job: &Job,
        death: Option<&Death>,
    ) -> Result<bool, StoreError> {
        let Some(certificate) = self
            .store
            .get_certificate(&job.organization_id, &job.certificate_id)
            .await?
        else {
            return Ok(false);
        };
        let now = self.clock.now_ms();
        let cause = death.map_or_else(|| "dead-lettered".to_owned(), ToString::to_string);
        let (message, retry_at) = match &job.kind {
            JobKind::Issue => (
                format!(
                    "the issuance job was {cause}; it is tried again in {} minutes",
                    DEAD_JOB_PAUSE.as_secs() / 60
                ),
                Some(now + DEAD_JOB_PAUSE.as_millis() as i64),
            ),
            JobKind::Revoke { .. } => (
                format!(
                    "the revocation job was {cause}; the certificate is not revoked: ask for the revocation again"
                ),
                None,
            ),
        };
        let mut effects = Effects::default();
        effects.outbox.push(crate::failed_event(
            &certificate,
            &message,
            "dead-lettered",
            now,
        ));
        let recorded = self
            .store
            .record_dead_job(
                &certificate.organization_id,
                &certificate.id,
                &message,
                retry_at,
                now,
                effects,
            )
            .await?;
        if recorded {
            self.relay.wake();
            tracing::error!(certificate_id = %certificate.id, error = %message, "job dead-lettered; recorded on the certificate");
        } else {
            tracing::warn!(certificate_id = %certificate.id, cause, "dead-lettered job of finished work; nothing to record");
        }
        Ok(recorded)
    }

    /// Takes or renews the scheduler lease; true while this instance leads.
    /// Leases are coordinated in real time (system clock), not business time.
    pub async fn lead(&self) -> Result<bool, StoreError> {
        let now = SystemClock.now_ms();
        self.store
            .acquire_named_lease(
                LEADER_LEASE_NAME,
                &self.config.owner,
                now,
                now + LEADER_LEASE.as_millis() as i64,
            )
            .await
    }

    /// Gives the lease up (at shutdown), so a standby takes over at once.
    pub async fn resign(&self) -> Result<(), StoreError> {
        self.store
            .release_named_lease(LEADER_LEASE_NAME, &self.config.owner)
            .await
    }

    /// One pass, if this instance holds the scheduler lease.
    pub async fn pass(&self) -> Result<PassReport, StoreError> {
        if !self.lead().await? {
            return Ok(PassReport::default());
        }
        self.work().await
    }

    /// The work of a pass: expiry, due renewals, lost or backed-off work.
    async fn work(&self) -> Result<PassReport, StoreError> {
        let now = self.clock.now_ms();
        let mut report = PassReport {
            expired: self.store.mark_expired(now).await?,
            ..PassReport::default()
        };
        // Batch after batch (each renewal leaves the due set), up to a cap
        // so one pass also gets to the other work.
        for _ in 0..RENEWAL_BATCHES_PER_PASS {
            let due = self.store.due_for_renewal(now, BATCH).await?;
            let full = i64::try_from(due.len()).unwrap_or(i64::MAX) >= BATCH;
            let mut marked = 0;
            for (organization_id, certificate_id) in due {
                if queue_renewal(&self.store, &organization_id, &certificate_id, now).await? {
                    marked += 1;
                }
            }
            report.renewals += marked;
            if !full || marked == 0 {
                break;
            }
        }
        let retry_at = now + REQUEUE_AFTER.as_millis() as i64;
        for (organization_id, certificate_id) in self.store.due_attempts(now, BATCH).await? {
            let effects = issue_job(&organization_id, &certificate_id, now);
            if self
                .store
                .requeue_attempt(&organization_id, &certificate_id, now, retry_at, effects)
                .await?
            {
                report.requeued += 1;
            }
        }
        report.expiry_warnings = self.warn_of_expiry(now).await?;
        let quiet_before = now - DNS_CLEANUP_AFTER.as_millis() as i64;
        for (organization_id, certificate_id) in self
            .store
            .dns_leftovers_due(now, quiet_before, BATCH)
            .await?
        {
            let effects = issue_job(&organization_id, &certificate_id, now);
            self.store
                .queue_dns_cleanup(&organization_id, &certificate_id, now, effects)
                .await?;
            report.dns_cleanups += 1;
        }
        if report != PassReport::default() {
            tracing::info!(
                renewals = report.renewals,
                requeued = report.requeued,
                expired = report.expired,
                dns_cleanups = report.dns_cleanups,
                expiry_warnings = report.expiry_warnings,
                "scheduler pass"
            );
            self.relay.wake();
        }
        Ok(report)
    }

    /// Sends the `expiring` warnings that are due (see [`EXPIRY_WARNING_DAYS`]);
    /// returns how many.
    async fn warn_of_expiry(&self, now: i64) -> Result<usize, StoreError> {
        let mut sent = 0;
        for (index, days) in EXPIRY_WARNING_DAYS.iter().enumerate() {
            let passed = &EXPIRY_WARNING_DAYS[index + 1..];
            let left = if *days == 1 {
                "1 day left".to_owned()
            } else {
                format!("{days} days left")
            };
            let due = self.store.expiry_warnings_due(*days, now, BATCH).await?;
            for (certificate, version) in due {
                let event = certfleet_bus::EventBuilder::new(
                    certfleet_proto::v1::EventType::Expiring,
                    &certificate.organization_id,
                    &certificate.id,
                    certificate.name_list(),
                    now,
                )
                .version(
                    u32::try_from(version.version).unwrap_or(0),
                    &version.serial,
                    version.not_after / 1000,
                )
                .reason(&left)
                .to_outbox();
                let effects = Effects {
                    outbox: vec![event],
                    audit: Vec::new(),
                };
                if self
                    .store
                    .record_expiry_warning(
                        &certificate.id,
                        &version.id,
                        *days,
                        passed,
                        now,
                        effects,
                    )
                    .await?
                {
                    tracing::warn!(certificate_id = %certificate.id, version = version.version, not_after = version.not_after / 1000, left, "certificate expires soon and has no newer version");
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }

    /// Runs passes forever at the configured interval.
    pub async fn run(self) {
        self.run_until(std::future::pending()).await;
    }

    /// Runs until `stop` completes, then resigns. Every heartbeat (at most
    /// 5 s) the lease is taken or renewed, so a standby takes over within a
    /// lease (15 s) of the leader's death; the leader works at the interval,
    /// and at once when it has just become leader. A pass in progress is
    /// finished before stopping.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.config.interval.min(HEARTBEAT));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = std::pin::pin!(stop);
        let mut last_work: Option<tokio::time::Instant> = None;
        let mut leading = false;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = &mut stop => break,
            }
            let now_leading = match self.lead().await {
                Ok(leading) => leading,
                Err(error) => {
                    tracing::warn!(%error, "cannot take or renew the scheduler lease");
                    continue;
                }
            };
            if now_leading && !leading {
                tracing::info!(owner = %self.config.owner, "this scheduler leads now");
            }
            let due = last_work.is_none_or(|at| at.elapsed() >= self.config.interval);
            if now_leading && (due || !leading) {
                match self.work().await {
                    Ok(_) => last_work = Some(tokio::time::Instant::now()),
                    Err(error) => tracing::warn!(%error, "scheduler pass failed"),
                }
            }
            leading = now_leading;
        }
        if leading && let Err(error) = self.resign().await {
            tracing::warn!(%error, "cannot give up the scheduler lease");
        }
    }
}
