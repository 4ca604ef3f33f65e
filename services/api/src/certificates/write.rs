//! Calls that change a certificate: create, renew, revoke, delete. Each writes
//! its job, event and audit entry in the transaction of the change, then wakes
//! the outbox relay.

use certfleet_bus::{EventBuilder, Job};
use certfleet_core::{ChallengeType, IdentifierSet, InputError, validate_request};
use certfleet_dns::SettingError;
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::EventType;
use certfleet_store::{AuditEntry, Certificate, Effects, StoreError, new_id};

use super::{Caller, CertificateApi, not_found};
use crate::ApiError;
use crate::convert::{
    certificate_to_proto, challenge_type_from_proto, key_type_from_proto, reason_from_proto,
};

impl CertificateApi {
    pub(super) async fn create(
        &self,
        caller: &Caller,
        request: pb::CreateCertificateRequest,
    ) -> Result<pb::Certificate, ApiError> {
        let names = IdentifierSet::new("names", &request.names)?;
        let key_type = key_type_from_proto("key_type", request.key_type)?;
        let challenge_type = challenge_type_from_proto("challenge_type", request.challenge_type)?;
        validate_request(&names, challenge_type)?;
        let renew_before_ms = renew_before_ms(request.renew_before_expiry_seconds)?;
        let organization_id = caller.organization_id.as_str();
        let dns_provider_id = self
            .dns_provider_id(organization_id, challenge_type, &request.dns_provider)
            .await?;

        let now = self.state.clock.now_ms();
        let id = new_id();
        let name_list = names.to_strings();
        let row = Certificate {
            id: id.clone(),
            organization_id: organization_id.to_owned(),
            primary_name: names.primary().as_str().to_owned(),
            names: name_list.join(","),
            names_key: names.canonical_key(),
            wildcard: names.has_wildcard(),
            key_type: key_type.as_str().to_owned(),
            challenge_type: challenge_type.as_str().to_owned(),
            dns_provider_id,
            directory_url: self.state.directory_url.clone(),
            profile: profile(&request.profile)?,
            status: "pending".to_owned(),
            auto_renew: request.auto_renew.unwrap_or(true),
            renew_before_ms,
            renew_at: None,
            // Lets the scheduler's reconcile pass re-queue the job if it is lost.
            next_attempt_at: Some(now),
            attempts: 0,
            last_error: None,
            current_version_id: None,
            not_after: None,
            pending_order_url: None,
            pending_reason: None,
            pending_key_sealed: None,
            order_attempt_at: None,
            lease_owner: None,
            lease_until: None,
            deleted_at: None,
            created_at: now,
            updated_at: now,
            renew_reason: None,
            waiting_reason: None,
            ari_next_at: None,
        };
        let mut audit = AuditEntry::new(
            Some(organization_id),
            &caller.token_id,
            "certificate.created",
            Some(&id),
            now,
        )
        .from_remote(caller.remote_addr.as_deref());
        audit.details = row.names.clone();
        let effects = Effects {
            outbox: vec![
                Job::issue(organization_id, &id).to_outbox(now),
                EventBuilder::new(EventType::Requested, organization_id, &id, name_list, now)
                    .to_outbox(),
            ],
            audit: vec![audit],
        };
        let created = self
            .state
            .store
            .create_certificate(row, effects)
            .await
            .map_err(|error| ApiError::from_store("create certificate", &not_found(&id), error))?;
        self.state.relay.wake();
        tracing::info!(
            organization_id,
            certificate_id = %created.id,
            names = %created.names,
            "certificate requested"
        );
        Ok(certificate_to_proto(&created, None))
    }

    /// The id of the DNS provider a DNS-01 certificate names (by name or id);
    /// it must be one of the caller's organization. HTTP-01 takes none.
    async fn dns_provider_id(
        &self,
        organization_id: &str,
        challenge_type: ChallengeType,
        given: &str,
    ) -> Result<Option<String>, ApiError> {
        const FIELD: &str = "dns_provider";
        let given = given.trim();
        match challenge_type {
            ChallengeType::Http01 if given.is_empty() => Ok(None),
            ChallengeType::Http01 => Err(InputError::new(
                FIELD,
                given,
                "is only used with challenge_type dns-01; leave it empty for http-01",
            )
            .into()),
            ChallengeType::Dns01 if given.is_empty() => {
                Err(SettingError::missing(FIELD, "with challenge_type dns-01").into())
            }
            ChallengeType::Dns01 => {
                let provider = self
                    .state
                    .store
                    .find_dns_provider(organization_id, given)
                    .await
                    .map_err(|error| ApiError::store("find dns provider", error))?
                    .ok_or_else(|| {
                        InputError::new(FIELD, given, "is not a DNS provider of this organization")
                    })?;
                Ok(Some(provider.id))
            }
        }
    }

