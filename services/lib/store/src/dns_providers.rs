//! DNS providers of an organization, and the DNS-01 records written with
//! them that still wait for their clean-up.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{AcmeChallenge, Certificate, DnsProviderRow, Effects};
use crate::schema::{acme_challenges, certificates, dns_providers};

/// A DNS-01 challenge row whose value was written and not yet removed. As
/// literal SQL (not bound parameters) so that SQLite and PostgreSQL use the
/// partial indexes with this predicate (migration 000006).
fn value_left() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql(
        "acme_challenges.challenge_type = 'dns-01' \
         AND acme_challenges.dns_record_name IS NOT NULL \
         AND acme_challenges.dns_cleaned_at IS NULL",
    )
}

/// Statuses of a certificate an issuer is (or will be) working on.
const IN_FLIGHT: [&str; 3] = ["pending", "issuing", "renewing"];
use crate::{Store, StoreError, transaction, with_conn, write_effects};

impl Store {
    /// Records a provider; a name in use is [`StoreError::Conflict`].
    pub async fn create_dns_provider(
        &self,
        row: DnsProviderRow,
        effects: Effects,
    ) -> Result<DnsProviderRow, StoreError> {
        let name = row.name.clone();
        let result = transaction!(self, |conn| {
            diesel::insert_into(dns_providers::table)
                .values(&row)
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(row)
        });
        match result {
            Err(StoreError::Query(error)) if StoreError::is_unique_violation(&error) => Err(
                StoreError::Conflict(format!("a DNS provider named {name:?}")),
            ),
            other => other,
        }
    }

