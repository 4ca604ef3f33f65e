//! The certificate lease and what its holder records: progress, an issued
//! version, a failure, a revocation.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{Certificate, CertificateVersion, Effects};
use crate::schema::{certificate_versions, certificates, self_check_streaks};
use crate::{
    NewCertificateVersion, RenewalPlan, Store, StoreError, transaction, with_conn, write_effects,
};

/// Applies `$changes` to the certificate while `$owner` holds its lease;
/// [`StoreError::LeaseLost`] when it does not.
macro_rules! update_leased {
    ($store:expr, $organization_id:expr, $certificate_id:expr, $owner:expr, $changes:expr) => {
        with_conn!($store, |conn| {
            let updated = diesel::update(certificates::table.find($certificate_id))
                .filter(certificates::organization_id.eq($organization_id))
                .filter(certificates::lease_owner.eq($owner))
                .set($changes)
                .execute(conn)
                .await?;
            held_lease(updated)
        })
    };
}

impl Store {
    /// Leases the certificate to `owner` until `until_ms` unless another owner
    /// holds an unexpired lease. Returns the row when leased.
    pub async fn acquire_certificate_lease(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<Certificate>, StoreError> {
        with_conn!(self, |conn| {
            Ok(diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::deleted_at.is_null())
                .filter(
                    certificates::lease_until
                        .is_null()
                        .or(certificates::lease_until.lt(now_ms))
                        .or(certificates::lease_owner.eq(owner)),
                )
                .set((
                    certificates::lease_owner.eq(Some(owner)),
                    certificates::lease_until.eq(Some(until_ms)),
                ))
                .returning(Certificate::as_returning())
                .get_result(conn)
                .await
                .optional()?)
        })
    }

    /// Extends a lease held by `owner`; [`StoreError::LeaseLost`] when it is not.
    pub async fn extend_certificate_lease(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        update_leased!(
            self,
            organization_id,
            certificate_id,
            owner,
            certificates::lease_until.eq(Some(until_ms))
        )
    }

    /// Gives up a lease held by `owner`.
    pub async fn release_certificate_lease(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::lease_owner.eq(owner))
                .set((
                    certificates::lease_owner.eq(None::<String>),
                    certificates::lease_until.eq(None::<i64>),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// Frees every certificate lease of `owner`: a restarted embedded process
    /// holds nothing, whatever it held before it stopped.
    pub async fn release_all_leases_of(&self, owner: &str) -> Result<usize, StoreError> {
        with_conn!(self, |conn| {
            Ok(diesel::update(certificates::table)
                .filter(certificates::lease_owner.eq(owner))
                .set((
                    certificates::lease_owner.eq(None::<String>),
                    certificates::lease_until.eq(None::<i64>),
                ))
                .execute(conn)
                .await?)
        })
    }

    /// Records progress of the lease holder: status and, once created, the
    /// order URL (saved before any challenge is answered, so a retry resumes it).
    pub async fn record_progress(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        status: &str,
        pending_order_url: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        update_leased!(
            self,
            organization_id,
            certificate_id,
            owner,
            (
                certificates::status.eq(status),
                certificates::pending_order_url.eq(pending_order_url),
                // A new order: any key saved for the previous one is void.
                certificates::pending_key_sealed.eq(None::<Vec<u8>>),
                // Its URL is saved: no order of this attempt is unrecorded.
                certificates::order_attempt_at.eq(None::<i64>),
                certificates::updated_at.eq(now_ms),
            )
        )
    }

    /// Notes, right before the lease holder asks the CA for a new order, that
    /// an order may exist at the CA before its URL is saved
    /// ([`Store::record_progress`] clears the note). A note found by the next
    /// attempt means the previous one stopped in between, and may have left an
    /// order the database never heard of.
    pub async fn record_order_attempt(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        update_leased!(
            self,
            organization_id,
            certificate_id,
            owner,
            certificates::order_attempt_at.eq(Some(now_ms))
        )
    }

    /// Records on the certificate that its job was dead-lettered by the broker
    /// (with `effects`, e.g. a `failed` event, in the same transaction).
    /// `retry_at_ms`: an issuance job, recorded only while the certificate
    /// still waits for one (pending, issuing, renewing), whose next attempt is
    /// pushed to that time; `None`: a revocation job, noted on any certificate
    /// that is not deleted. False when nothing matched (a stale duplicate of
    /// finished work, or a deleted certificate).
    pub async fn record_dead_job(
        &self,
        organization_id: &str,
        certificate_id: &str,
        error: &str,
        retry_at_ms: Option<i64>,
        now_ms: i64,
        effects: Effects,
    ) -> Result<bool, StoreError> {
        transaction!(self, |conn| {
            let target = certificates::table
                .find(certificate_id)
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::deleted_at.is_null());
            let updated =
                match retry_at_ms {
                    Some(retry_at) => {
                        diesel::update(target.filter(
                            certificates::status.eq_any(["pending", "issuing", "renewing"]),
                        ))
                        .set((
                            certificates::last_error.eq(Some(error)),
                            certificates::next_attempt_at.eq(Some(retry_at)),
                            certificates::updated_at.eq(now_ms),
                        ))
                        .execute(conn)
                        .await?
                    }
                    None => {
                        diesel::update(target)
                            .set((
                                certificates::last_error.eq(Some(error)),
                                certificates::updated_at.eq(now_ms),
                            ))
                            .execute(conn)
                            .await?
                    }
                };
            if updated == 0 {
                return Ok(false);
            }
            write_effects!(conn, effects);
            Ok(true)
        })
    }

    /// Every ACME order URL the organization's rows name: the orders being
    /// worked on and the orders of issued versions.
    pub async fn known_order_urls(
        &self,
        organization_id: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        with_conn!(self, |conn| {
            let mut known: std::collections::HashSet<String> = certificates::table
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::pending_order_url.is_not_null())
                .select(certificates::pending_order_url.assume_not_null())
                .load::<String>(conn)
                .await?
                .into_iter()
                .collect();
            known.extend(
                certificate_versions::table
                    .filter(certificate_versions::organization_id.eq(organization_id))
                    .select(certificate_versions::order_url)
                    .load::<String>(conn)
                    .await?,
            );
            Ok(known)
        })
    }

