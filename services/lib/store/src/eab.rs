//! External Account Binding credentials: one per organization per CA
//! directory, set by a platform admin, read by the issuer when it registers
//! the organization's ACME account there.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{AuditEntry, EabCredential};
use crate::schema::{audit_log, eab_credentials};
use crate::{Store, StoreError, new_id, transaction, with_conn};

impl Store {
    /// Sets the organization's binding at `directory_url`, replacing the one
    /// there (its id and creation time are kept), with its audit entry in the
    /// same transaction. `hmac_sealed` is the vault-sealed HMAC key.
    pub async fn set_eab_credential(
        &self,
        organization_id: &str,
        directory_url: &str,
        key_id: &str,
        hmac_sealed: &[u8],
        now_ms: i64,
        audit: AuditEntry,
    ) -> Result<EabCredential, StoreError> {
        let row = EabCredential {
            id: new_id(),
            organization_id: organization_id.to_owned(),
            directory_url: directory_url.to_owned(),
            key_id: key_id.to_owned(),
            hmac_sealed: hmac_sealed.to_vec(),
            created_at: now_ms,
            updated_at: now_ms,
        };
        transaction!(self, |conn| {
            diesel::insert_into(eab_credentials::table)
                .values(&row)
                .on_conflict((
                    eab_credentials::organization_id,
                    eab_credentials::directory_url,
                ))
                .do_update()
                .set((
                    eab_credentials::key_id.eq(&row.key_id),
                    eab_credentials::hmac_sealed.eq(&row.hmac_sealed),
                    eab_credentials::updated_at.eq(row.updated_at),
                ))
                .execute(conn)
                .await?;
            diesel::insert_into(audit_log::table)
                .values(&audit)
                .execute(conn)
                .await?;
            Ok(eab_credentials::table
                .filter(eab_credentials::organization_id.eq(organization_id))
                .filter(eab_credentials::directory_url.eq(directory_url))
                .select(EabCredential::as_select())
                .first(conn)
                .await?)
        })
    }

    /// The organization's binding at `directory_url`, if one is set.
    pub async fn find_eab_credential(
        &self,
        organization_id: &str,
        directory_url: &str,
    ) -> Result<Option<EabCredential>, StoreError> {
        with_conn!(self, |conn| {
            Ok(eab_credentials::table
                .filter(eab_credentials::organization_id.eq(organization_id))
                .filter(eab_credentials::directory_url.eq(directory_url))
                .select(EabCredential::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// Removes the organization's binding at `directory_url`; whether there
    /// was one (the audit entry is written only then). An account already
    /// registered with it stays.
    pub async fn delete_eab_credential(
        &self,
        organization_id: &str,
        directory_url: &str,
        audit: AuditEntry,
    ) -> Result<bool, StoreError> {
        transaction!(self, |conn| {
            let deleted = diesel::delete(
                eab_credentials::table
                    .filter(eab_credentials::organization_id.eq(organization_id))
                    .filter(eab_credentials::directory_url.eq(directory_url)),
            )
            .execute(conn)
            .await?;
            if deleted == 0 {
                return Ok(false);
            }
            diesel::insert_into(audit_log::table)
                .values(&audit)
                .execute(conn)
                .await?;
            Ok(true)
        })
    }
}
