//! DNS-01 for an order: the certificate's provider, the TXT values written
//! (and noted before they are written), the wait until every authoritative
//! server answers them, and their removal — after every attempt, whatever its
//! outcome, and at the start of the next one for values a killed worker left.

use std::collections::BTreeSet;
use std::time::Duration;

use certfleet_dns::{DnsLookup, DnsSolver, ProviderConfig, TxtRecord};
use certfleet_store::{AcmeChallenge, Certificate, new_id};
use certfleet_vault::EncryptionContext;
use instant_acme::{ChallengeType, Order};

use super::Issuer;
use super::order::needs_answer;
use crate::AcmeError;
use crate::accounts::acme_call;

/// Tries of one clean-up when the provider is unavailable.
const CLEANUP_TRIES: u32 = 3;
/// How long a write to one name holds the name's lease (a crashed holder's
/// lease runs out after this).
const NAME_LEASE: Duration = Duration::from_secs(60);
/// How long a write waits for another process's write to the same name.
const NAME_LEASE_WAIT: Duration = Duration::from_secs(90);

impl Issuer {
    /// The solver of the certificate's DNS provider. A deleted provider still
    /// serves: values it wrote must be removed with it.
    pub(super) async fn dns_solver(
        &self,
        certificate: &Certificate,
    ) -> Result<DnsSolver, AcmeError> {
        let organization_id = &certificate.organization_id;
        let Some(provider_id) = &certificate.dns_provider_id else {
            return Err(AcmeError::DnsProvider(
                "the certificate names no DNS provider".to_owned(),
            ));
        };
        let row = self
            .store
            .get_dns_provider_any(organization_id, provider_id)
            .await?
            .ok_or_else(|| {
                AcmeError::DnsProvider(format!("the DNS provider {provider_id} does not exist"))
            })?;
        let secrets = match &row.secrets_sealed {
            Some(sealed) => Some(
                self.vault
                    .open(
                        &EncryptionContext::dns_provider(organization_id, &row.id),
                        sealed,
                    )
                    .await?,
            ),
            None => None,
        };
        let policy = &self.config.dns.policy;
        let unusable = |error: certfleet_dns::SettingError| {
            AcmeError::DnsProvider(format!(
                "the DNS provider {:?} cannot be used: {error}",
                row.name
            ))
        };
        let config = ProviderConfig::from_stored(
            &row.kind,
            &row.settings,
            secrets.as_ref().map(|secrets| secrets.as_slice()),
            policy,
        )
        .map_err(unusable)?;
        DnsSolver::new(
            config,
            policy,
            DnsLookup::new(self.config.dns.lookup.clone()),
        )
        .map_err(unusable)
    }

