//! The issuer: runs jobs. A job is acted on only under the certificate's lease,
//! so two workers never order the same certificate; the order URL is saved
//! before any challenge is answered, so a retry after a crash resumes the same
//! order instead of placing a second one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use certfleet_bus::{EventBuilder, Job, JobKind, JobSource, OutboxRelay, RetryTier};
use certfleet_core::{Clock, retry_backoff_ms};
use certfleet_proto::v1::EventType;
use certfleet_store::{AuditEntry, Certificate, Effects, NewCertificateVersion, Store, StoreError};
use certfleet_vault::Vault;
use tokio::sync::Semaphore;

mod dns;
mod order;
mod renewal;
mod revoke;

pub use renewal::span;

use crate::selfcheck::SelfChecker;
use crate::{AccountCache, AcmeConfig, AcmeError, CaSettings};

/// How long a lease lasts without being extended.
const LEASE: Duration = Duration::from_secs(30);
/// Quick retries within one attempt for transient errors (bad nonce, dropped connection).
const TRANSIENT_RETRIES: u32 = 10;
/// How long a CA found down is skipped (while a fallback remains) before it
/// is tried again.
const SKIP_DOWN_CA: Duration = Duration::from_secs(60);
/// How long work waits after the CA's `rateLimited` without a retry time.
const RATE_LIMITED_PAUSE_MS: i64 = 3_600_000;

