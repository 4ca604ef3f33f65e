//! The scheduler's queries: renewals that are due, lost or backed-off work to
//! queue again, certificates that ran out.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{Certificate, CertificateVersion, Effects};
use crate::schema::{certificate_versions, certificates, expiry_warnings};
use crate::{Store, StoreError, transaction, with_conn, write_effects};

/// Statuses in which work (an order) is outstanding.
const IN_FLIGHT: [&str; 3] = ["pending", "issuing", "renewing"];
/// Statuses from which a scheduled renewal starts.
const RENEWABLE: [&str; 2] = ["valid", "expired"];

impl Store {
    /// Valid, auto-renewing certificates whose renewal time has come, as
    /// (organization id, certificate id): the first page of
    /// [`Store::due_renewals_page`].
    pub async fn due_for_renewal(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .due_renewals_page(now_ms, None, limit)
            .await?
            .into_iter()
            .map(|certificate| (certificate.organization_id, certificate.id))
            .collect())
    }

    /// Up to `limit` certificates due for a scheduled renewal at `now_ms`
    /// (renewal time passed, auto-renew on, valid or expired, not deleted), in
    /// (renewal time, id) order after the cursor `after`: what the scheduler
    /// renews, page by page.
    pub async fn due_renewals_page(
        &self,
        now_ms: i64,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<Certificate>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = certificates::table
                .filter(certificates::renew_at.le(now_ms))
                .filter(certificates::deleted_at.is_null())
                .filter(certificates::auto_renew.eq(true))
                .filter(certificates::status.eq_any(RENEWABLE))
                .into_boxed();
            if let Some((renew_at, id)) = after {
                // The lower bound on its own makes it an index condition, so
                // a page does not scan again from the oldest due row.
                query = query.filter(certificates::renew_at.ge(renew_at)).filter(
                    certificates::renew_at
                        .gt(renew_at)
                        .or(certificates::renew_at
                            .eq(renew_at)
                            .and(certificates::id.gt(id.to_owned()))),
                );
            }
            Ok(query
                .order((certificates::renew_at.asc(), certificates::id.asc()))
                .limit(limit)
                .select(Certificate::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Moves a due, valid certificate to `renewing` and queues its job; false
    /// when another pass got there first.
    pub async fn mark_renewal_due(
        &self,
        organization_id: &str,
        certificate_id: &str,
        now_ms: i64,
        effects: Effects,
    ) -> Result<bool, StoreError> {
        transaction!(self, |conn| {
            let updated = diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::status.eq_any(RENEWABLE))
                .filter(certificates::renew_at.le(now_ms))
                .filter(certificates::deleted_at.is_null())
                .set((
                    certificates::status.eq("renewing"),
                    certificates::next_attempt_at.eq(Some(now_ms)),
                    certificates::pending_reason.eq(Some("scheduled")),
                    certificates::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            if updated == 1 {
                write_effects!(conn, effects);
            }
            Ok(updated == 1)
        })
    }

    /// Certificates with outstanding work that is due and not leased: what a lost
    /// job, a crash or a backoff leaves behind.
    pub async fn due_attempts(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        with_conn!(self, |conn| {
            Ok(certificates::table
                .filter(certificates::next_attempt_at.le(now_ms))
                .filter(certificates::deleted_at.is_null())
                .filter(certificates::status.eq_any(IN_FLIGHT))
                .filter(
                    certificates::lease_until
                        .is_null()
                        .or(certificates::lease_until.lt(now_ms)),
                )
                .order(certificates::next_attempt_at.asc())
                .limit(limit)
                .select((certificates::organization_id, certificates::id))
                .load(conn)
                .await?)
        })
    }

    /// Re-queues due work: pushes `next_attempt_at` to `retry_at_ms` (so the job
    /// is not queued again on every pass) and writes the job. False when the
    /// certificate is no longer due (the conditions of [`Store::due_attempts`]).
    pub async fn requeue_attempt(
        &self,
        organization_id: &str,
        certificate_id: &str,
        now_ms: i64,
        retry_at_ms: i64,
        effects: Effects,
    ) -> Result<bool, StoreError> {
        transaction!(self, |conn| {
            let updated = diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::next_attempt_at.le(now_ms))
                .filter(certificates::deleted_at.is_null())
                .filter(certificates::status.eq_any(IN_FLIGHT))
                .filter(
                    certificates::lease_until
                        .is_null()
                        .or(certificates::lease_until.lt(now_ms)),
                )
                .set(certificates::next_attempt_at.eq(Some(retry_at_ms)))
                .execute(conn)
                .await?;
            if updated == 1 {
                write_effects!(conn, effects);
            }
            Ok(updated == 1)
        })
    }

    /// Certificates whose current version expires within `threshold_days`
    /// of `now_ms` (and has not yet), not deleted, valid or renewing, with no
    /// warning for that threshold recorded on the version yet: the ones the
    /// scheduler warns about.
    pub async fn expiry_warnings_due(
        &self,
        threshold_days: i32,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(Certificate, CertificateVersion)>, StoreError> {
        let horizon = now_ms.saturating_add(i64::from(threshold_days) * 86_400_000);
        with_conn!(self, |conn| {
            let warned = expiry_warnings::table
                .filter(expiry_warnings::version_id.eq(certificate_versions::id))
                .filter(expiry_warnings::threshold_days.eq(threshold_days));
            Ok(certificates::table
                .inner_join(
                    certificate_versions::table
                        .on(certificates::current_version_id
                            .eq(certificate_versions::id.nullable())),
                )
                .filter(certificate_versions::not_after.le(horizon))
                .filter(certificate_versions::not_after.gt(now_ms))
                .filter(certificate_versions::revoked_at.is_null())
                .filter(certificates::deleted_at.is_null())
                .filter(certificates::status.eq_any(["valid", "renewing"]))
                .filter(diesel::dsl::not(diesel::dsl::exists(warned)))
                .order(certificate_versions::not_after.asc())
                .limit(limit)
                .select((Certificate::as_select(), CertificateVersion::as_select()))
                .load(conn)
                .await?)
        })
    }

    /// Records the warning at `threshold_days` for `version_id` (and, without
    /// an event, every larger threshold in `passed`) and writes `effects` (the
    /// `expiring` event) when this threshold had no row yet. False when it
    /// was recorded already (another pass got there first).
    pub async fn record_expiry_warning(
        &self,
        certificate_id: &str,
        version_id: &str,
        threshold_days: i32,
        passed: &[i32],
        now_ms: i64,
        effects: Effects,
    ) -> Result<bool, StoreError> {
        transaction!(self, |conn| {
            let thresholds = std::iter::once(threshold_days).chain(passed.iter().copied());
            for (index, days) in thresholds.enumerate() {
                let inserted = diesel::insert_into(expiry_warnings::table)
                    .values((
                        expiry_warnings::version_id.eq(version_id),
                        expiry_warnings::threshold_days.eq(days),
                        expiry_warnings::certificate_id.eq(certificate_id),
                        expiry_warnings::sent_at.eq(now_ms),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if index == 0 && inserted == 0 {
                    return Ok(false);
                }
            }
            write_effects!(conn, effects);
            Ok(true)
        })
    }

    /// Certificates whose CA renewal information (ARI) is due to be fetched
    /// again, with their current version: not deleted, auto-renewing, valid.
    pub async fn ari_due(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(Certificate, CertificateVersion)>, StoreError> {
        with_conn!(self, |conn| {
            Ok(certificates::table
                .inner_join(
                    certificate_versions::table
                        .on(certificates::current_version_id
                            .eq(certificate_versions::id.nullable())),
                )
                .filter(certificates::ari_next_at.le(now_ms))
                .filter(certificates::deleted_at.is_null())
                .filter(certificates::auto_renew.eq(true))
                .filter(certificates::status.eq_any(RENEWABLE))
                .order(certificates::ari_next_at.asc())
                .limit(limit)
                .select((Certificate::as_select(), CertificateVersion::as_select()))
                .load(conn)
                .await?)
        })
    }

    /// Records the CA's renewal window of the current version `version_id` and
    /// the renewal time chosen in it (also `renew_reason`), and when to ask
    /// again. `window: None` keeps the window (the CA did not answer) and only
    /// moves `ari_next_at`. False when the certificate moved on (renewing, a
    /// new version, deleted).
    #[expect(clippy::too_many_arguments, reason = "one atomic state change")]
    pub async fn record_renewal_window(
        &self,
        organization_id: &str,
        certificate_id: &str,
        version_id: &str,
        window: Option<(i64, i64)>,
        renew_at: Option<(i64, &str)>,
        ari_next_at: Option<i64>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        transaction!(self, |conn| {
            let base = certificates::table
                .find(certificate_id)
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::current_version_id.eq(version_id))
                .filter(certificates::deleted_at.is_null())
                .filter(certificates::status.eq_any(RENEWABLE));
            // `None` leaves the renewal time and its reason as they are.
            let renewal = renew_at.map(|(at, reason)| {
                (
                    certificates::renew_at.eq(Some(at)),
                    certificates::renew_reason.eq(Some(reason)),
                )
            });
            let updated = diesel::update(base)
                .set((
                    renewal,
                    certificates::ari_next_at.eq(ari_next_at),
                    certificates::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            if updated == 1
                && let Some((start, end)) = window
            {
                diesel::update(certificate_versions::table.find(version_id))
                    .set((
                        certificate_versions::ari_start.eq(Some(start)),
                        certificate_versions::ari_end.eq(Some(end)),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok(updated == 1)
        })
    }

    /// Marks valid certificates whose current version has expired as `expired`;
    /// returns how many. Auto-renewing ones are still renewed.
    pub async fn mark_expired(&self, now_ms: i64) -> Result<usize, StoreError> {
        with_conn!(self, |conn| {
            Ok(diesel::update(certificates::table)
                .filter(certificates::status.eq("valid"))
                .filter(certificates::not_after.le(now_ms))
                .filter(certificates::deleted_at.is_null())
                .set((
                    certificates::status.eq("expired"),
                    certificates::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?)
        })
    }
}
