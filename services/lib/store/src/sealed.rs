//! Every sealed blob in the database, read page by page and swapped one row at
//! a time: what `certfleet vault rewrap` walks to move data keys to a new
//! wrapping key while the services keep running.

use diesel::prelude::*;
use diesel::sql_types::{Integer, Nullable};
use diesel_async::RunQueryDsl;

use crate::schema::{
    acme_accounts, certificate_versions, certificates, dns_providers, eab_credentials,
    notification_channels,
};
use crate::{Store, StoreError, with_conn};

/// The columns that hold sealed blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedColumn {
    /// `certificate_versions.key_sealed`: the private key of an issued version.
    VersionKey,
    /// `certificates.pending_key_sealed`: the key of an order not yet finished.
    PendingKey,
    /// `acme_accounts.credentials_sealed`: an organization's ACME account key.
    AcmeAccount,
    /// `dns_providers.secrets_sealed`: a DNS provider's secret settings.
    DnsProviderSecrets,
    /// `eab_credentials.hmac_sealed`: an External Account Binding's HMAC key.
    EabHmac,
    /// `notification_channels.secrets_sealed`: a channel's secret settings.
    NotificationChannelSecrets,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 6] = [
        SealedColumn::VersionKey,
        SealedColumn::PendingKey,
        SealedColumn::AcmeAccount,
        SealedColumn::DnsProviderSecrets,
        SealedColumn::EabHmac,
        SealedColumn::NotificationChannelSecrets,
    ];

    /// `table.column`, for progress and error messages.
    pub fn name(self) -> &'static str {
        match self {
            SealedColumn::VersionKey => "certificate_versions.key_sealed",
            SealedColumn::PendingKey => "certificates.pending_key_sealed",
            SealedColumn::AcmeAccount => "acme_accounts.credentials_sealed",
            SealedColumn::DnsProviderSecrets => "dns_providers.secrets_sealed",
            SealedColumn::EabHmac => "eab_credentials.hmac_sealed",
            SealedColumn::NotificationChannelSecrets => "notification_channels.secrets_sealed",
        }
    }
}

/// A row as selected: id, organization, resource, version, blob.
type SealedTuple = (String, String, String, Option<i32>, Vec<u8>);

/// One sealed blob and what its encryption context is made of.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub column: SealedColumn,
    /// The row's primary key.
    pub id: String,
    pub organization_id: String,
    /// The context's resource: the certificate id (keys), the directory URL
    /// (ACME accounts, EAB keys) or the provider or channel id (DNS providers,
    /// notification channels).
    pub resource_id: String,
    /// A version key's version number (its context names it).
    pub version: Option<i32>,
    pub blob: Vec<u8>,
}