/// Runs issuance and revocation jobs.
#[derive(Clone)]
pub struct Issuer {
    store: Store,
    vault: Vault,
    relay: OutboxRelay,
    clock: Arc<dyn Clock>,
    config: Arc<AcmeConfig>,
    accounts: AccountCache,
    self_check: SelfChecker,
    owner: String,
    /// Certificates this process is working on. The lease admits its own
    /// owner again (a restarted embedded process takes its work back), so a
    /// duplicate job in the same process is kept out here instead.
    working: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// CAs found down (by name) and until when this process skips them while
    /// a fallback remains, so that not every certificate spends its quick
    /// retries on a CA known to be down.
    down_until: Arc<std::sync::Mutex<HashMap<String, tokio::time::Instant>>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A certificate the CA issued, with its sealed key, ready to store.
struct Issued {
    version: NewCertificateVersion,
    /// When to renew it, and why.
    renewal: certfleet_store::RenewalPlan,
}

impl Issuer {
    /// `owner` names this worker in leases; an embedded process keeps the same
    /// owner across restarts so it can take back what it held.
    pub fn new(
        store: Store,
        vault: Vault,
        relay: OutboxRelay,
        clock: Arc<dyn Clock>,
        config: AcmeConfig,
        owner: String,
    ) -> Issuer {
        let config = Arc::new(config);
        let accounts =
            AccountCache::new(store.clone(), vault.clone(), config.clone(), clock.clone());
        let self_check = SelfChecker::new(config.self_check.clone());
        Issuer {
            store,
            vault,
            relay,
            clock,
            config,
            accounts,
            self_check,
            owner,
            working: Arc::default(),
            down_until: Arc::default(),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs one job to its end. Outcomes, failures included, are recorded on the
    /// certificate; the error returned (also logged) says whether that worked.
    pub async fn handle(&self, job: &Job) -> Result<(), AcmeError> {
        let turn = self.certificate_turn(&job.certificate_id);
        let result = match &job.kind {
            JobKind::Issue => match turn.clone().try_lock_owned() {
                Ok(_working) => self.issue(&job.organization_id, &job.certificate_id).await,
                Err(_) => {
                    tracing::debug!(certificate_id = %job.certificate_id, "already being issued here; duplicate job skipped");
                    Ok(())
                }
            },
            // A revocation waits for an issuance in flight here, then revokes.
            JobKind::Revoke { reason } => {
                let _working = turn.clone().lock_owned().await;
                self.revoke(&job.organization_id, &job.certificate_id, reason)
                    .await
            }
        };
        drop(turn);
        self.forget_turn(&job.certificate_id);
        if let Err(error) = &result {
            tracing::warn!(
                organization_id = %job.organization_id,
                certificate_id = %job.certificate_id,
                %error,
                "job failed"
            );
        }
        result
    }

    /// The per-certificate lock of this process.
    fn certificate_turn(&self, certificate_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut working = self
            .working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        working
            .entry(certificate_id.to_owned())
            .or_default()
            .clone()
    }

    /// Drops the lock of a certificate nobody here waits for any more.
    fn forget_turn(&self, certificate_id: &str) {
        let mut working = self
            .working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if working
            .get(certificate_id)
            .is_some_and(|turn| Arc::strong_count(turn) == 1)
        {
            working.remove(certificate_id);
        }
    }

    async fn issue(&self, organization_id: &str, certificate_id: &str) -> Result<(), AcmeError> {
        let now = self.clock.now_ms();
        let lease_until = now + LEASE.as_millis() as i64;
        let Some(certificate) = self
            .store
            .acquire_certificate_lease(
                organization_id,
                certificate_id,
                &self.owner,
                now,
                lease_until,
            )
            .await?
        else {
            if let Some(deleted) = self
                .store
                .deleted_certificate_with_dns_leftovers(organization_id, certificate_id, now)
                .await?
            {
                // Queued by the scheduler: values a deleted certificate left.
                self.clean_settled_dns(&deleted).await;
                return Ok(());
            }
            tracing::debug!(
                certificate_id,
                "certificate is leased by another worker or gone"
            );
            return Ok(());
        };
        if !matches!(
            certificate.status.as_str(),
            "pending" | "issuing" | "renewing"
        ) {
            // Already done (a repeated job), or queued by the scheduler to
            // remove DNS-01 values the last attempt could not.
            if certificate.challenge_type == "dns-01" {
                self.clean_settled_dns(&certificate).await;
            }
            self.store
                .release_certificate_lease(organization_id, certificate_id, &self.owner)
                .await?;
            return Ok(());
        }
        let keeper = self.keep_lease(organization_id, certificate_id);
        let outcome = self.issue_at_issuers(&certificate).await;
        keeper.abort();
        match outcome {
            Ok(issued) => self.record_success(&certificate, issued).await,
            Err(AcmeError::Deferred { reason, until_ms }) => {
                let now = self.clock.now_ms();
                // A wait for a budget is not cut short (that would spend it
                // anyway), but one that runs past expiry is said.
                let (_, warning) = attempt_before_expiry(&certificate, until_ms, now);
                self.store
                    .record_deferred(
                        organization_id,
                        certificate_id,
                        &self.owner,
                        &reason,
                        until_ms,
                        now,
                        Effects {
                            outbox: warning.into_iter().collect(),
                            audit: Vec::new(),
                        },
                    )
                    .await?;
                self.relay.wake();
                Ok(())
            }
            Err(AcmeError::Store(StoreError::LeaseLost)) => {
                tracing::warn!(
                    certificate_id,
                    "lease lost while issuing; another worker continues"
                );
                Ok(())
            }
            Err(error) => self.record_error(&certificate, &error).await,
        }
    }

    /// Extends the lease while work goes on; aborted when the work ends.
    fn keep_lease(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let clock = self.clock.clone();
        let owner = self.owner.clone();
        let organization_id = organization_id.to_owned();
        let certificate_id = certificate_id.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                let until = clock.now_ms() + LEASE.as_millis() as i64;
                if let Err(error) = store
                    .extend_certificate_lease(&organization_id, &certificate_id, &owner, until)
                    .await
                {
                    tracing::warn!(%certificate_id, %error, "cannot extend the lease");
                }
            }
        })
    }

