//! Managed certificates, their versions, and the lease that lets one worker at a
//! time act on a certificate.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{Certificate, CertificateVersion, Effects};
use crate::schema::{certificate_versions, certificates};
use crate::{Store, StoreError, transaction, with_conn, write_effects};

/// Statuses in which work (an order) is outstanding.
const IN_FLIGHT: [&str; 3] = ["pending", "issuing", "renewing"];
/// Statuses from which a scheduled renewal starts.
const RENEWABLE: [&str; 2] = ["valid", "expired"];

/// Filters of [`Store::list_certificates`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub name_contains: Option<String>,
    pub expiring_before_ms: Option<i64>,
    pub after: Option<PageCursor>,
    pub limit: i64,
}

/// Position after the last row of a page (keyset pagination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: i64,
    pub id: String,
}

/// A freshly issued certificate; the store numbers the version.
#[derive(Debug, Clone)]
pub struct NewCertificateVersion {
    pub id: String,
    pub serial: String,
    pub fingerprint_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    pub leaf_pem: String,
    pub chain_pem: String,
    pub key_sealed: Vec<u8>,
    pub key_type: String,
    pub order_url: String,
}

impl Store {
    /// Records a new managed certificate with its first job. When an active
    /// certificate for the same name set exists in the organization, nothing is
    /// written and [`StoreError::AlreadyExists`] names it.
    pub async fn create_certificate(
        &self,
        certificate: Certificate,
        effects: Effects,
    ) -> Result<Certificate, StoreError> {
        let organization_id = certificate.organization_id.clone();
        let names_key = certificate.names_key.clone();
        let result = transaction!(self, |conn| {
            diesel::insert_into(certificates::table)
                .values(&certificate)
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(certificate)
        });
        match result {
            Err(StoreError::Query(error)) if StoreError::is_unique_violation(&error) => {
                match self
                    .find_active_by_names(&organization_id, &names_key)
                    .await?
                {
                    Some(existing) => Err(StoreError::AlreadyExists {
                        existing_id: existing.id,
                    }),
                    None => Err(StoreError::Query(error)),
                }
            }
            other => other,
        }
    }