    /// Saves the sealed key of the order about to be finalized (lease holder
    /// only), so whoever resumes a finalized order can finish it.
    pub async fn record_pending_key(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        key_sealed: &[u8],
    ) -> Result<(), StoreError> {
        update_leased!(
            self,
            organization_id,
            certificate_id,
            owner,
            certificates::pending_key_sealed.eq(Some(key_sealed))
        )
    }

    /// Stores an issued certificate as the next version and makes it current.
    #[expect(clippy::too_many_arguments, reason = "one atomic state change")]
    pub async fn record_issued(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        new_version: NewCertificateVersion,
        renewal: RenewalPlan,
        now_ms: i64,
        effects: Effects,
    ) -> Result<CertificateVersion, StoreError> {
        transaction!(self, |conn| {
            let leased: Option<String> = certificates::table
                .find(certificate_id)
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::lease_owner.eq(owner))
                .select(certificates::id)
                .first(conn)
                .await
                .optional()?;
            if leased.is_none() {
                return Err(StoreError::LeaseLost);
            }
            let latest: Option<i32> = certificate_versions::table
                .filter(certificate_versions::certificate_id.eq(certificate_id))
                .select(diesel::dsl::max(certificate_versions::version))
                .first(conn)
                .await?;
            let number = latest.unwrap_or(0) + 1;
            if let Some(sealed_for) = new_version.version
                && sealed_for != number
            {
                return Err(StoreError::Conflict(format!(
                    "version {number} of certificate {certificate_id} (its key was sealed for version {sealed_for})"
                )));
            }
            let version = CertificateVersion {
                id: new_version.id,
                certificate_id: certificate_id.to_owned(),
                organization_id: organization_id.to_owned(),
                version: number,
                serial: new_version.serial,
                fingerprint_sha256: new_version.fingerprint_sha256,
                not_before: new_version.not_before,
                not_after: new_version.not_after,
                leaf_pem: new_version.leaf_pem,
                chain_pem: new_version.chain_pem,
                key_sealed: new_version.key_sealed,
                key_type: new_version.key_type,
                order_url: new_version.order_url,
                ari_start: renewal.ari_window.map(|(start, _)| start),
                ari_end: renewal.ari_window.map(|(_, end)| end),
                revoked_at: None,
                revocation_reason: None,
                backup_location: None,
                backup_at: None,
                backup_error: None,
                backup_attempts: 0,
                backup_next_at: None,
                created_at: now_ms,
                issuer: new_version.issuer,
            };
            diesel::insert_into(certificate_versions::table)
                .values(&version)
                .execute(conn)
                .await?;
            diesel::update(certificates::table.find(certificate_id))
                .set((
                    certificates::status.eq("valid"),
                    certificates::current_version_id.eq(Some(&version.id)),
                    certificates::not_after.eq(Some(version.not_after)),
                    certificates::renew_at.eq(Some(renewal.renew_at)),
                    certificates::renew_reason.eq(Some(&renewal.reason)),
                    certificates::ari_next_at.eq(renewal.ari_next_at),
                    certificates::waiting_reason.eq(None::<String>),
                    certificates::next_attempt_at.eq(None::<i64>),
                    certificates::attempts.eq(0),
                    certificates::last_error.eq(None::<String>),
                    certificates::pending_order_url.eq(None::<String>),
                    certificates::pending_key_sealed.eq(None::<Vec<u8>>),
                    certificates::pending_reason.eq(None::<String>),
                    certificates::lease_owner.eq(None::<String>),
                    certificates::lease_until.eq(None::<i64>),
                    certificates::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            // A certificate that was issued is no orphan (see `note_self_check`).
            diesel::delete(self_check_streaks::table.find(certificate_id))
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(version)
        })
    }

    /// Records a failed attempt and gives up the lease. A retryable failure keeps
    /// the order and schedules the next attempt at `next_attempt_at_ms`. A final
    /// failure forgets the order; without an issued version the certificate is
    /// `failed`; with one it stays `valid` (`expired` once past its expiry) and
    /// the renewal is tried again at `next_attempt_at_ms` (a back-off), so a
    /// failing renewal never loops.
    #[expect(clippy::too_many_arguments, reason = "one atomic state change")]
    pub async fn record_failure(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        error: &str,
        final_failure: bool,
        next_attempt_at_ms: Option<i64>,
        now_ms: i64,
        effects: Effects,
    ) -> Result<Certificate, StoreError> {
        transaction!(self, |conn| {
            let current: Certificate = certificates::table
                .find(certificate_id)
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::lease_owner.eq(owner))
                .select(Certificate::as_select())
                .first(conn)
                .await
                .optional()?
                .ok_or(StoreError::LeaseLost)?;
            let expired = current
                .not_after
                .is_some_and(|not_after| not_after <= now_ms);
            let status = match (final_failure, current.current_version_id.is_some()) {
                (false, _) => current.status.as_str(),
                (true, false) => "failed",
                (true, true) if expired => "expired",
                (true, true) => "valid",
            };
            let pending_order_url = if final_failure {
                None
            } else {
                current.pending_order_url.clone()
            };
            let (next_attempt_at, renew_at) =
                match (final_failure, current.current_version_id.is_some()) {
                    (false, _) => (next_attempt_at_ms, current.renew_at),
                    (true, true) => (None, next_attempt_at_ms.or(current.renew_at)),
                    (true, false) => (None, current.renew_at),
                };
            let updated = diesel::update(certificates::table.find(certificate_id))
                .set((
                    certificates::status.eq(status),
                    certificates::last_error.eq(Some(error)),
                    certificates::waiting_reason.eq(None::<String>),
                    certificates::attempts.eq(current.attempts.saturating_add(1)),
                    certificates::next_attempt_at.eq(next_attempt_at),
                    certificates::renew_at.eq(renew_at),
                    certificates::pending_key_sealed.eq(if final_failure {
                        None
                    } else {
                        current.pending_key_sealed.clone()
                    }),
                    certificates::pending_order_url.eq(pending_order_url),
                    certificates::lease_owner.eq(None::<String>),
                    certificates::lease_until.eq(None::<i64>),
                    certificates::updated_at.eq(now_ms),
                ))
                .returning(Certificate::as_returning())
                .get_result(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(updated)
        })
    }

    /// Puts work off until `until_ms` without counting a failed attempt (a
    /// rate-limit budget is full, or the CA answered `rateLimited`): the lease
    /// is given up, the order kept, and `reason` shown on the certificate.
    #[expect(clippy::too_many_arguments, reason = "one atomic state change")]
    pub async fn record_deferred(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        reason: &str,
        until_ms: i64,
        now_ms: i64,
        effects: Effects,
    ) -> Result<Certificate, StoreError> {
        transaction!(self, |conn| {
            let updated = diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::lease_owner.eq(owner))
                .set((
                    certificates::waiting_reason.eq(Some(reason)),
                    certificates::next_attempt_at.eq(Some(until_ms)),
                    certificates::lease_owner.eq(None::<String>),
                    certificates::lease_until.eq(None::<i64>),
                    certificates::updated_at.eq(now_ms),
                ))
                .returning(Certificate::as_returning())
                .get_result(conn)
                .await
                .optional()?
                .ok_or(StoreError::LeaseLost)?;
            write_effects!(conn, effects);
            Ok(updated)
        })
    }

