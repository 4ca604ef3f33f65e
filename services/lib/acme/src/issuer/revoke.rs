//! Revocation at the CA, under the certificate's lease.

use std::time::Duration;

use certfleet_bus::EventBuilder;
use certfleet_core::RevocationReason;
use certfleet_proto::v1::EventType;
use certfleet_store::{AuditEntry, Certificate, Effects, StoreError};
use instant_acme::RevocationRequest;

use super::{Issuer, LEASE, TRANSIENT_RETRIES};
use crate::accounts::acme_call;
use crate::{AcmeError, parse_chain};

impl Issuer {
    /// Revokes the current version. Takes the certificate's lease first, so a
    /// renewal in flight finishes (or gives up) before, and cannot undo it after.
    pub(super) async fn revoke(
        &self,
        organization_id: &str,
        certificate_id: &str,
        reason: &str,
    ) -> Result<(), AcmeError> {
        let certificate = match self
            .lease_for_revocation(organization_id, certificate_id)
            .await
        {
            Ok(Some(certificate)) => certificate,
            Ok(None) => return Ok(()),
            Err(error) => {
                self.note_revocation_failure(organization_id, certificate_id, &error)
                    .await?;
                return Err(error);
            }
        };
        let keeper = self.keep_lease(organization_id, certificate_id);
        let result = self.revoke_leased(&certificate, reason).await;
        keeper.abort();
        if let Err(error) = &result {
            self.note_revocation_failure(organization_id, certificate_id, error)
                .await?;
        }
        self.store
            .release_certificate_lease(organization_id, certificate_id, &self.owner)
            .await?;
        result
    }

    /// Puts a failed revocation on the certificate and in a `failed` event, so
    /// the caller learns of it (the certificate stays valid).
    async fn note_revocation_failure(
        &self,
        organization_id: &str,
        certificate_id: &str,
        error: &AcmeError,
    ) -> Result<(), AcmeError> {
        let Some(certificate) = self
            .store
            .get_certificate(organization_id, certificate_id)
            .await?
        else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let message = format!(
            "revocation failed: {error}; the certificate is still valid, ask again with `certfleet cert revoke`"
        );
        let effects = Effects {
            outbox: vec![crate::failed_event(
                &certificate,
                &message,
                "revocation",
                now,
            )],
            audit: Vec::new(),
        };
        self.store
            .record_error_note(organization_id, certificate_id, &message, now, effects)
            .await?;
        self.relay.wake();
        Ok(())
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
        let ca = self.issuer_of(&version)?;
        let account = self.accounts.get(organization_id, &ca).await?;
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