    /// Issues at the default CA, and at each fallback in turn while the one
    /// before keeps failing for reasons that are the CA's (unreachable, 5xx).
    async fn issue_at_issuers(&self, certificate: &Certificate) -> Result<Issued, AcmeError> {
        let issuers = &self.config.issuers;
        for (index, ca) in issuers.iter().enumerate() {
            let next = issuers.get(index + 1);
            if next.is_some() && self.known_down(&ca.name) {
                tracing::debug!(certificate_id = %certificate.id, issuer = %ca.name, "the CA was found down moments ago; trying the next configured CA");
                continue;
            }
            match self.issue_with_retries(certificate.clone(), ca).await {
                Err(error) if error.is_ca_outage() && next.is_some() => {
                    self.mark_down(&ca.name);
                    tracing::warn!(certificate_id = %certificate.id, issuer = %ca.name, next = %next.map_or("", |next| next.name.as_str()), %error, skipped_for_s = SKIP_DOWN_CA.as_secs(), "the CA keeps failing; trying the next configured CA");
                }
                Err(error) if error.problem_type() == Some("rateLimited") => {
                    let until_ms = error
                        .retry_after_ms()
                        .unwrap_or_else(|| self.clock.now_ms() + RATE_LIMITED_PAUSE_MS);
                    return Err(AcmeError::Deferred {
                        reason: format!(
                            "{} rate-limited this order ({error}); next attempt at {}",
                            ca.name,
                            renewal::format_ms(until_ms)
                        ),
                        until_ms,
                    });
                }
                other => return other,
            }
        }
        Err(AcmeError::Connection {
            context: "choosing a CA",
            message: "no CA is configured".to_owned(),
        })
    }

    /// Whether `name` was found down less than [`SKIP_DOWN_CA`] ago.
    fn known_down(&self, name: &str) -> bool {
        let down = self
            .down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        down.get(name)
            .is_some_and(|until| tokio::time::Instant::now() < *until)
    }

    fn mark_down(&self, name: &str) {
        let mut down = self
            .down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        down.insert(name.to_owned(), tokio::time::Instant::now() + SKIP_DOWN_CA);
    }

