//! Managed certificates and their versions: create, read, list, renew on
//! request, delete.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{Certificate, CertificateVersion, Effects};
use crate::schema::{certificate_versions, certificates};
use crate::{Store, StoreError, transaction, with_conn, write_effects};

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
    /// The version number its key was sealed for: the save fails rather than
    /// give the key another number. `None`: the next number.
    pub version: Option<i32>,
    pub serial: String,
    pub fingerprint_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    pub leaf_pem: String,
    pub chain_pem: String,
    pub key_sealed: Vec<u8>,
    pub key_type: String,
    pub order_url: String,
    /// The configured name of the CA that issued it.
    pub issuer: Option<String>,
}

/// When a new version is to be renewed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalPlan {
    pub renew_at: i64,
    /// In plain words, shown on the certificate.
    pub reason: String,
    /// The CA's suggested window (RFC 9773), when it offers one.
    pub ari_window: Option<(i64, i64)>,
    /// When to fetch the window again.
    pub ari_next_at: Option<i64>,
}

impl RenewalPlan {
    /// A renewal time from the lifetime rule, without ARI.
    pub fn at(renew_at: i64, reason: impl Into<String>) -> RenewalPlan {
        RenewalPlan {
            renew_at,
            reason: reason.into(),
            ari_window: None,
            ari_next_at: None,
        }
    }
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
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `\` as the escape character.
pub(crate) fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}
