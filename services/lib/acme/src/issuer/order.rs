//! One ACME order: resume or place it, answer HTTP-01, wait, finalize with a
//! fresh key, download and check the certificate.

use std::time::Duration;

use certfleet_core::KeyType;
use certfleet_store::{AcmeChallenge, Certificate, NewCertificateVersion, StoreError, new_id};
use certfleet_vault::EncryptionContext;
use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus, RetryPolicy,
};

use super::{Issued, Issuer};
use crate::accounts::acme_call;
use crate::certs::{csr_der, key_pem};
use crate::{AcmeError, generate_key, parse_chain};

impl Issuer {
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
                Ok(mut order) => {
                    let status = order.state().status;
                    // A finalized order can be finished only with the key saved
                    // before its finalize.
                    let finishable = match status {
                        OrderStatus::Pending | OrderStatus::Ready => true,
                        OrderStatus::Processing | OrderStatus::Valid => {
                            certificate.pending_key_sealed.is_some()
                        }
                        OrderStatus::Invalid => false,
                    };
                    if finishable {
                        tracing::info!(certificate_id = %certificate.id, order_url = %url, ?status, "resuming order");
                        return Ok(order);
                    }
                    if status != OrderStatus::Invalid {
                        tracing::warn!(certificate_id = %certificate.id, order_url = %url, ?status, "saved order was finalized with a key that is lost; placing a new one");
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

    pub(super) async fn run_order(&self, certificate: &Certificate) -> Result<Issued, AcmeError> {
        let started = std::time::Instant::now();
        let mut order = self.open_order(certificate).await?;
        let result = self.complete_order(certificate, &mut order, started).await;
        // When the order is given up, stop answering its tokens (a resumed order
        // publishes them again). Not on a transient error, which is retried at
        // once while the CA may still be validating, nor on a lost lease, where
        // another worker is answering them now.
        let given_up = result.as_ref().is_err_and(|error| {
            !error.is_transient() && !matches!(error, AcmeError::Store(StoreError::LeaseLost))
        });
        if given_up
            && let Err(error) = self
                .store
                .finish_order_challenges(
                    &certificate.organization_id,
                    order.url(),
                    "invalid",
                    self.clock.now_ms(),
                )
                .await
        {
            tracing::warn!(certificate_id = %certificate.id, %error, "cannot close the order's challenges");
        }
        result
    }

    /// Everything after the order is open: challenges, validation, finalize,
    /// download, checks, sealing the key.
    async fn complete_order(
        &self,
        certificate: &Certificate,
        order: &mut Order,
        started: std::time::Instant,
    ) -> Result<Issued, AcmeError> {
        let phase = |name: &'static str| {
            tracing::debug!(certificate_id = %certificate.id, phase = name, elapsed_ms = started.elapsed().as_millis() as u64, "issuance progress");
        };
        phase("order open");
        let key_type = KeyType::parse("key_type", &certificate.key_type)
            .map_err(|error| AcmeError::Key(error.to_string()))?;
        let context = EncryptionContext::private_key(&certificate.organization_id, &certificate.id);
        let timeout = self.config.request_timeout;
        let policy = self.retry_policy();
        let finalized = matches!(
            order.state().status,
            OrderStatus::Processing | OrderStatus::Valid
        );
        let (key_pem, key_sealed) = match (&certificate.pending_key_sealed, finalized) {
            // Resumed after its finalize: the key was saved before it.
            (Some(sealed), true) => (self.vault.open(&context, sealed).await?, sealed.clone()),
            _ => {
                self.validate(certificate, order, &phase).await?;
                let key = generate_key(key_type)?;
                let csr = csr_der(&certificate.name_list(), &key)?;
                let pem = key_pem(&key);
                let sealed = self.vault.seal(&context, pem.as_bytes()).await?;
                // Saved before the CA is asked, so a crash after it loses no key.
                self.store
                    .record_pending_key(
                        &certificate.organization_id,
                        &certificate.id,
                        &self.owner,
                        &sealed,
                    )
                    .await?;
                phase("key generated");
                acme_call!("finalizing the order", timeout, order.finalize_csr(&csr))?;
                phase("finalized");
                (zeroize::Zeroizing::new(pem.as_bytes().to_vec()), sealed)
            }
        };
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
        let key_text = std::str::from_utf8(&key_pem)
            .map_err(|_| AcmeError::Key("the saved key is not PEM text".to_owned()))?;
        let key = rcgen::KeyPair::from_pem(key_text)
            .map_err(|error| AcmeError::Key(format!("the saved key cannot be read: {error}")))?;
        if parsed.public_key_der != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(AcmeError::BadCertificate(
                "the certificate does not match the key it was requested for".to_owned(),
            ));
        }
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

    /// Answers the challenges of a pending order and waits until the CA has
    /// validated it (ready), closing the challenges either way.
    async fn validate(
        &self,
        certificate: &Certificate,
        order: &mut Order,
        phase: &impl Fn(&'static str),
    ) -> Result<(), AcmeError> {
        if order.state().status == OrderStatus::Pending {
            self.answer_challenges(certificate, order).await?;
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
            return Err(self.explain_invalid(order).await);
        }
        Ok(())
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
}