    /// The active (not deleted, not revoked) certificate for a name set.
    pub async fn find_active_by_names(
        &self,
        organization_id: &str,
        names_key: &str,
    ) -> Result<Option<Certificate>, StoreError> {
        with_conn!(self, |conn| {
            Ok(certificates::table
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::names_key.eq(names_key))
                .filter(certificates::deleted_at.is_null())
                .filter(certificates::status.ne("revoked"))
                .select(Certificate::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// A certificate of the organization that is not deleted.
    pub async fn get_certificate(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> Result<Option<Certificate>, StoreError> {
        with_conn!(self, |conn| {
            Ok(certificates::table
                .find(certificate_id)
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::deleted_at.is_null())
                .select(Certificate::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// One page of the organization's certificates, oldest first.
    pub async fn list_certificates(
        &self,
        organization_id: &str,
        filter: &ListFilter,
    ) -> Result<Vec<Certificate>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = certificates::table
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::deleted_at.is_null())
                .select(Certificate::as_select())
                .order((certificates::created_at.asc(), certificates::id.asc()))
                .limit(filter.limit)
                .into_boxed();
            if let Some(status) = &filter.status {
                query = query.filter(certificates::status.eq(status.clone()));
            }
            if let Some(text) = &filter.name_contains {
                // Names are stored lower-case; lowering the search makes it case-insensitive
                // on PostgreSQL too (SQLite's LIKE already is, for ASCII).
                let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
                query = query.filter(certificates::names.like(pattern).escape('\\'));
            }
            if let Some(before) = filter.expiring_before_ms {
                query = query.filter(certificates::not_after.lt(before));
            }
            if let Some(cursor) = &filter.after {
                query = query.filter(
                    certificates::created_at
                        .gt(cursor.created_at)
                        .or(certificates::created_at
                            .eq(cursor.created_at)
                            .and(certificates::id.gt(cursor.id.clone()))),
                );
            }
            Ok(query.load(conn).await?)
        })
    }

    /// Versions by id, within the organization.
    pub async fn versions_by_ids(
        &self,
        organization_id: &str,
        version_ids: &[String],
    ) -> Result<Vec<CertificateVersion>, StoreError> {
        if version_ids.is_empty() {
            return Ok(Vec::new());
        }
        with_conn!(self, |conn| {
            Ok(certificate_versions::table
                .filter(certificate_versions::organization_id.eq(organization_id))
                .filter(certificate_versions::id.eq_any(version_ids))
                .select(CertificateVersion::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Every version of a certificate, oldest first.
    pub async fn list_versions(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> Result<Vec<CertificateVersion>, StoreError> {
        with_conn!(self, |conn| {
            Ok(certificate_versions::table
                .filter(certificate_versions::organization_id.eq(organization_id))
                .filter(certificate_versions::certificate_id.eq(certificate_id))
                .order(certificate_versions::version.asc())
                .select(CertificateVersion::as_select())
                .load(conn)
                .await?)
        })
    }

    /// The highest version number of a certificate (0 when never issued).
    pub async fn latest_version_number(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> Result<i32, StoreError> {
        with_conn!(self, |conn| {
            let latest: Option<i32> = certificate_versions::table
                .filter(certificate_versions::organization_id.eq(organization_id))
                .filter(certificate_versions::certificate_id.eq(certificate_id))
                .select(diesel::dsl::max(certificate_versions::version))
                .first(conn)
                .await?;
            Ok(latest.unwrap_or(0))
        })
    }

    /// Queues a renewal now, whatever the schedule says.
    pub async fn request_renewal(
        &self,
        organization_id: &str,
        certificate_id: &str,
        now_ms: i64,
        effects: Effects,
    ) -> Result<Certificate, StoreError> {
        transaction!(self, |conn| {
            let current: Certificate = certificates::table
                .find(certificate_id)
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::deleted_at.is_null())
                .select(Certificate::as_select())
                .first(conn)
                .await
                .optional()?
                .ok_or(StoreError::NotFound)?;
            let status = match current.status.as_str() {
                "pending" | "issuing" => current.status.clone(),
                "revoked" => return Err(StoreError::Conflict("revoked certificate".to_owned())),
                _ if current.current_version_id.is_none() => "pending".to_owned(),
                _ => "renewing".to_owned(),
            };
            let updated = diesel::update(certificates::table.find(certificate_id))
                .set((
                    certificates::status.eq(status),
                    certificates::next_attempt_at.eq(Some(now_ms)),
                    certificates::attempts.eq(0),
                    certificates::last_error.eq(None::<String>),
                    certificates::pending_reason.eq(Some("forced")),
                    certificates::updated_at.eq(now_ms),
                ))
                .returning(Certificate::as_returning())
                .get_result(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(updated)
        })
    }

    /// Stops managing a certificate; it is never renewed again.
    pub async fn delete_certificate(
        &self,
        organization_id: &str,
        certificate_id: &str,
        now_ms: i64,
        effects: Effects,
    ) -> Result<Certificate, StoreError> {
        transaction!(self, |conn| {
            let deleted = diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::deleted_at.is_null())
                .set((
                    certificates::deleted_at.eq(Some(now_ms)),
                    certificates::auto_renew.eq(false),
                    certificates::next_attempt_at.eq(None::<i64>),
                    certificates::updated_at.eq(now_ms),
                ))
                .returning(Certificate::as_returning())
                .get_result(conn)
                .await
                .optional()?
                .ok_or(StoreError::NotFound)?;
            write_effects!(conn, effects);
            Ok(deleted)
        })
    }

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
        with_conn!(self, |conn| {
            let updated = diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::lease_owner.eq(owner))
                .set(certificates::lease_until.eq(Some(until_ms)))
                .execute(conn)
                .await?;
            if updated == 1 {
                Ok(())
            } else {
                Err(StoreError::LeaseLost)
            }
        })
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
        with_conn!(self, |conn| {
            let updated = diesel::update(certificates::table.find(certificate_id))
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::lease_owner.eq(owner))
                .set((
                    certificates::status.eq(status),
                    certificates::pending_order_url.eq(pending_order_url),
                    certificates::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            if updated == 1 {
                Ok(())
            } else {
                Err(StoreError::LeaseLost)
            }
        })
    }

    /// Stores an issued certificate as the next version and makes it current.
    #[expect(clippy::too_many_arguments, reason = "one atomic state change")]
    pub async fn record_issued(
        &self,
        organization_id: &str,
        certificate_id: &str,
        owner: &str,
        new_version: NewCertificateVersion,
        renew_at_ms: i64,
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
            let version = CertificateVersion {
                id: new_version.id,
                certificate_id: certificate_id.to_owned(),
                organization_id: organization_id.to_owned(),
                version: latest.unwrap_or(0) + 1,
                serial: new_version.serial,
                fingerprint_sha256: new_version.fingerprint_sha256,
                not_before: new_version.not_before,
                not_after: new_version.not_after,
                leaf_pem: new_version.leaf_pem,
                chain_pem: new_version.chain_pem,
                key_sealed: new_version.key_sealed,
                key_type: new_version.key_type,
                order_url: new_version.order_url,
                ari_start: None,
                ari_end: None,
                revoked_at: None,
                revocation_reason: None,
                backup_location: None,
                created_at: now_ms,
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
                    certificates::renew_at.eq(Some(renew_at_ms)),
                    certificates::next_attempt_at.eq(None::<i64>),
                    certificates::attempts.eq(0),
                    certificates::last_error.eq(None::<String>),
                    certificates::pending_order_url.eq(None::<String>),
                    certificates::pending_reason.eq(None::<String>),
                    certificates::lease_owner.eq(None::<String>),
                    certificates::lease_until.eq(None::<i64>),
                    certificates::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(version)
        })
    }

    /// Records a failed attempt and gives up the lease. A retryable failure keeps
    /// the order and schedules the next attempt at `next_attempt_at_ms`. A final
    /// failure forgets the order; without an issued version the certificate is
    /// `failed`; with one it stays `valid` and the renewal is tried again at
    /// `next_attempt_at_ms` (a back-off), so a failing renewal never loops.
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
            let status = if final_failure {
                if current.current_version_id.is_some() {
                    "valid"
                } else {
                    "failed"
                }
            } else {
                current.status.as_str()
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
                    certificates::attempts.eq(current.attempts.saturating_add(1)),
                    certificates::next_attempt_at.eq(next_attempt_at),
                    certificates::renew_at.eq(renew_at),
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

    /// Valid, auto-renewing certificates whose renewal time has come, as
    /// (organization id, certificate id).
    pub async fn due_for_renewal(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        with_conn!(self, |conn| {
            Ok(certificates::table
                .filter(certificates::renew_at.le(now_ms))
                .filter(certificates::deleted_at.is_null())
                .filter(certificates::auto_renew.eq(true))
                .filter(certificates::status.eq_any(RENEWABLE))
                .order(certificates::renew_at.asc())
                .limit(limit)
                .select((certificates::organization_id, certificates::id))
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
}

impl Store {
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

/// Escapes `%`, `_` and `\` for a LIKE pattern with `\` as the escape character.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}
