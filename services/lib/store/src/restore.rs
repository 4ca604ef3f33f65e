//! Reading versions back for `certfleet backup verify`, and writing
//! organizations, certificates and versions restored from the archive
//! (`certfleet restore`).
//!
//! A restore writes only what a copy holds: no ACME account (the issuer
//! registers a new one on the next order), no API token and no DNS provider.
//! A row whose id already exists is left as it is and reported, so running
//! a restore twice (or with `--merge` into a live database) changes nothing
//! that is there.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{AuditEntry, Certificate, CertificateVersion, Organization};
use crate::schema::{audit_log, certificate_versions, certificates, organizations};
use crate::{Store, StoreError, transaction, with_conn};

/// The actor of the audit entries a restore writes.
const RESTORE_ACTOR: &str = "restore";

/// Whether a restored row was written or already there (and left alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    Inserted,
    Existed,
}

/// A certificate and the versions of it to restore, newest last. Built only
/// with at least one version, all of this certificate.
#[derive(Debug, Clone)]
pub struct CertificateBackup {
    certificate: Certificate,
    versions: Vec<CertificateVersion>,
}

impl CertificateBackup {
    /// `certificate` carries the settings (names, key type, challenge,
    /// renewal); its state (status, current version, expiry, renewal time)
    /// is derived from `versions` by [`Store::restore_certificate`]. Each
    /// version's `backup_location` is where it was restored from.
    pub fn new(
        certificate: Certificate,
        mut versions: Vec<CertificateVersion>,
    ) -> Result<CertificateBackup, String> {
        if versions.is_empty() {
            return Err(format!(
                "certificate {}: no version to restore",
                certificate.id
            ));
        }
        if let Some(stray) = versions.iter().find(|version| {
            version.certificate_id != certificate.id
                || version.organization_id != certificate.organization_id
        }) {
            return Err(format!(
                "version {} belongs to certificate {} of organization {}, not {} of {}",
                stray.id,
                stray.certificate_id,
                stray.organization_id,
                certificate.id,
                certificate.organization_id
            ));
        }
        versions.sort_by_key(|version| version.version);
        Ok(CertificateBackup {
            certificate,
            versions,
        })
    }

    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    pub fn versions(&self) -> &[CertificateVersion] {
        &self.versions
    }

    /// The newest version (highest number).
    fn newest(&self) -> &CertificateVersion {
        // `new` refuses an empty list.
        &self.versions[self.versions.len() - 1]
    }
}

/// What [`Store::restore_certificate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRestore {
    pub certificate: Restored,
    /// Ids of the versions written.
    pub versions_inserted: Vec<String>,
    /// Ids of the versions already there.
    pub versions_existed: Vec<String>,
}

/// A version of a live certificate, with its archive state, for `backup verify`.
#[derive(Debug, Clone)]
pub struct VersionToVerify {
    pub version: CertificateVersion,
    pub backup_at: Option<i64>,
    pub backup_error: Option<String>,
    pub backup_attempts: i32,
}

/// The status of a restored certificate from its newest version: `revoked`
/// when it is revoked, `valid` while it is unexpired, `expired` otherwise.
pub fn restored_status(newest: &CertificateVersion, now_ms: i64) -> &'static str {
    if newest.revoked_at.is_some() {
        "revoked"
    } else if newest.not_after > now_ms {
        "valid"
    } else {
        "expired"
    }
}

/// The certificate row to write: the settings of `backup.certificate`, the
/// state derived from the newest version. A revoked certificate is not
/// renewed; an expired one with auto-renew is due at once.
fn restored_row(backup: &CertificateBackup, now_ms: i64) -> Certificate {
    let newest = backup.newest();
    let status = restored_status(newest, now_ms);
    let renew_at = (status != "revoked").then(|| {
        certfleet_core::renew_at(
            newest.not_before,
            newest.not_after,
            backup.certificate.renew_before_ms,
        )
    });
    Certificate {
        status: status.to_owned(),
        renew_at,
        next_attempt_at: None,
        attempts: 0,
        last_error: None,
        current_version_id: Some(newest.id.clone()),
        not_after: Some(newest.not_after),
        pending_order_url: None,
        pending_reason: None,
        pending_key_sealed: None,
        order_attempt_at: None,
        lease_owner: None,
        lease_until: None,
        deleted_at: None,
        updated_at: now_ms,
        renew_reason: renew_at.map(|_| "restored from a backup; lifetime rule".to_owned()),
        waiting_reason: None,
        ari_next_at: None,
        ..backup.certificate.clone()
    }
}

