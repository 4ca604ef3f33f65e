//! ACME accounts: one per organization per CA directory.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::AcmeAccount;
use crate::schema::acme_accounts;
use crate::{Store, StoreError, with_conn};

impl Store {
    pub async fn find_acme_account(
        &self,
        organization_id: &str,
        directory_url: &str,
    ) -> Result<Option<AcmeAccount>, StoreError> {
        with_conn!(self, |conn| {
            Ok(acme_accounts::table
                .filter(acme_accounts::organization_id.eq(organization_id))
                .filter(acme_accounts::directory_url.eq(directory_url))
                .select(AcmeAccount::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// Stores a newly registered account. When another worker stored one first,
    /// theirs wins and is returned, so an organization keeps a single account.
    pub async fn insert_acme_account(
        &self,
        account: AcmeAccount,
    ) -> Result<AcmeAccount, StoreError> {
        let organization_id = account.organization_id.clone();
        let directory_url = account.directory_url.clone();
        with_conn!(self, |conn| {
            diesel::insert_into(acme_accounts::table)
                .values(&account)
                .on_conflict((acme_accounts::organization_id, acme_accounts::directory_url))
                .do_nothing()
                .execute(conn)
                .await?;
            Ok::<(), StoreError>(())
        })?;
        self.find_acme_account(&organization_id, &directory_url)
            .await?
            .ok_or(StoreError::NotFound)
    }
}

impl Store {
    /// Forgets the organization's account at a CA (the CA no longer knows it);
    /// the next order registers a new one.
    pub async fn delete_acme_account(
        &self,
        organization_id: &str,
        directory_url: &str,
    ) -> Result<usize, StoreError> {
        with_conn!(self, |conn| {
            Ok(diesel::delete(
                acme_accounts::table
                    .filter(acme_accounts::organization_id.eq(organization_id))
                    .filter(acme_accounts::directory_url.eq(directory_url)),
            )
            .execute(conn)
            .await?)
        })
    }
}