    /// Notes a self-check outcome of a certificate: `all_failed` (every name
    /// failed) starts the streak or keeps it; anything else ends it. Returns
    /// since when every name has been failing.
    pub async fn note_self_check(
        &self,
        certificate_id: &str,
        all_failed: bool,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        transaction!(self, |conn| {
            if !all_failed {
                diesel::delete(self_check_streaks::table.find(certificate_id))
                    .execute(conn)
                    .await?;
                return Ok(None);
            }
            diesel::insert_into(self_check_streaks::table)
                .values((
                    self_check_streaks::certificate_id.eq(certificate_id),
                    self_check_streaks::failing_since.eq(now_ms),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            Ok(self_check_streaks::table
                .find(certificate_id)
                .select(self_check_streaks::failing_since)
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// Stops the automatic renewal of a certificate nobody can renew any more
    /// (an orphan): no renewal time (the scheduler never picks it), the order
    /// forgotten, `reason` as its last error, the lease given up. It stays
    /// valid until it expires; a forced renewal that succeeds sets a renewal
    /// time again.
    pub async fn stop_renewing(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        reason: &str,
        now_ms: i64,
        effects: Effects,
    ) -> Result<(), StoreError> {
        transaction!(self, |conn| {
            let updated = diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::lease_owner.eq(owner))
                .set((
                    certificates::status.eq(
                        diesel::dsl::case_when::<_, _, diesel::sql_types::Text>(
                            certificates::not_after.le(now_ms),
                            "expired",
                        )
                        .otherwise("valid"),
                    ),
                    certificates::renew_at.eq(None::<i64>),
                    certificates::renew_reason.eq(Some("stopped: an orphan (see the last error)")),
                    certificates::last_error.eq(Some(reason)),
                    certificates::attempts.eq(certificates::attempts + 1),
                    certificates::next_attempt_at.eq(None::<i64>),
                    certificates::waiting_reason.eq(None::<String>),
                    certificates::pending_order_url.eq(None::<String>),
                    certificates::pending_key_sealed.eq(None::<Vec<u8>>),
                    certificates::lease_owner.eq(None::<String>),
                    certificates::lease_until.eq(None::<i64>),
                    certificates::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            held_lease(updated)?;
            diesel::delete(self_check_streaks::table.find(certificate_id))
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(())
        })
    }

    /// Marks a version revoked; the certificate becomes `revoked` and is never renewed.
    pub async fn record_revoked(
        &self,
        organization_id: &str,
        certificate_id: &str,
        version_id: &str,
        reason: &str,
        now_ms: i64,
        effects: Effects,
    ) -> Result<(), StoreError> {
        transaction!(self, |conn| {
            let updated = diesel::update(certificate_versions::table.find(version_id))
                .filter(certificate_versions::organization_id.eq(organization_id))
                .filter(certificate_versions::certificate_id.eq(certificate_id))
                .set((
                    certificate_versions::revoked_at.eq(Some(now_ms)),
                    certificate_versions::revocation_reason.eq(Some(reason)),
                    // The archive's copy is written again, saying it is revoked.
                    certificate_versions::backup_location.eq(None::<String>),
                    certificate_versions::backup_next_at.eq(None::<i64>),
                    certificate_versions::backup_attempts.eq(0),
                ))
                .execute(conn)
                .await?;
            if updated != 1 {
                return Err(StoreError::NotFound);
            }
            diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .set((
                    certificates::status.eq("revoked"),
                    certificates::auto_renew.eq(false),
                    certificates::renew_at.eq(None::<i64>),
                    certificates::next_attempt_at.eq(None::<i64>),
                    certificates::pending_order_url.eq(None::<String>),
                    certificates::pending_key_sealed.eq(None::<Vec<u8>>),
                    certificates::last_error.eq(None::<String>),
                    certificates::lease_owner.eq(None::<String>),
                    certificates::lease_until.eq(None::<i64>),
                    certificates::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(())
        })
    }

    /// Notes an error on a certificate without changing its state (e.g. a
    /// revocation the CA refused), with its events.
    pub async fn record_error_note(
        &self,
        organization_id: &str,
        certificate_id: &str,
        error: &str,
        now_ms: i64,
        effects: Effects,
    ) -> Result<(), StoreError> {
        transaction!(self, |conn| {
            let updated = diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .set((
                    certificates::last_error.eq(Some(error)),
                    certificates::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            if updated != 1 {
                return Err(StoreError::NotFound);
            }
            write_effects!(conn, effects);
            Ok(())
        })
    }
}

/// An update filtered on the lease owner touched the row: the lease is held.
fn held_lease(updated: usize) -> Result<(), StoreError> {
    if updated == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost)
    }
}