    /// Writes the DNS-01 value of every pending authorization, waits until
    /// each is served by every authoritative name server, then tells the CA.
    pub(super) async fn answer_dns_challenges(
        &self,
        certificate: &Certificate,
        order: &mut Order,
        solver: &DnsSolver,
    ) -> Result<(), AcmeError> {
        let timeout = self.config.request_timeout;
        let order_url = order.url().to_owned();
        let mut ready = BTreeSet::new();
        let mut records = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization
                .map_err(|error| AcmeError::problem("reading an authorization", timeout, error))?;
            let Some(name) = needs_answer(&authorization)? else {
                continue;
            };
            let authorization_url = authorization.url().to_owned();
            let Some(challenge) = authorization.challenge(ChallengeType::Dns01) else {
                return Err(AcmeError::ChallengeUnavailable {
                    name,
                    challenge: "dns-01".to_owned(),
                });
            };
            let key_authorization = challenge.key_authorization();
            let value = key_authorization.dns_value();
            let record = solver.locate(&name, &value).await?;
            let now = self.clock.now_ms();
            // Noted before it is written: a worker killed after the write
            // leaves a row that the next attempt cleans up.
            self.store
                .upsert_challenge(AcmeChallenge {
                    id: new_id(),
                    organization_id: certificate.organization_id.clone(),
                    certificate_id: certificate.id.clone(),
                    order_url: order_url.clone(),
                    authorization_url: authorization_url.clone(),
                    name: name.clone(),
                    challenge_type: "dns-01".to_owned(),
                    token: challenge.token.clone(),
                    key_authorization: key_authorization.as_str().to_owned(),
                    dns_record_name: Some(record.fqdn.clone()),
                    dns_record_value: Some(value),
                    status: "pending".to_owned(),
                    validated_at: None,
                    error: None,
                    created_at: now,
                    updated_at: now,
                    dns_zone: record.zone.clone(),
                    dns_cleaned_at: None,
                })
                .await?;
            self.one_writer(solver, &record.fqdn, solver.present(&record))
                .await?;
            tracing::info!(certificate_id = %certificate.id, %name, record = %record.fqdn, zone = record.zone.as_deref().unwrap_or("-"), "dns-01 value written");
            ready.insert(authorization_url);
            records.push(record);
        }
        // All waits at once: the slowest record sets the pace, not their sum.
        let waits = records.iter().map(|record| solver.wait_propagated(record));
        for (record, waited) in records
            .iter()
            .zip(futures_util::future::join_all(waits).await)
        {
            let servers = waited?;
            tracing::debug!(certificate_id = %certificate.id, record = %record.fqdn, servers = servers.len(), "dns-01 value served by every authoritative server");
        }
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization
                .map_err(|error| AcmeError::problem("reading an authorization", timeout, error))?;
            if !ready.contains(authorization.url()) {
                continue;
            }
            let name = authorization.identifier().to_string();
            let Some(mut challenge) = authorization.challenge(ChallengeType::Dns01) else {
                return Err(AcmeError::ChallengeUnavailable {
                    name,
                    challenge: "dns-01".to_owned(),
                });
            };
            acme_call!("answering the challenge", timeout, challenge.set_ready())?;
        }
        Ok(())
    }

    /// Removes every DNS-01 value of the certificate that is not yet removed:
    /// this attempt's, and any an interrupted attempt left. A value that
    /// cannot be removed now stays listed and is tried again next attempt.
    pub(super) async fn clean_dns_records(&self, certificate: &Certificate, solver: &DnsSolver) {
        let rows = self.values_left(certificate).await;
        self.remove_values(certificate, solver, rows).await;
    }

    /// The DNS-01 values of the certificate still in DNS (empty, logged, when
    /// they cannot be listed).
    async fn values_left(&self, certificate: &Certificate) -> Vec<AcmeChallenge> {
        self.store
            .dns_records_to_clean(&certificate.organization_id, &certificate.id)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(certificate_id = %certificate.id, %error, "cannot list the dns-01 values to remove");
                Vec::new()
            })
    }

    /// Removes `rows`' values and notes the ones that are gone.
    async fn remove_values(
        &self,
        certificate: &Certificate,
        solver: &DnsSolver,
        rows: Vec<AcmeChallenge>,
    ) {
        let organization_id = &certificate.organization_id;
        let mut removed = BTreeSet::new();
        let mut cleaned = Vec::new();
        for row in rows {
            let (Some(fqdn), Some(value)) =
                (row.dns_record_name.clone(), row.dns_record_value.clone())
            else {
                continue;
            };
            let record = TxtRecord {
                fqdn,
                zone: row.dns_zone.clone(),
                value,
            };
            let key = (record.fqdn.clone(), record.value.clone());
            if removed.contains(&key) {
                cleaned.push(row.id);
                continue;
            }
            match self.cleanup_with_retries(solver, &record).await {
                Ok(()) => {
                    tracing::info!(certificate_id = %certificate.id, record = %record.fqdn, "dns-01 value removed");
                    removed.insert(key);
                    cleaned.push(row.id);
                }
                Err(error) => {
                    tracing::warn!(certificate_id = %certificate.id, record = %record.fqdn, value = %record.value, %error, "cannot remove the dns-01 value; the next attempt tries again");
                }
            }
        }
        if let Err(error) = self
            .store
            .mark_dns_cleaned(organization_id, &cleaned, self.clock.now_ms())
            .await
        {
            tracing::warn!(certificate_id = %certificate.id, %error, "cannot note the removed dns-01 values; they are removed again next attempt");
        }
    }

    /// Runs `write` to `fqdn` as the only writer of that name among all
    /// workers, when the provider reads and writes back whole sets (a named
    /// lease in the database, its owner unique to this write, so two tasks of
    /// one process are kept apart too). Providers that change single values
    /// atomically run at once.
    async fn one_writer<T>(
        &self,
        solver: &DnsSolver,
        fqdn: &str,
        write: impl std::future::Future<Output = Result<T, certfleet_dns::DnsError>>,
    ) -> Result<T, certfleet_dns::DnsError> {
        if solver.config().kind.changes_single_values() {
            return write.await;
        }
        let name = format!("dns-record:{fqdn}");
        let owner = format!("{}:{}", self.owner, new_id());
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let now = self.clock.now_ms();
            let until = now + NAME_LEASE.as_millis() as i64;
            match self
                .store
                .acquire_named_lease(&name, &owner, now, until)
                .await
            {
                Ok(true) => break,
                Ok(false) if started.elapsed() < NAME_LEASE_WAIT => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Ok(false) => {
                    return Err(certfleet_dns::DnsError::Unavailable {
                        provider: solver.config().kind.as_str(),
                        detail: format!(
                            "another worker has been writing {fqdn} for more than {} s",
                            NAME_LEASE_WAIT.as_secs()
                        ),
                    });
                }
                Err(error) => {
                    return Err(certfleet_dns::DnsError::Unavailable {
                        provider: solver.config().kind.as_str(),
                        detail: format!("cannot take the write lease of {fqdn}: {error}"),
                    });
                }
            }
        }
        let result = write.await;
        if let Err(error) = self.store.release_named_lease(&name, &owner).await {
            tracing::warn!(%error, record = %fqdn, "cannot release the write lease; it runs out by itself");
        }
        result
    }

    /// Removes what a settled certificate's last attempt left in DNS (its
    /// clean-up failed then); the scheduler queues it. Failures are logged and
    /// the scheduler queues it again later.
    pub(super) async fn clean_settled_dns(&self, certificate: &Certificate) {
        let left = self.values_left(certificate).await;
        if left.is_empty() {
            return;
        }
        // The solver (and its opened secrets) only when there is work.
        match self.dns_solver(certificate).await {
            Ok(solver) => self.remove_values(certificate, &solver, left).await,
            Err(error) => {
                tracing::warn!(certificate_id = %certificate.id, %error, "cannot remove the dns-01 values left by the last attempt");
            }
        }
    }

    async fn cleanup_with_retries(
        &self,
        solver: &DnsSolver,
        record: &TxtRecord,
    ) -> Result<(), certfleet_dns::DnsError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .one_writer(solver, &record.fqdn, solver.cleanup(record))
                .await
            {
                Err(error) if error.is_transient() && tries < CLEANUP_TRIES => {
                    tracing::debug!(record = %record.fqdn, %error, tries, "clean-up failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(tries))).await;
                }
                other => return other,
            }
        }
    }
}
