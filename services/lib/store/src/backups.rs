//! The archive copy of each certificate version: which versions still need
//! one, and recording where a copy was written or why it failed.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{Certificate, CertificateVersion, Organization};
use crate::schema::{certificate_versions, certificates, organizations};
use crate::{Store, StoreError, with_conn};

/// A version whose copy is due, with its certificate and organization.
#[derive(Debug, Clone)]
pub struct BackupDue {
    pub organization: Organization,
    pub certificate: Certificate,
    pub version: CertificateVersion,
    /// Failed attempts so far.
    pub attempts: i32,
}

/// The archive state of one version, as `backup verify` shows it.
#[derive(Debug, Clone, Queryable)]
pub struct BackupState {
    pub version_id: String,
    pub organization_id: String,
    pub certificate_id: String,
    pub serial: String,
    pub location: Option<String>,
    pub backup_at: Option<i64>,
    pub error: Option<String>,
    pub attempts: i32,
}

impl Store {
    /// Up to `limit` versions without a copy whose next attempt is due, oldest
    /// first; versions of deleted certificates or organizations are skipped.
    pub async fn backups_due(&self, now_ms: i64, limit: i64) -> Result<Vec<BackupDue>, StoreError> {
        let rows: Vec<(CertificateVersion, i32, Certificate, Organization)> =
            with_conn!(self, |conn| {
                certificate_versions::table
                    .inner_join(
                        certificates::table.on(certificates::id
                            .eq(certificate_versions::certificate_id)
                            .and(
                                certificates::organization_id
                                    .eq(certificate_versions::organization_id),
                            )),
                    )
                    .inner_join(
                        organizations::table
                            .on(organizations::id.eq(certificate_versions::organization_id)),
                    )
                    .filter(certificate_versions::backup_location.is_null())
                    .filter(
                        certificate_versions::backup_next_at
                            .is_null()
                            .or(certificate_versions::backup_next_at.le(now_ms)),
                    )
                    .filter(certificates::deleted_at.is_null())
                    .filter(organizations::deleted_at.is_null())
                    .order(certificate_versions::created_at)
                    .limit(limit)
                    .select((
                        CertificateVersion::as_select(),
                        certificate_versions::backup_attempts,
                        Certificate::as_select(),
                        Organization::as_select(),
                    ))
                    .load(conn)
                    .await?
            });
        Ok(rows
            .into_iter()
            .map(|(version, attempts, certificate, organization)| BackupDue {
                organization,
                certificate,
                version,
                attempts,
            })
            .collect())
    }

    /// Records the copy of `version_id` written at `location`. A version
    /// revoked or rewrapped meanwhile keeps needing a copy (either cleared
    /// the location after this copy was read), so only a row that still has
    /// the copy's revocation and sealed key is marked.
    pub async fn record_backup(
        &self,
        version_id: &str,
        revoked_at: Option<i64>,
        key_sealed: &[u8],
        location: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let written = (
            certificate_versions::backup_location.eq(Some(location)),
            certificate_versions::backup_at.eq(Some(now_ms)),
            certificate_versions::backup_error.eq(None::<String>),
            certificate_versions::backup_attempts.eq(0),
            certificate_versions::backup_next_at.eq(None::<i64>),
        );
        let updated = with_conn!(self, |conn| {
            let target = certificate_versions::table
                .filter(certificate_versions::id.eq(version_id))
                .filter(certificate_versions::key_sealed.eq(key_sealed));
            match revoked_at {
                Some(at) => {
                    diesel::update(target.filter(certificate_versions::revoked_at.eq(at)))
                        .set(written)
                        .execute(conn)
                        .await?
                }
                None => {
                    diesel::update(target.filter(certificate_versions::revoked_at.is_null()))
                        .set(written)
                        .execute(conn)
                        .await?
                }
            }
        });
        Ok(updated == 1)
    }

    /// Records a failed copy of `version_id` and when to try again.
    pub async fn record_backup_failure(
        &self,
        version_id: &str,
        error: &str,
        next_at_ms: i64,
    ) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::update(
                certificate_versions::table.filter(certificate_versions::id.eq(version_id)),
            )
            .set((
                certificate_versions::backup_error.eq(Some(error)),
                certificate_versions::backup_attempts.eq(certificate_versions::backup_attempts + 1),
                certificate_versions::backup_next_at.eq(Some(next_at_ms)),
            ))
            .execute(conn)
            .await?;
            Ok::<(), StoreError>(())
        })
    }

    /// The archive state of every version of live certificates, in
    /// organization, certificate and version order.
    pub async fn backup_states(&self) -> Result<Vec<BackupState>, StoreError> {
        with_conn!(self, |conn| {
            Ok(certificate_versions::table
                .inner_join(
                    certificates::table.on(certificates::id
                        .eq(certificate_versions::certificate_id)
                        .and(
                            certificates::organization_id.eq(certificate_versions::organization_id),
                        )),
                )
                .filter(certificates::deleted_at.is_null())
                .order((
                    certificate_versions::organization_id,
                    certificate_versions::certificate_id,
                    certificate_versions::version,
                ))
                .select((
                    certificate_versions::id,
                    certificate_versions::organization_id,
                    certificate_versions::certificate_id,
                    certificate_versions::serial,
                    certificate_versions::backup_location,
                    certificate_versions::backup_at,
                    certificate_versions::backup_error,
                    certificate_versions::backup_attempts,
                ))
                .load(conn)
                .await?)
        })
    }
}
