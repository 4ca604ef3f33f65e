//! The issuer: runs jobs. A job is acted on only under the certificate's lease,
//! so two workers never order the same certificate; the order URL is saved
//! before any challenge is answered, so a retry after a crash resumes the same
//! order instead of placing a second one.

use std::sync::Arc;
use std::time::Duration;

use certfleet_bus::{EventBuilder, Job, JobKind, OutboxRelay};
use certfleet_core::{Clock, KeyType, RevocationReason, renew_at, retry_backoff_ms};
use certfleet_proto::v1::EventType;
use certfleet_store::{
    AcmeChallenge, AuditEntry, Certificate, Effects, NewCertificateVersion, Store, StoreError,
    new_id,
};
use certfleet_vault::{EncryptionContext, Vault};
use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus, RetryPolicy,
    RevocationRequest,
};
use tokio::sync::{Semaphore, mpsc};

use crate::accounts::acme_call;
use crate::certs::{csr_der, key_pem};
use crate::selfcheck::SelfChecker;
use crate::{AccountCache, AcmeConfig, AcmeError, generate_key, parse_chain};

/// How long a lease lasts without being extended.
const LEASE: Duration = Duration::from_secs(60);
/// Quick retries within one attempt for transient errors (bad nonce, dropped connection).
const TRANSIENT_RETRIES: u32 = 10;

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
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs one job to its end; errors are recorded on the certificate, not returned.
    pub async fn handle(&self, job: Job) {
        let result = match &job.kind {
            JobKind::Issue => self.issue(&job.organization_id, &job.certificate_id).await,
            JobKind::Revoke { reason } => {
                self.revoke(&job.organization_id, &job.certificate_id, reason)
                    .await
            }
        };
        if let Err(error) = result {
            tracing::warn!(
                organization_id = %job.organization_id,
                certificate_id = %job.certificate_id,
                %error,
                "job failed"
            );
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
            // Already done (a repeated job): nothing to do.
            self.store
                .release_certificate_lease(organization_id, certificate_id, &self.owner)
                .await?;
            return Ok(());
        }
        let keeper = self.keep_lease(organization_id, certificate_id);
        let outcome = self.issue_with_retries(certificate.clone()).await;
        keeper.abort();
        match outcome {
            Ok(issued) => self.record_success(&certificate, issued).await,
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

    async fn issue_with_retries(&self, mut certificate: Certificate) -> Result<Issued, AcmeError> {
        let mut retries = 0;
        loop {
            match self.run_order(&certificate).await {
                Ok(issued) => return Ok(issued),
                Err(error)
                    if error.problem_type() == Some("accountDoesNotExist") && retries == 0 =>
                {
                    retries += 1;
                    self.accounts.reset(&certificate.organization_id).await?;
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

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new()
            .initial_delay(Duration::from_millis(20))
            .backoff(1.5)
            .timeout(self.config.order_timeout)
    }

    /// Resumes the saved order if it can still be finished, else places a new one.
    async fn open_order(&self, certificate: &Certificate) -> Result<Order, AcmeError> {
        let account = self.accounts.get(&certificate.organization_id).await?;
        let timeout = self.config.request_timeout;
        if let Some(url) = &certificate.pending_order_url {
            match acme_call!("resuming the order", timeout, account.order(url.clone())) {
                // A processing or valid order was finalized with a key this process
                // no longer has: it cannot be finished, so a new order is needed.
                Ok(mut order) => {
                    if matches!(
                        order.state().status,
                        OrderStatus::Pending | OrderStatus::Ready
                    ) {
                        tracing::info!(certificate_id = %certificate.id, order_url = %url, "resuming order");
                        return Ok(order);
                    }
                }
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => {
                    tracing::info!(certificate_id = %certificate.id, %error, "saved order unusable; placing a new one");
                }
            }
        }
        let identifiers: Vec<Identifier> = certificate
            .name_list()
            .into_iter()
            .map(Identifier::Dns)
            .collect();
        let order = acme_call!(
            "placing the order",
            timeout,
            account.new_order(&NewOrder::new(&identifiers))
        )?;
        let status = if certificate.current_version_id.is_some() {
            "renewing"
        } else {
            "issuing"
        };
        self.store
            .record_progress(
                &certificate.organization_id,
                &certificate.id,
                &self.owner,
                status,
                Some(order.url()),
                self.clock.now_ms(),
            )
            .await?;
        tracing::info!(certificate_id = %certificate.id, order_url = %order.url(), "order placed");
        Ok(order)
    }

    async fn run_order(&self, certificate: &Certificate) -> Result<Issued, AcmeError> {
        let started = std::time::Instant::now();
        let phase = |name: &'static str| {
            tracing::debug!(certificate_id = %certificate.id, phase = name, elapsed_ms = started.elapsed().as_millis() as u64, "issuance progress");
        };
        let mut order = self.open_order(certificate).await?;
        phase("order open");
        if order.state().status == OrderStatus::Pending {
            self.answer_challenges(certificate, &mut order).await?;
            phase("challenges answered");
        }
        let policy = self.retry_policy();
        let status = acme_call!(
            "waiting for validation",
            self.config.order_timeout,
            order.poll_ready(&policy)
        )?;
        phase("order ready");
        let challenge_status = if status == OrderStatus::Invalid {
            "invalid"
        } else {
            "valid"
        };
        self.store
            .finish_order_challenges(
                &certificate.organization_id,
                order.url(),
                challenge_status,
                self.clock.now_ms(),
            )
            .await?;
        if status == OrderStatus::Invalid {
            return Err(self.explain_invalid(&mut order).await);
        }
        let key_type = KeyType::parse("key_type", &certificate.key_type)
            .map_err(|error| AcmeError::Key(error.to_string()))?;
        let key = generate_key(key_type)?;
        let names = certificate.name_list();
        let csr = csr_der(&names, &key)?;
        let timeout = self.config.request_timeout;
        phase("key generated");
        acme_call!("finalizing the order", timeout, order.finalize_csr(&csr))?;
        phase("finalized");
        // A fast CA has the certificate ready by now: fetch it without the first poll delay.
        let chain = match acme_call!("downloading the certificate", timeout, order.certificate())? {
            Some(chain) => chain,
            None => acme_call!(
                "downloading the certificate",
                self.config.order_timeout,
                order.poll_certificate(&policy)
            )?,
        };
        phase("certificate downloaded");
        let parsed = parse_chain(&chain)?;
        if parsed.public_key_der != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(AcmeError::BadCertificate(
                "the certificate does not match the key it was requested for".to_owned(),
            ));
        }
        let pem = key_pem(&key);
        let context = EncryptionContext::private_key(&certificate.organization_id, &certificate.id);
        let key_sealed = self.vault.seal(&context, pem.as_bytes()).await?;
        Ok(Issued {
            version: NewCertificateVersion {
                id: new_id(),
                serial: parsed.serial,
                fingerprint_sha256: parsed.fingerprint_sha256,
                not_before: parsed.not_before_ms,
                not_after: parsed.not_after_ms,
                leaf_pem: parsed.leaf_pem,
                chain_pem: parsed.chain_pem,
                key_sealed,
                key_type: key_type.as_str().to_owned(),
                order_url: order.url().to_owned(),
            },
        })
    }

    /// HTTP-01 for every pending authorization: publish, self-check, tell the CA.
    async fn answer_challenges(
        &self,
        certificate: &Certificate,
        order: &mut Order,
    ) -> Result<(), AcmeError> {
        let timeout = self.config.request_timeout;
        let order_url = order.url().to_owned();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization
                .map_err(|error| AcmeError::problem("reading an authorization", timeout, error))?;
            let name = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::AuthorizationFailed {
                        name,
                        detail: format!("the authorization is {other:?}").to_lowercase(),
                    });
                }
            }
            let authorization_url = authorization.url().to_owned();
            let Some(mut challenge) = authorization.challenge(ChallengeType::Http01) else {
                return Err(AcmeError::ChallengeUnavailable {
                    name,
                    challenge: "http-01".to_owned(),
                });
            };
            let key_authorization = challenge.key_authorization();
            let now = self.clock.now_ms();
            self.store
                .upsert_challenge(AcmeChallenge {
                    id: new_id(),
                    organization_id: certificate.organization_id.clone(),
                    certificate_id: certificate.id.clone(),
                    order_url: order_url.clone(),
                    authorization_url,
                    name: name.clone(),
                    challenge_type: "http-01".to_owned(),
                    token: challenge.token.clone(),
                    key_authorization: key_authorization.as_str().to_owned(),
                    dns_record_name: None,
                    dns_record_value: None,
                    status: "pending".to_owned(),
                    validated_at: None,
                    error: None,
                    created_at: now,
                    updated_at: now,
                })
                .await?;
            self.self_check
                .check(&name, &challenge.token, key_authorization.as_str())
                .await?;
            acme_call!("answering the challenge", timeout, challenge.set_ready())?;
        }
        Ok(())
    }

    /// Why an order went invalid, in plain words, from its authorizations.
    async fn explain_invalid(&self, order: &mut Order) -> AcmeError {
        let mut authorizations = order.authorizations();
        while let Some(Ok(authorization)) = authorizations.next().await {
            if authorization.status == AuthorizationStatus::Valid {
                continue;
            }
            let name = authorization.identifier().to_string();
            let detail = authorization
                .challenges
                .iter()
                .find_map(|challenge| challenge.error.as_ref())
                .map(|problem| {
                    problem
                        .detail
                        .clone()
                        .unwrap_or_else(|| problem.to_string())
                })
                .unwrap_or_else(|| {
                    format!("the authorization is {:?}", authorization.status).to_lowercase()
                });
            return AcmeError::AuthorizationFailed { name, detail };
        }
        AcmeError::OrderInvalid("no reason given".to_owned())
    }

    async fn record_success(
        &self,
        certificate: &Certificate,
        issued: Issued,
    ) -> Result<(), AcmeError> {
        let now = self.clock.now_ms();
        let version = &issued.version;
        let renew_at_ms = renew_at(
            version.not_before,
            version.not_after,
            certificate.renew_before_ms,
        );
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
                renew_at_ms,
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
        let attempts = u32::try_from(certificate.attempts)
            .unwrap_or(0)
            .saturating_add(1);
        let final_failure = error.is_final_after(attempts);
        // A renewal that failed for good is tried again later all the same: the
        // store keeps the certificate valid and moves its renewal time.
        let next_attempt_at = Some(now + retry_backoff_ms(attempts));
        let mut effects = Effects::default();
        effects.outbox.push(
            EventBuilder::new(
                EventType::Failed,
                &certificate.organization_id,
                &certificate.id,
                certificate.name_list(),
                now,
            )
            .error(&message)
            .reason(if final_failure { "final" } else { "will retry" })
            .to_outbox(),
        );
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

    /// Revokes the current version. Takes the certificate's lease first, so a
    /// renewal in flight finishes (or gives up) before, and cannot undo it after.
    async fn revoke(
        &self,
        organization_id: &str,
        certificate_id: &str,
        reason: &str,
    ) -> Result<(), AcmeError> {
        let Some(certificate) = self
            .lease_for_revocation(organization_id, certificate_id)
            .await?
        else {
            return Ok(());
        };
        let result = self.revoke_leased(&certificate, reason).await;
        if let Err(error) = &result {
            let now = self.clock.now_ms();
            let message = format!(
                "revocation failed: {error}; the certificate is still valid, ask again with `certfleet cert revoke`"
            );
            let effects = Effects {
                outbox: vec![
                    EventBuilder::new(
                        EventType::Failed,
                        organization_id,
                        certificate_id,
                        certificate.name_list(),
                        now,
                    )
                    .error(&message)
                    .reason("revocation")
                    .to_outbox(),
                ],
                audit: Vec::new(),
            };
            self.store
                .record_error_note(organization_id, certificate_id, &message, now, effects)
                .await?;
            self.relay.wake();
        }
        self.store
            .release_certificate_lease(organization_id, certificate_id, &self.owner)
            .await?;
        result
    }

    /// Waits (up to two lease lifetimes) for the certificate's lease.
    async fn lease_for_revocation(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> Result<Option<Certificate>, AcmeError> {
        let deadline = tokio::time::Instant::now() + LEASE * 2;
        loop {
            let now = self.clock.now_ms();
            let until = now + LEASE.as_millis() as i64;
            if let Some(certificate) = self
                .store
                .acquire_certificate_lease(organization_id, certificate_id, &self.owner, now, until)
                .await?
            {
                return Ok(Some(certificate));
            }
            if self
                .store
                .get_certificate(organization_id, certificate_id)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(AcmeError::Store(StoreError::LeaseLost));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn revoke_leased(
        &self,
        certificate: &Certificate,
        reason: &str,
    ) -> Result<(), AcmeError> {
        let organization_id = certificate.organization_id.as_str();
        let certificate_id = certificate.id.as_str();
        let Some(version_id) = certificate.current_version_id.clone() else {
            return Ok(());
        };
        let versions = self
            .store
            .versions_by_ids(organization_id, std::slice::from_ref(&version_id))
            .await?;
        let Some(version) = versions.into_iter().next() else {
            return Ok(());
        };
        if version.revoked_at.is_some() {
            return Ok(());
        }
        let reason = RevocationReason::parse("reason", reason)
            .map_err(|error| AcmeError::Key(error.to_string()))?;
        let parsed = parse_chain(&version.leaf_pem)?;
        let account = self.accounts.get(organization_id).await?;
        let der = rustls_pki_types::CertificateDer::from(parsed.leaf_der);
        let request = RevocationRequest {
            certificate: &der,
            reason: Some(acme_reason(reason)),
        };
        let mut tries = 0;
        loop {
            match acme_call!(
                "revoking the certificate",
                self.config.request_timeout,
                account.revoke(&request)
            ) {
                Ok(()) => break,
                Err(error) if error.problem_type() == Some("alreadyRevoked") => break,
                Err(error) if error.is_retryable() && tries < TRANSIENT_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis((100 << tries).min(5_000))).await;
                }
                Err(error) => return Err(error),
            }
        }
        let now = self.clock.now_ms();
        let effects = Effects {
            outbox: vec![
                EventBuilder::new(
                    EventType::Revoked,
                    organization_id,
                    certificate_id,
                    certificate.name_list(),
                    now,
                )
                .version(
                    u32::try_from(version.version).unwrap_or(0),
                    &version.serial,
                    version.not_after / 1000,
                )
                .reason(reason.as_str())
                .to_outbox(),
            ],
            audit: vec![AuditEntry::new(
                Some(organization_id),
                "system",
                "certificate.revoked",
                Some(certificate_id),
                now,
            )],
        };
        self.store
            .record_revoked(
                organization_id,
                certificate_id,
                &version.id,
                reason.as_str(),
                now,
                effects,
            )
            .await?;
        self.relay.wake();
        tracing::info!(certificate_id, serial = %version.serial, reason = %reason, "certificate revoked");
        Ok(())
    }
}

fn acme_reason(reason: RevocationReason) -> instant_acme::RevocationReason {
    match reason {
        RevocationReason::Unspecified => instant_acme::RevocationReason::Unspecified,
        RevocationReason::KeyCompromise => instant_acme::RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged => instant_acme::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => instant_acme::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => {
            instant_acme::RevocationReason::CessationOfOperation
        }
    }
}

/// Runs jobs from a queue, at most `concurrency` at a time.
#[derive(Debug)]
pub struct IssuerPool;

impl IssuerPool {
    pub async fn run(issuer: Issuer, mut jobs: mpsc::UnboundedReceiver<Job>, concurrency: usize) {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        while let Some(job) = jobs.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let issuer = issuer.clone();
            tokio::spawn(async move {
                issuer.handle(job).await;
                drop(permit);
            });
        }
    }
}
