//! One ACME order: resume or place it, answer HTTP-01, wait, finalize with a
//! fresh key, download and check the certificate.

use std::collections::BTreeSet;
use std::time::Duration;

use certfleet_core::KeyType;
use certfleet_store::{AcmeChallenge, Certificate, NewCertificateVersion, StoreError, new_id};
use certfleet_vault::EncryptionContext;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};

use super::Issuer;
use crate::accounts::acme_call;
use crate::certs::{csr_der, key_pem};
use crate::{AcmeError, CaSettings, generate_key, parse_chain};

/// At most this many orders of the account's list are looked at for the one
/// an interrupted attempt left.
const MAX_UNSAVED_CANDIDATES: usize = 50;

impl Issuer {
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new()
            .initial_delay(Duration::from_millis(20))
            .backoff(1.5)
            .timeout(self.config.order_timeout)
    }

    /// Resumes the saved order if it can still be finished, else places a new
    /// one at `ca`; with the time a new order spent its budget.
    async fn open_order(
        &self,
        certificate: &Certificate,
        ca: &CaSettings,
    ) -> Result<(Order, Option<i64>), AcmeError> {
        let account = self.accounts.get(&certificate.organization_id, ca).await?;
        let timeout = self.config.request_timeout;
        // An order saved at another CA (before a fallback) is not resumed here.
        if let Some(url) = certificate
            .pending_order_url
            .as_ref()
            .filter(|url| ca.owns(url))
        {
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
                        return Ok((order, None));
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
        let order = match certificate.order_attempt_at {
            Some(_) => self.find_unsaved_order(certificate, &account, ca).await,
            None => None,
        };
        let (order, spent_at) = match order {
            Some(order) => (order, None),
            None => {
                let (order, spent_at) = self.place_order(certificate, &account, ca).await?;
                (order, Some(spent_at))
            }
        };
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
        Ok((order, spent_at))
    }

    /// Asks the CA for a new order, once the rate-limit budget allows it
    /// (else [`AcmeError::Deferred`]), noting first that one may exist before
    /// its URL is saved. A renewal names the certificate it replaces (ARI) and
    /// the profile the certificate asks for. Returns when the budget was spent.
    async fn place_order(
        &self,
        certificate: &Certificate,
        account: &Account,
        ca: &CaSettings,
    ) -> Result<(Order, i64), AcmeError> {
        let now = self.clock.now_ms();
        if let Some(profile) = &certificate.profile {
            let offered: Vec<&str> = account.profiles().map(|profile| profile.name).collect();
            if !offered.contains(&profile.as_str()) {
                return Err(AcmeError::ProfileUnavailable {
                    profile: profile.clone(),
                    issuer: ca.name.clone(),
                    offered: offered.join(", "),
                });
            }
        }
        let (kind, replaces) = self.replaced(certificate, ca, now).await?;
        self.spend_budget(certificate, ca, kind, now).await?;
        self.store
            .record_order_attempt(
                &certificate.organization_id,
                &certificate.id,
                &self.owner,
                self.clock.now_ms(),
            )
            .await?;
        let identifiers: Vec<Identifier> = certificate
            .name_list()
            .into_iter()
            .map(Identifier::Dns)
            .collect();
        let new_order = || {
            let order = NewOrder::new(&identifiers);
            match &certificate.profile {
                Some(profile) => order.profile(profile),
                None => order,
            }
        };
        let with_replaces = match &replaces {
            Some(id) => new_order().replaces(id.clone()),
            None => new_order(),
        };
        let placed = acme_call!(
            "placing the order",
            self.config.request_timeout,
            account.new_order(&with_replaces)
        );
        let order = match placed {
            // Replaced already (by an order that did not finish): order
            // without `replaces`, as the RFC asks.
            Err(error)
                if replaces.is_some()
                    && matches!(error.problem_type(), Some("alreadyReplaced")) =>
            {
                tracing::info!(certificate_id = %certificate.id, %error, "the CA says the certificate was replaced already; ordering without replaces");
                acme_call!(
                    "placing the order",
                    self.config.request_timeout,
                    account.new_order(&new_order())
                )?
            }
            other => other?,
        };
        tracing::info!(certificate_id = %certificate.id, issuer = %ca.name, order_url = %order.url(), replaces = ?replaces.as_ref().map(ToString::to_string), ?kind, "order placed");
        Ok((order, now))
    }

    /// The order an interrupted attempt placed but did not save, found in the
    /// account's orders list: not named by any row of the organization, still
    /// pending or ready, for exactly the certificate's names. `None` when there
    /// is none or the CA does not list orders; a failure to look is logged, and
    /// a new order is placed as before.
    async fn find_unsaved_order(
        &self,
        certificate: &Certificate,
        account: &Account,
        ca: &CaSettings,
    ) -> Option<Order> {
        let id = &certificate.id;
        let raw = match self.accounts.raw(&certificate.organization_id, ca).await {
            Ok(raw) => raw,
            Err(error) => {
                tracing::warn!(certificate_id = %id, %error, "cannot look for an order the interrupted attempt left");
                return None;
            }
        };
        let urls = match raw.order_urls().await {
            Ok(Some(urls)) => urls,
            Ok(None) => {
                tracing::debug!(certificate_id = %id, "the CA does not list an account's orders");
                return None;
            }
            Err(error) => {
                tracing::warn!(certificate_id = %id, %error, "cannot read the account's orders list");
                return None;
            }
        };
        let known = match self
            .store
            .known_order_urls(&certificate.organization_id)
            .await
        {
            Ok(known) => known,
            Err(error) => {
                tracing::warn!(certificate_id = %id, %error, "cannot read the saved orders");
                return None;
            }
        };
        let wanted: BTreeSet<String> = certificate
            .name_list()
            .into_iter()
            .map(|name| name.to_ascii_lowercase())
            .collect();
        // Newest last in the CA's list; an abandoned order is a recent one.
        let unknown = urls.iter().rev().filter(|url| !known.contains(*url));
        for url in unknown.take(MAX_UNSAVED_CANDIDATES) {
            let state = match raw.order(url).await {
                Ok(state) => state,
                Err(error) => {
                    tracing::debug!(certificate_id = %id, %error, "skipping an order of the list");
                    continue;
                }
            };
            let open = matches!(state["status"].as_str(), Some("pending" | "ready"));
            let names: Option<BTreeSet<String>> = state["identifiers"].as_array().map(|list| {
                list.iter()
                    .filter(|identifier| identifier["type"] == "dns")
                    .filter_map(|identifier| identifier["value"].as_str())
                    .map(str::to_ascii_lowercase)
                    .collect()
            });
            if !open || names.as_ref() != Some(&wanted) {
                continue;
            }
            match acme_call!(
                "resuming the unsaved order",
                self.config.request_timeout,
                account.order(url.clone())
            ) {
                Ok(order) => {
                    tracing::info!(certificate_id = %id, order_url = %url, "resuming the order an interrupted attempt placed but did not save");
                    return Some(order);
                }
                Err(error) => {
                    tracing::warn!(certificate_id = %id, order_url = %url, %error, "cannot resume the unsaved order");
                }
            }
        }
        None
    }

    pub(super) async fn run_order(
        &self,
        certificate: &Certificate,
        ca: &CaSettings,
    ) -> Result<NewCertificateVersion, AcmeError> {
        let started = std::time::Instant::now();
        let (mut order, spent_at) = self.open_order(certificate, ca).await?;
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
        if given_up {
            match &result {
                Err(AcmeError::AuthorizationFailed { name, .. }) => {
                    self.count_failed_authorization(certificate, ca, name).await;
                }
                // The CA's answer does not say which name: all of them count.
                Err(error) if error.is_validation_failure() => {
                    for name in certificate.name_list() {
                        self.count_failed_authorization(certificate, ca, &name)
                            .await;
                    }
                }
                _ => {}
            }
            if let Some(spent_at) = spent_at {
                self.release_budget(certificate, ca, spent_at).await;
            }
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
    ) -> Result<NewCertificateVersion, AcmeError> {
        let phase = |name: &'static str| {
            tracing::debug!(certificate_id = %certificate.id, phase = name, elapsed_ms = started.elapsed().as_millis() as u64, "issuance progress");
        };
        phase("order open");
        let key_type = KeyType::parse("key_type", &certificate.key_type)
            .map_err(|error| AcmeError::Key(error.to_string()))?;
        // The key is bound to the version it will be: the next number. The
        // certificate's lease keeps any other version from being saved first.
        let version_number = self
            .store
            .latest_version_number(&certificate.organization_id, &certificate.id)
            .await?
            + 1;
        let context = EncryptionContext::private_key_version(
            &certificate.organization_id,
            &certificate.id,
            version_number,
        );
        let timeout = self.config.request_timeout;
        let policy = self.retry_policy();
        let finalized = matches!(
            order.state().status,
            OrderStatus::Processing | OrderStatus::Valid
        );
        let (key, key_sealed) = match (&certificate.pending_key_sealed, finalized) {
            // Resumed after its finalize: the key was saved before it.
            (Some(sealed), true) => {
                let pem = self.vault.open(&context, sealed).await?;
                let key = std::str::from_utf8(&pem)
                    .ok()
                    .and_then(|text| rcgen::KeyPair::from_pem(text).ok())
                    .ok_or_else(|| {
                        AcmeError::Key(
                            "the key saved before the order's finalize cannot be read".to_owned(),
                        )
                    })?;
                (key, sealed.clone())
            }
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
                (key, sealed)
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
        if parsed.public_key_der != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(AcmeError::BadCertificate(
                "the certificate does not match the key it was requested for".to_owned(),
            ));
        }
        Ok(NewCertificateVersion {
            id: new_id(),
            version: Some(version_number),
            serial: parsed.serial,
            fingerprint_sha256: parsed.fingerprint_sha256,
            not_before: parsed.not_before_ms,
            not_after: parsed.not_after_ms,
            leaf_pem: parsed.leaf_pem,
            chain_pem: parsed.chain_pem,
            key_sealed,
            key_type: key_type.as_str().to_owned(),
            order_url: order.url().to_owned(),
            issuer: None,
        })
    }

    /// Answers the challenges of a pending order and waits until the CA has
    /// validated it (ready), closing the challenges either way. DNS-01 values
    /// are removed afterwards whatever the outcome, and values an interrupted
    /// attempt left are removed first.
    async fn validate(
        &self,
        certificate: &Certificate,
        order: &mut Order,
        phase: &impl Fn(&'static str),
    ) -> Result<(), AcmeError> {
        let dns = match certificate.challenge_type.as_str() {
            "dns-01" => Some(self.dns_solver(certificate).await?),
            _ => None,
        };
        if let Some(solver) = &dns {
            self.clean_dns_records(certificate, solver).await;
        }
        let result = self
            .answer_and_wait(certificate, order, dns.as_ref(), phase)
            .await;
        if let Some(solver) = &dns {
            self.clean_dns_records(certificate, solver).await;
            phase("dns-01 values removed");
        }
        result
    }

    async fn answer_and_wait(
        &self,
        certificate: &Certificate,
        order: &mut Order,
        dns: Option<&certfleet_dns::DnsSolver>,
        phase: &impl Fn(&'static str),
    ) -> Result<(), AcmeError> {
        if order.state().status == OrderStatus::Pending {
            match dns {
                Some(solver) => {
                    self.answer_dns_challenges(certificate, order, solver)
                        .await?;
                }
                None => self.answer_challenges(certificate, order).await?,
            }
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

    /// HTTP-01 for every pending authorization: publish every key
    /// authorization, self-check every name at once, and only when all pass
    /// tell the CA. A failure names whether every name failed (see orphans).
    async fn answer_challenges(
        &self,
        certificate: &Certificate,
        order: &mut Order,
    ) -> Result<(), AcmeError> {
        let timeout = self.config.request_timeout;
        let order_url = order.url().to_owned();
        let mut published = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization
                .map_err(|error| AcmeError::problem("reading an authorization", timeout, error))?;
            let Some(name) = needs_answer(&authorization)? else {
                continue;
            };
            let authorization_url = authorization.url().to_owned();
            let Some(challenge) = authorization.challenge(ChallengeType::Http01) else {
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
                    authorization_url: authorization_url.clone(),
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
                    dns_zone: None,
                    dns_cleaned_at: None,
                })
                .await?;
            published.push((
                name,
                challenge.token.clone(),
                key_authorization.as_str().to_owned(),
                authorization_url,
            ));
        }
        let checks = published.iter().map(|(name, token, key_authorization, _)| {
            self.self_check.check(name, token, key_authorization)
        });
        let outcomes = futures_util::future::join_all(checks).await;
        let failed = outcomes.iter().filter(|outcome| outcome.is_err()).count();
        if let Some(Err(error)) = outcomes.into_iter().find(Result::is_err) {
            return Err(match error {
                AcmeError::SelfCheck { url, reason, .. } => AcmeError::SelfCheck {
                    url,
                    reason,
                    all_names: failed == published.len(),
                },
                other => other,
            });
        }
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization
                .map_err(|error| AcmeError::problem("reading an authorization", timeout, error))?;
            if !published
                .iter()
                .any(|(_, _, _, url)| url == authorization.url())
            {
                continue;
            }
            let Some(mut challenge) = authorization.challenge(ChallengeType::Http01) else {
                continue;
            };
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

/// The name of an authorization that waits for its challenge to be answered;
/// `None` when it is already valid; an error when it can no longer be.
pub(super) fn needs_answer(
    authorization: &instant_acme::AuthorizationHandle<'_>,
) -> Result<Option<String>, AcmeError> {
    let name = authorization.identifier().to_string();
    match authorization.status {
        AuthorizationStatus::Pending => Ok(Some(name)),
        AuthorizationStatus::Valid => Ok(None),
        other => Err(AcmeError::AuthorizationFailed {
            name,
            detail: format!("the authorization is {other:?}").to_lowercase(),
        }),
    }
}