impl Store {
    /// Up to `limit` non-null blobs of `column` whose row id sorts after
    /// `after`, in id order (a stable walk that new rows cannot disturb).
    pub async fn sealed_page(
        &self,
        column: SealedColumn,
        after: &str,
        limit: i64,
    ) -> Result<Vec<SealedRow>, StoreError> {
        // Only version keys have a version; the other columns select NULL.
        let no_version = || diesel::dsl::sql::<Nullable<Integer>>("NULL");
        let rows: Vec<SealedTuple> = with_conn!(self, |conn| {
            match column {
                SealedColumn::VersionKey => {
                    certificate_versions::table
                        .filter(certificate_versions::id.gt(after))
                        .order(certificate_versions::id)
                        .limit(limit)
                        .select((
                            certificate_versions::id,
                            certificate_versions::organization_id,
                            certificate_versions::certificate_id,
                            certificate_versions::version.nullable(),
                            certificate_versions::key_sealed,
                        ))
                        .load(conn)
                        .await?
                }
                SealedColumn::PendingKey => {
                    certificates::table
                        .filter(certificates::id.gt(after))
                        .filter(certificates::pending_key_sealed.is_not_null())
                        .order(certificates::id)
                        .limit(limit)
                        .select((
                            certificates::id,
                            certificates::organization_id,
                            certificates::id,
                            no_version(),
                            certificates::pending_key_sealed.assume_not_null(),
                        ))
                        .load(conn)
                        .await?
                }
                SealedColumn::AcmeAccount => {
                    acme_accounts::table
                        .filter(acme_accounts::id.gt(after))
                        .order(acme_accounts::id)
                        .limit(limit)
                        .select((
                            acme_accounts::id,
                            acme_accounts::organization_id,
                            acme_accounts::directory_url,
                            no_version(),
                            acme_accounts::credentials_sealed,
                        ))
                        .load(conn)
                        .await?
                }
                SealedColumn::DnsProviderSecrets => {
                    dns_providers::table
                        .filter(dns_providers::id.gt(after))
                        .filter(dns_providers::secrets_sealed.is_not_null())
                        .order(dns_providers::id)
                        .limit(limit)
                        .select((
                            dns_providers::id,
                            dns_providers::organization_id,
                            dns_providers::id,
                            no_version(),
                            dns_providers::secrets_sealed.assume_not_null(),
                        ))
                        .load(conn)
                        .await?
                }
                SealedColumn::EabHmac => {
                    eab_credentials::table
                        .filter(eab_credentials::id.gt(after))
                        .order(eab_credentials::id)
                        .limit(limit)
                        .select((
                            eab_credentials::id,
                            eab_credentials::organization_id,
                            eab_credentials::directory_url,
                            no_version(),
                            eab_credentials::hmac_sealed,
                        ))
                        .load(conn)
                        .await?
                }
                SealedColumn::NotificationChannelSecrets => {
                    notification_channels::table
                        .filter(notification_channels::id.gt(after))
                        .filter(notification_channels::secrets_sealed.is_not_null())
                        .order(notification_channels::id)
                        .limit(limit)
                        .select((
                            notification_channels::id,
                            notification_channels::organization_id,
                            notification_channels::id,
                            no_version(),
                            notification_channels::secrets_sealed.assume_not_null(),
                        ))
                        .load(conn)
                        .await?
                }
            }
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, organization_id, resource_id, version, blob)| SealedRow {
                    column,
                    id,
                    organization_id,
                    resource_id,
                    version,
                    blob,
                },
            )
            .collect())
    }

    /// Replaces the row's blob with `new` only while it still holds `old`, so
    /// a blob a service wrote meanwhile is never overwritten; whether it was
    /// replaced.
    pub async fn replace_sealed(
        &self,
        column: SealedColumn,
        id: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let changed = with_conn!(self, |conn| {
            match column {
                SealedColumn::VersionKey => {
                    diesel::update(
                        certificate_versions::table
                            .filter(certificate_versions::id.eq(id))
                            .filter(certificate_versions::key_sealed.eq(old)),
                    )
                    .set((
                        certificate_versions::key_sealed.eq(new),
                        // The archive's copy holds the old envelope: written again.
                        certificate_versions::backup_location.eq(None::<String>),
                        certificate_versions::backup_next_at.eq(None::<i64>),
                        certificate_versions::backup_attempts.eq(0),
                    ))
                    .execute(conn)
                    .await?
                }
                SealedColumn::PendingKey => {
                    diesel::update(
                        certificates::table
                            .filter(certificates::id.eq(id))
                            .filter(certificates::pending_key_sealed.eq(old)),
                    )
                    .set(certificates::pending_key_sealed.eq(new))
                    .execute(conn)
                    .await?
                }
                SealedColumn::AcmeAccount => {
                    diesel::update(
                        acme_accounts::table
                            .filter(acme_accounts::id.eq(id))
                            .filter(acme_accounts::credentials_sealed.eq(old)),
                    )
                    .set(acme_accounts::credentials_sealed.eq(new))
                    .execute(conn)
                    .await?
                }
                SealedColumn::DnsProviderSecrets => {
                    diesel::update(
                        dns_providers::table
                            .filter(dns_providers::id.eq(id))
                            .filter(dns_providers::secrets_sealed.eq(old)),
                    )
                    .set(dns_providers::secrets_sealed.eq(new))
                    .execute(conn)
                    .await?
                }
                SealedColumn::EabHmac => {
                    diesel::update(
                        eab_credentials::table
                            .filter(eab_credentials::id.eq(id))
                            .filter(eab_credentials::hmac_sealed.eq(old)),
                    )
                    .set(eab_credentials::hmac_sealed.eq(new))
                    .execute(conn)
                    .await?
                }
                SealedColumn::NotificationChannelSecrets => {
                    diesel::update(
                        notification_channels::table
                            .filter(notification_channels::id.eq(id))
                            .filter(notification_channels::secrets_sealed.eq(old)),
                    )
                    .set(notification_channels::secrets_sealed.eq(new))
                    .execute(conn)
                    .await?
                }
            }
        });
        Ok(changed == 1)
    }
}