    /// The organization's providers, by name.
    pub async fn list_dns_providers(
        &self,
        organization_id: &str,
    ) -> Result<Vec<DnsProviderRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(dns_providers::table
                .filter(dns_providers::organization_id.eq(organization_id))
                .filter(dns_providers::deleted_at.is_null())
                .order(dns_providers::name.asc())
                .select(DnsProviderRow::as_select())
                .load(conn)
                .await?)
        })
    }

    /// A provider by id or by name; deleted ones are gone.
    pub async fn find_dns_provider(
        &self,
        organization_id: &str,
        id_or_name: &str,
    ) -> Result<Option<DnsProviderRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(dns_providers::table
                .filter(dns_providers::organization_id.eq(organization_id))
                .filter(dns_providers::deleted_at.is_null())
                .filter(
                    dns_providers::id
                        .eq(id_or_name)
                        .or(dns_providers::name.eq(id_or_name)),
                )
                .select(DnsProviderRow::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// A provider by id, deleted or not: the issuer still cleans up with a
    /// provider deleted after its records were written.
    pub async fn get_dns_provider_any(
        &self,
        organization_id: &str,
        id: &str,
    ) -> Result<Option<DnsProviderRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(dns_providers::table
                .filter(dns_providers::organization_id.eq(organization_id))
                .filter(dns_providers::id.eq(id))
                .select(DnsProviderRow::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// Deletes a provider that no active certificate uses; one that is used is
    /// [`StoreError::InUse`] with how many use it.
    pub async fn delete_dns_provider(
        &self,
        organization_id: &str,
        id: &str,
        now_ms: i64,
        effects: Effects,
    ) -> Result<(), StoreError> {
        transaction!(self, |conn| {
            let users: i64 = certificates::table
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::dns_provider_id.eq(id))
                .filter(certificates::deleted_at.is_null())
                .filter(certificates::status.ne("revoked"))
                .count()
                .get_result(conn)
                .await?;
            if users > 0 {
                return Err(StoreError::InUse(format!(
                    "{users} active certificate(s) use this DNS provider; delete them first"
                )));
            }
            let deleted = diesel::update(dns_providers::table)
                .filter(dns_providers::organization_id.eq(organization_id))
                .filter(dns_providers::id.eq(id))
                .filter(dns_providers::deleted_at.is_null())
                .set((
                    dns_providers::deleted_at.eq(Some(now_ms)),
                    dns_providers::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            write_effects!(conn, effects);
            Ok(())
        })
    }

    /// DNS-01 values of a certificate that were written (or were about to be)
    /// and not yet removed: what a killed worker left behind.
    pub async fn dns_records_to_clean(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> Result<Vec<AcmeChallenge>, StoreError> {
        with_conn!(self, |conn| {
            Ok(acme_challenges::table
                .filter(acme_challenges::organization_id.eq(organization_id))
                .filter(acme_challenges::certificate_id.eq(certificate_id))
                .filter(value_left())
                .order(acme_challenges::created_at.asc())
                .select(AcmeChallenge::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Notes that the DNS-01 value of these challenges is gone from DNS.
    pub async fn mark_dns_cleaned(
        &self,
        organization_id: &str,
        challenge_ids: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if challenge_ids.is_empty() {
            return Ok(());
        }
        with_conn!(self, |conn| {
            diesel::update(acme_challenges::table)
                .filter(acme_challenges::organization_id.eq(organization_id))
                .filter(acme_challenges::id.eq_any(challenge_ids))
                .set((
                    acme_challenges::dns_cleaned_at.eq(Some(now_ms)),
                    acme_challenges::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// Certificates nobody works on (deleted, or not pending, issuing or
    /// renewing; not leased) with DNS-01 values still in DNS: the clean-up
    /// after their last attempt failed, or a worker was killed before it. Only values last touched at or before
    /// `quiet_before_ms`, so the same certificate is not queued on every pass.
    pub async fn dns_leftovers_due(
        &self,
        now_ms: i64,
        quiet_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        with_conn!(self, |conn| {
            let candidates: Vec<String> = acme_challenges::table
                .filter(value_left())
                .filter(acme_challenges::updated_at.le(quiet_before_ms))
                .select(acme_challenges::certificate_id)
                .distinct()
                .limit(limit.saturating_mul(4))
                .load(conn)
                .await?;
            if candidates.is_empty() {
                return Ok(Vec::new());
            }
            Ok(certificates::table
                .filter(certificates::id.eq_any(&candidates))
                // A deleted certificate is never worked on again, whatever
                // status it was left in.
                .filter(
                    certificates::deleted_at
                        .is_not_null()
                        .or(certificates::status.ne_all(IN_FLIGHT)),
                )
                .filter(
                    certificates::lease_until
                        .is_null()
                        .or(certificates::lease_until.lt(now_ms)),
                )
                .limit(limit)
                .select((certificates::organization_id, certificates::id))
                .load(conn)
                .await?)
        })
    }

    /// Queues the clean-up of a certificate's left DNS-01 values: writes
    /// `effects` (its job) and marks the values touched now, so the next
    /// [`dns_leftovers_due`](Self::dns_leftovers_due) skips them for a while.
    pub async fn queue_dns_cleanup(
        &self,
        organization_id: &str,
        certificate_id: &str,
        now_ms: i64,
        effects: Effects,
    ) -> Result<(), StoreError> {
        transaction!(self, |conn| {
            diesel::update(acme_challenges::table)
                .filter(acme_challenges::organization_id.eq(organization_id))
                .filter(acme_challenges::certificate_id.eq(certificate_id))
                .filter(value_left())
                .set(acme_challenges::updated_at.eq(now_ms))
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(())
        })
    }

    /// A deleted certificate with DNS-01 values still in DNS, when no lease
    /// on it is current: its values are removed without taking the lease
    /// (nobody issues it any more; removing twice is harmless).
    pub async fn deleted_certificate_with_dns_leftovers(
        &self,
        organization_id: &str,
        certificate_id: &str,
        now_ms: i64,
    ) -> Result<Option<Certificate>, StoreError> {
        with_conn!(self, |conn| {
            Ok(certificates::table
                .find(certificate_id)
                .filter(certificates::organization_id.eq(organization_id))
                .filter(certificates::deleted_at.is_not_null())
                .filter(
                    certificates::lease_until
                        .is_null()
                        .or(certificates::lease_until.lt(now_ms)),
                )
                .filter(diesel::dsl::exists(
                    acme_challenges::table
                        .filter(acme_challenges::certificate_id.eq(certificate_id))
                        .filter(value_left()),
                ))
                .select(Certificate::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }
}