impl Store {
    /// Whether the database holds no organization (a restore target).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(!self.has_organizations().await?)
    }

    /// Writes a restored organization unless its id exists. Another
    /// organization with the same slug is [`StoreError::Conflict`].
    pub async fn restore_organization(
        &self,
        organization: Organization,
        now_ms: i64,
    ) -> Result<Restored, StoreError> {
        let slug = organization.slug.clone();
        let result = transaction!(self, |conn| {
            let existing: Option<String> = organizations::table
                .find(&organization.id)
                .select(organizations::id)
                .first(conn)
                .await
                .optional()?;
            if existing.is_some() {
                return Ok(Restored::Existed);
            }
            diesel::insert_into(organizations::table)
                .values(&organization)
                .execute(conn)
                .await?;
            let audit = AuditEntry::new(
                Some(&organization.id),
                RESTORE_ACTOR,
                "organization.restored",
                Some(&organization.id),
                now_ms,
            );
            diesel::insert_into(audit_log::table)
                .values(&audit)
                .execute(conn)
                .await?;
            Ok(Restored::Inserted)
        });
        match result {
            Err(StoreError::Query(error)) if StoreError::is_unique_violation(&error) => Err(
                StoreError::Conflict(format!("another organization with slug {slug:?}")),
            ),
            other => other,
        }
    }

    /// Writes a restored certificate and its versions in one transaction: the
    /// certificate unless its id exists (then it is left as it is), each
    /// version unless its id exists. Restored versions record
    /// `backup_location` (from the row) and `backup_at = now_ms`: their copy
    /// is where they came from. The organization must exist.
    ///
    /// An active certificate of the organization for the same names, or
    /// another version with the same number, is [`StoreError::Conflict`] and
    /// nothing is written.
    pub async fn restore_certificate(
        &self,
        backup: CertificateBackup,
        now_ms: i64,
    ) -> Result<CertificateRestore, StoreError> {
        let row = restored_row(&backup, now_ms);
        let names = row.names.clone();
        let result = transaction!(self, |conn| {
            let existing: Option<String> = certificates::table
                .find(&row.id)
                .select(certificates::organization_id)
                .first(conn)
                .await
                .optional()?;
            let certificate = match existing {
                Some(organization_id) if organization_id != row.organization_id => {
                    return Err(StoreError::Conflict(format!(
                        "certificate {} of organization {organization_id}",
                        row.id
                    )));
                }
                Some(_) => Restored::Existed,
                None => {
                    diesel::insert_into(certificates::table)
                        .values(&row)
                        .execute(conn)
                        .await?;
                    let audit = AuditEntry::new(
                        Some(&row.organization_id),
                        RESTORE_ACTOR,
                        "certificate.restored",
                        Some(&row.id),
                        now_ms,
                    );
                    diesel::insert_into(audit_log::table)
                        .values(&audit)
                        .execute(conn)
                        .await?;
                    Restored::Inserted
                }
            };
            let mut outcome = CertificateRestore {
                certificate,
                versions_inserted: Vec::new(),
                versions_existed: Vec::new(),
            };
            for version in &backup.versions {
                let existing: Option<String> = certificate_versions::table
                    .find(&version.id)
                    .select(certificate_versions::id)
                    .first(conn)
                    .await
                    .optional()?;
                if existing.is_some() {
                    outcome.versions_existed.push(version.id.clone());
                    continue;
                }
                // Its copy is where it was restored from, as of now.
                let restored = CertificateVersion {
                    backup_at: Some(now_ms),
                    ..version.clone()
                };
                diesel::insert_into(certificate_versions::table)
                    .values(&restored)
                    .execute(conn)
                    .await?;
                outcome.versions_inserted.push(version.id.clone());
            }
            Ok(outcome)
        });
        match result {
            Err(StoreError::Query(error)) if StoreError::is_unique_violation(&error) => {
                Err(StoreError::Conflict(format!(
                    "an active certificate for {names} in organization {} or a version with the same number",
                    backup.certificate.organization_id
                )))
            }
            other => other,
        }
    }

    /// Up to `limit` versions of live certificates of live organizations
    /// that are neither revoked nor expired at `now_ms`, by id, after the id
    /// `after` (for paging).
    pub async fn versions_to_verify(
        &self,
        now_ms: i64,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<VersionToVerify>, StoreError> {
        let rows: Vec<(CertificateVersion, Option<i64>, Option<String>, i32)> =
            with_conn!(self, |conn| {
                let mut query = certificate_versions::table
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
                    .filter(certificates::deleted_at.is_null())
                    .filter(organizations::deleted_at.is_null())
                    .filter(certificate_versions::revoked_at.is_null())
                    .filter(certificate_versions::not_after.gt(now_ms))
                    .into_boxed();
                if let Some(after) = after {
                    query = query.filter(certificate_versions::id.gt(after.to_owned()));
                }
                query
                    .order(certificate_versions::id)
                    .limit(limit)
                    .select((
                        CertificateVersion::as_select(),
                        certificate_versions::backup_at,
                        certificate_versions::backup_error,
                        certificate_versions::backup_attempts,
                    ))
                    .load(conn)
                    .await?
            });
        Ok(rows
            .into_iter()
            .map(
                |(version, backup_at, backup_error, backup_attempts)| VersionToVerify {
                    version,
                    backup_at,
                    backup_error,
                    backup_attempts,
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const DAY: i64 = 86_400_000;

    fn certificate() -> Certificate {
        Certificate {
            id: "cert-1".to_owned(),
            organization_id: "org-1".to_owned(),
            primary_name: "a.example".to_owned(),
            names: "a.example".to_owned(),
            names_key: "a.example".to_owned(),
            wildcard: false,
            key_type: "ecdsa-p256".to_owned(),
            challenge_type: "http-01".to_owned(),
            dns_provider_id: None,
            directory_url: "https://ca.example/dir".to_owned(),
            profile: None,
            status: "pending".to_owned(),
            auto_renew: true,
            renew_before_ms: None,
            renew_at: None,
            next_attempt_at: Some(NOW),
            attempts: 3,
            last_error: Some("old".to_owned()),
            current_version_id: None,
            not_after: None,
            pending_order_url: None,
            pending_reason: None,
            pending_key_sealed: None,
            order_attempt_at: None,
            lease_owner: Some("someone".to_owned()),
            lease_until: Some(NOW),
            deleted_at: None,
            created_at: NOW - 100 * DAY,
            updated_at: NOW - 100 * DAY,
            renew_reason: None,
            waiting_reason: None,
            ari_next_at: None,
        }
    }

    fn version(id: &str, number: i32, not_before: i64, not_after: i64) -> CertificateVersion {
        CertificateVersion {
            id: id.to_owned(),
            certificate_id: "cert-1".to_owned(),
            organization_id: "org-1".to_owned(),
            version: number,
            serial: format!("0{number}"),
            fingerprint_sha256: "00".repeat(32),
            not_before,
            not_after,
            leaf_pem: String::new(),
            chain_pem: String::new(),
            key_sealed: vec![1],
            key_type: "ecdsa-p256".to_owned(),
            order_url: String::new(),
            ari_start: None,
            ari_end: None,
            revoked_at: None,
            revocation_reason: None,
            backup_location: Some("file:///b/".to_owned()),
            backup_at: None,
            backup_error: None,
            backup_attempts: 0,
            backup_next_at: None,
            issuer: None,
            created_at: not_before,
        }
    }

    #[test]
    fn the_newest_version_decides_the_state() {
        let old = version("v1", 1, NOW - 120 * DAY, NOW - 30 * DAY);
        let new = version("v2", 2, NOW - 10 * DAY, NOW + 80 * DAY);
        let backup = CertificateBackup::new(certificate(), vec![new.clone(), old]);
        let backup = backup.unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(backup.versions()[0].id, "v1", "sorted by number");
        let row = restored_row(&backup, NOW);
        assert_eq!(row.status, "valid");
        assert_eq!(row.current_version_id.as_deref(), Some("v2"));
        assert_eq!(row.not_after, Some(new.not_after));
        // 90 days of lifetime: due when a third remains.
        assert_eq!(row.renew_at, Some(new.not_after - 30 * DAY));
        assert_eq!(row.attempts, 0);
        assert_eq!(row.last_error, None);
        assert_eq!(row.lease_owner, None);
        assert_eq!(row.next_attempt_at, None);
        assert_eq!(row.updated_at, NOW);
        assert_eq!(row.created_at, NOW - 100 * DAY);
    }

    #[test]
    fn expired_and_revoked_certificates() {
        let expired = version("v1", 1, NOW - 90 * DAY, NOW - DAY);
        assert_eq!(restored_status(&expired, NOW), "expired");
        assert_eq!(restored_status(&expired, NOW - 2 * DAY), "valid");
        let backup = CertificateBackup::new(certificate(), vec![expired.clone()]);
        let row = restored_row(&backup.unwrap_or_else(|error| panic!("{error}")), NOW);
        assert!(row.renew_at.is_some_and(|at| at <= NOW), "due at once");

        let mut revoked = expired;
        revoked.not_after = NOW + DAY;
        revoked.revoked_at = Some(NOW - DAY);
        assert_eq!(restored_status(&revoked, NOW), "revoked");
        let backup = CertificateBackup::new(certificate(), vec![revoked]);
        let row = restored_row(&backup.unwrap_or_else(|error| panic!("{error}")), NOW);
        assert_eq!(row.status, "revoked");
        assert_eq!(row.renew_at, None);
    }

    #[test]
    fn a_backup_needs_versions_of_its_own_certificate() {
        let error = CertificateBackup::new(certificate(), Vec::new()).err();
        assert_eq!(
            error.as_deref(),
            Some("certificate cert-1: no version to restore")
        );
        let mut stray = version("v9", 1, NOW, NOW + DAY);
        stray.certificate_id = "cert-2".to_owned();
        let error = CertificateBackup::new(certificate(), vec![stray]).err();
        assert!(
            error
                .as_deref()
                .is_some_and(|text| text.starts_with("version v9 belongs to certificate cert-2")),
            "{error:?}"
        );
    }
}