    pub(super) async fn renew(
        &self,
        caller: &Caller,
        certificate_id: &str,
    ) -> Result<pb::Certificate, ApiError> {
        let now = self.state.clock.now_ms();
        let organization_id = caller.organization_id.as_str();
        let effects = Effects {
            outbox: vec![Job::issue(organization_id, certificate_id).to_outbox(now)],
            audit: vec![
                AuditEntry::new(
                    Some(organization_id),
                    &caller.token_id,
                    "certificate.renewal_requested",
                    Some(certificate_id),
                    now,
                )
                .from_remote(caller.remote_addr.as_deref()),
            ],
        };
        let renewed = match self
            .state
            .store
            .request_renewal(organization_id, certificate_id, now, effects)
            .await
        {
            Ok(renewed) => renewed,
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "certificate {certificate_id} is revoked and cannot be renewed; create a new certificate"
                )));
            }
            Err(error) => {
                return Err(ApiError::from_store(
                    "request renewal",
                    &not_found(certificate_id),
                    error,
                ));
            }
        };
        self.state.relay.wake();
        let current = self.current_version(organization_id, &renewed).await?;
        Ok(certificate_to_proto(&renewed, current.as_ref()))
    }

    pub(super) async fn revoke(
        &self,
        caller: &Caller,
        request: &pb::RevokeCertificateRequest,
    ) -> Result<pb::Certificate, ApiError> {
        let reason = reason_from_proto("reason", request.reason)?;
        let organization_id = caller.organization_id.as_str();
        let certificate_id = request.id.as_str();
        let certificate = self.find(organization_id, certificate_id).await?;
        let Some(current) = self.current_version(organization_id, &certificate).await? else {
            return Err(ApiError::FailedPrecondition(
                "certificate has no issued version to revoke".to_owned(),
            ));
        };
        if current.revoked_at.is_some() || certificate.status == "revoked" {
            return Err(ApiError::FailedPrecondition(
                "certificate is already revoked".to_owned(),
            ));
        }
        let now = self.state.clock.now_ms();
        let mut audit = AuditEntry::new(
            Some(organization_id),
            &caller.token_id,
            "certificate.revocation_requested",
            Some(certificate_id),
            now,
        )
        .from_remote(caller.remote_addr.as_deref());
        audit.details = format!("version {} reason {}", current.version, reason.as_str());
        // The job and its audit entry commit together: no revocation without
        // its audit entry, no audit entry for a revocation never queued.
        let effects = Effects {
            outbox: vec![
                Job::revoke(organization_id, certificate_id, reason.as_str()).to_outbox(now),
            ],
            audit: vec![audit],
        };
        self.state
            .store
            .write_effects(effects)
            .await
            .map_err(|error| ApiError::store("queue revocation", error))?;
        self.state.relay.wake();
        tracing::info!(
            organization_id,
            certificate_id,
            reason = reason.as_str(),
            "revocation requested"
        );
        Ok(certificate_to_proto(&certificate, Some(&current)))
    }

    pub(super) async fn delete(
        &self,
        caller: &Caller,
        certificate_id: &str,
    ) -> Result<(), ApiError> {
        let organization_id = caller.organization_id.as_str();
        let certificate = self.find(organization_id, certificate_id).await?;
        let now = self.state.clock.now_ms();
        let effects = Effects {
            outbox: vec![
                EventBuilder::new(
                    EventType::Deleted,
                    organization_id,
                    certificate_id,
                    certificate.name_list(),
                    now,
                )
                .to_outbox(),
            ],
            audit: vec![
                AuditEntry::new(
                    Some(organization_id),
                    &caller.token_id,
                    "certificate.deleted",
                    Some(certificate_id),
                    now,
                )
                .from_remote(caller.remote_addr.as_deref()),
            ],
        };
        self.state
            .store
            .delete_certificate(organization_id, certificate_id, now, effects)
            .await
            .map_err(|error| {
                ApiError::from_store("delete certificate", &not_found(certificate_id), error)
            })?;
        self.state.relay.wake();
        tracing::info!(organization_id, certificate_id, "certificate deleted");
        Ok(())
    }
}

/// The per-certificate renewal override; 0 means the default policy.
fn renew_before_ms(seconds: i64) -> Result<Option<i64>, InputError> {
    const FIELD: &str = "renew_before_expiry_seconds";
    if seconds < 0 {
        return Err(InputError::new(
            FIELD,
            seconds.to_string(),
            "must not be negative",
        ));
    }
    if seconds == 0 {
        return Ok(None);
    }
    seconds
        .checked_mul(1000)
        .map(Some)
        .ok_or_else(|| InputError::new(FIELD, seconds.to_string(), "is too large"))
}

/// An ACME profile name as asked for: none when empty; else 1 to 64 letters,
/// digits, `-`, `_` or `.` (whether the CA offers it is checked before the
/// order, against its directory).
fn profile(value: &str) -> Result<Option<String>, certfleet_core::InputError> {
    if value.is_empty() {
        return Ok(None);
    }
    let fine = value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !fine {
        return Err(certfleet_core::InputError::new(
            "profile",
            value,
            "is not a profile name (1 to 64 letters, digits, '-', '_' or '.')",
        ));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::renew_before_ms;

    #[test]
    fn renew_before_is_checked() {
        assert_eq!(renew_before_ms(0).ok(), Some(None));
        assert_eq!(renew_before_ms(86_400).ok(), Some(Some(86_400_000)));
        assert!(renew_before_ms(-1).is_err());
        assert!(renew_before_ms(i64::MAX).is_err());
    }
}