    async fn issue_with_retries(
        &self,
        mut certificate: Certificate,
        ca: &CaSettings,
    ) -> Result<Issued, AcmeError> {
        let mut retries = 0;
        loop {
            match self.run_order(&certificate, ca).await {
                Ok(version) => {
                    let account = self
                        .accounts
                        .get(&certificate.organization_id, ca)
                        .await
                        .ok();
                    let renewal = self
                        .renewal_plan(
                            &certificate,
                            ca,
                            account.as_deref(),
                            version.not_before,
                            version.not_after,
                            &version.leaf_pem,
                        )
                        .await;
                    let version = NewCertificateVersion {
                        issuer: Some(ca.name.clone()),
                        ..version
                    };
                    return Ok(Issued { version, renewal });
                }
                Err(error)
                    if error.problem_type() == Some("accountDoesNotExist") && retries == 0 =>
                {
                    retries += 1;
                    self.accounts
                        .reset(&certificate.organization_id, ca)
                        .await?;
                }
                Err(error) if error.is_transient() && retries < TRANSIENT_RETRIES => {
                    retries += 1;
                    tracing::debug!(certificate_id = %certificate.id, %error, retries, "transient error; retrying");
                    tokio::time::sleep(Duration::from_millis((50 << retries).min(1000))).await;
                    // Pick up the order URL saved by the failed try.
                    if let Some(fresh) = self
                        .store
                        .get_certificate(&certificate.organization_id, &certificate.id)
                        .await?
                    {
                        certificate = fresh;
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn record_success(
        &self,
        certificate: &Certificate,
        issued: Issued,
    ) -> Result<(), AcmeError> {
        let now = self.clock.now_ms();
        let version = &issued.version;
        let renewed = certificate.current_version_id.is_some();
        let (event_type, action) = if renewed {
            (EventType::Renewed, "certificate.renewed")
        } else {
            (EventType::Issued, "certificate.issued")
        };
        let serial = version.serial.clone();
        let not_after = version.not_after;
        // Only the lease holder adds versions, so the next number is stable here.
        let next_version = self
            .store
            .latest_version_number(&certificate.organization_id, &certificate.id)
            .await?
            .saturating_add(1);
        let mut effects = Effects::default();
        effects.audit.push(AuditEntry::new(
            Some(&certificate.organization_id),
            "system",
            action,
            Some(&certificate.id),
            now,
        ));
        let stored = self
            .store
            .record_issued(
                &certificate.organization_id,
                &certificate.id,
                &self.owner,
                issued.version,
                issued.renewal,
                now,
                Effects {
                    outbox: vec![{
                        let mut builder = EventBuilder::new(
                            event_type,
                            &certificate.organization_id,
                            &certificate.id,
                            certificate.name_list(),
                            now,
                        )
                        .version(
                            u32::try_from(next_version).unwrap_or(0),
                            &serial,
                            not_after / 1000,
                        );
                        if let Some(reason) = &certificate.pending_reason {
                            builder = builder.reason(reason);
                        }
                        builder.to_outbox()
                    }],
                    audit: effects.audit,
                },
            )
            .await?;
        self.relay.wake();
        tracing::info!(
            certificate_id = %certificate.id,
            version = stored.version,
            serial = %stored.serial,
            not_after = stored.not_after / 1000,
            "certificate issued"
        );
        Ok(())
    }

    async fn record_error(
        &self,
        certificate: &Certificate,
        error: &AcmeError,
    ) -> Result<(), AcmeError> {
        let now = self.clock.now_ms();
        let message = error.to_string();
        if self.stop_if_orphaned(certificate, error, now).await? {
            return Ok(());
        }
        let attempts = u32::try_from(certificate.attempts)
            .unwrap_or(0)
            .saturating_add(1);
        let final_failure = error.is_final_after(attempts);
        // A renewal that failed for good is tried again later all the same: the
        // store keeps the certificate valid and moves its renewal time. A
        // back-off that would run past expiry is cut to one last try an hour
        // before it, and said.
        let (next, warning) =
            attempt_before_expiry(certificate, now + retry_backoff_ms(attempts), now);
        let next_attempt_at = Some(next);
        let mut effects = Effects::default();
        effects.outbox.push(crate::failed_event(
            certificate,
            &message,
            if final_failure { "final" } else { "will retry" },
            now,
        ));
        if let Some(warning) = warning {
            effects.outbox.push(warning);
        }
        self.store
            .record_failure(
                &certificate.organization_id,
                &certificate.id,
                &self.owner,
                &message,
                final_failure,
                next_attempt_at,
                now,
                effects,
            )
            .await?;
        self.relay.wake();
        tracing::warn!(certificate_id = %certificate.id, error = %message, final_failure, "issuance attempt failed");
        Ok(())
    }
}

impl Issuer {
    /// Keeps the self-check streak of an HTTP-01 certificate and, once every
    /// name has failed it for [`ORPHAN_AFTER_MS`], stops renewing the
    /// certificate instead of spending budget on names that point elsewhere
    /// now. True when it stopped.
    async fn stop_if_orphaned(
        &self,
        certificate: &Certificate,
        error: &AcmeError,
        now: i64,
    ) -> Result<bool, AcmeError> {
        if certificate.challenge_type != "http-01" {
            return Ok(false);
        }
        let all_failed = matches!(
            error,
            AcmeError::SelfCheck {
                all_names: true,
                ..
            }
        );
        let since = self
            .store
            .note_self_check(&certificate.id, all_failed, now)
            .await?;
        let Some(since) = since.filter(|since| now - since >= ORPHAN_AFTER_MS) else {
            return Ok(false);
        };
        if certificate.current_version_id.is_none() {
            return Ok(false);
        }
        let reason = format!(
            "stopped renewing: the HTTP-01 self-check has failed for every name since {} (7 days), so the names no longer reach this platform; once they do, renew it by hand (`certfleet cert renew`), which starts renewing it again, or delete it. Last failure: {error}",
            renewal::format_ms(since)
        );
        let mut effects = Effects::default();
        effects
            .outbox
            .push(crate::failed_event(certificate, &reason, "orphaned", now));
        self.store
            .stop_renewing(
                &certificate.organization_id,
                &certificate.id,
                &self.owner,
                &reason,
                now,
                effects,
            )
            .await?;
        self.relay.wake();
        tracing::warn!(certificate_id = %certificate.id, %reason, "orphaned certificate; renewal stopped");
        Ok(true)
    }
}

/// How long every name's self-check must fail before a certificate stops
/// renewing (an orphan).
const ORPHAN_AFTER_MS: i64 = 7 * 86_400_000;

/// How long before expiry the last try of a failing renewal is made.
const LAST_TRY_BEFORE_EXPIRY_MS: i64 = 3_600_000;

/// The next attempt of a certificate whose current version expires at
/// `not_after`: `next` when that is before expiry; else one last try an hour
/// before expiry (when that is still ahead), with an `expiring` event saying
/// when the attempt after expiry comes. The event says it either way.
fn attempt_before_expiry(
    certificate: &Certificate,
    next: i64,
    now: i64,
) -> (i64, Option<certfleet_store::OutboxMessage>) {
    let Some(not_after) = certificate
        .not_after
        .filter(|_| certificate.current_version_id.is_some())
    else {
        return (next, None);
    };
    if next < not_after {
        return (next, None);
    }
    let last_try = not_after - LAST_TRY_BEFORE_EXPIRY_MS;
    let (at, words) = if last_try > now && last_try < next {
        (
            last_try,
            format!(
                "renewal keeps failing; one last attempt at {}, an hour before the certificate expires at {}",
                renewal::format_ms(last_try),
                renewal::format_ms(not_after)
            ),
        )
    } else {
        (
            next,
            format!(
                "renewal keeps failing; the next attempt, at {}, is after the certificate expires at {}",
                renewal::format_ms(next),
                renewal::format_ms(not_after)
            ),
        )
    };
    let warning = EventBuilder::new(
        EventType::Expiring,
        &certificate.organization_id,
        &certificate.id,
        certificate.name_list(),
        now,
    )
    .error(&words)
    .reason("renewal failing")
    .to_outbox();
    (at, Some(warning))
}

/// Runs jobs from a queue, at most `concurrency` at a time.
#[derive(Debug)]
pub struct IssuerPool;

impl IssuerPool {
    /// Takes jobs from `jobs` until it closes, at most `concurrency` at a time.
    /// A job is settled only after its outcome is in the database: acked, or
    /// put back for later when the database could not be written.
    pub async fn run(issuer: Issuer, mut jobs: Box<dyn JobSource>, concurrency: usize) {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        while let Some(delivery) = jobs.next().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let issuer = issuer.clone();
            tokio::spawn(async move {
                work(&issuer, delivery).await;
                drop(permit);
            });
        }
    }

    /// Like [`run`](Self::run), for a process that stops: takes jobs until
    /// `jobs` closes, then waits up to `grace` for the jobs in flight to be
    /// settled. Returns how many were still running when the grace ended.
    pub async fn run_and_drain(
        issuer: Issuer,
        jobs: &mut dyn JobSource,
        concurrency: usize,
        grace: Duration,
    ) -> usize {
        let all = u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX);
        let permits = Arc::new(Semaphore::new(all as usize));
        while let Some(delivery) = jobs.next().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let issuer = issuer.clone();
            tokio::spawn(async move {
                work(&issuer, delivery).await;
                drop(permit);
            });
        }
        match tokio::time::timeout(grace, permits.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => (all as usize).saturating_sub(permits.available_permits()),
        }
    }
}

/// Runs one job and settles it after its outcome is in the database.
/// Runs one job in the trace its message carried (the events it writes
/// continue the caller's trace), then settles it.
async fn work(issuer: &Issuer, delivery: certfleet_bus::JobDelivery) {
    let trace = delivery.traceparent().map(str::to_owned);
    let handled = certfleet_bus::in_trace(trace, issuer.handle(&delivery.job)).await;
    let settled = match handled {
        Err(AcmeError::Store(_)) => delivery.retry_later(RetryTier::Short).await,
        Ok(()) | Err(_) => delivery.ack().await,
    };
    if let Err(error) = settled {
        tracing::warn!(%error, "cannot settle a job; the broker delivers it again");
    }
}
