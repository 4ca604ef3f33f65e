//! Organizations (tenants) and API tokens.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{ApiToken, AuditEntry, Organization};
use crate::schema::{api_tokens, audit_log, organizations};
use crate::{Store, StoreError, transaction, with_conn};

/// Whose API tokens: an organization's, or the platform tokens (no
/// organization) of one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOwner<'a> {
    Organization(&'a str),
    Platform { role: &'a str },
}

/// `$query` (a boxed `api_tokens` query) narrowed to the tokens of `$owner`.
macro_rules! owned_by {
    ($query:expr, $owner:expr) => {
        match $owner {
            TokenOwner::Organization(organization_id) => {
                $query.filter(api_tokens::organization_id.eq(organization_id))
            }
            TokenOwner::Platform { role } => $query
                .filter(api_tokens::organization_id.is_null())
                .filter(api_tokens::role.eq(role)),
        }
    };
}

impl Store {
    /// Creates an organization; a taken slug is [`StoreError::Conflict`].
    pub async fn create_organization(
        &self,
        organization: Organization,
        audit: AuditEntry,
    ) -> Result<Organization, StoreError> {
        let slug = organization.slug.clone();
        let result = transaction!(self, |conn| {
            diesel::insert_into(organizations::table)
                .values(&organization)
                .execute(conn)
                .await?;
            diesel::insert_into(audit_log::table)
                .values(&audit)
                .execute(conn)
                .await?;
            Ok(organization)
        });
        match result {
            Err(StoreError::Query(error)) if StoreError::is_unique_violation(&error) => Err(
                StoreError::Conflict(format!("organization with slug {slug:?}")),
            ),
            other => other,
        }
    }

    pub async fn find_organization_by_slug(
        &self,
        slug: &str,
    ) -> Result<Option<Organization>, StoreError> {
        with_conn!(self, |conn| {
            Ok(organizations::table
                .filter(organizations::slug.eq(slug))
                .filter(organizations::deleted_at.is_null())
                .select(Organization::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// Whether any organization exists (the database holds tenant data).
    pub async fn has_organizations(&self) -> Result<bool, StoreError> {
        with_conn!(self, |conn| {
            let first: Option<String> = organizations::table
                .select(organizations::id)
                .first(conn)
                .await
                .optional()?;
            Ok(first.is_some())
        })
    }

    /// The live organizations, by slug (the tenant list of the platform, for
    /// platform tokens).
    pub async fn list_organizations(&self) -> Result<Vec<Organization>, StoreError> {
        with_conn!(self, |conn| {
            Ok(organizations::table
                .filter(organizations::deleted_at.is_null())
                .order(organizations::slug.asc())
                .select(Organization::as_select())
                .load(conn)
                .await?)
        })
    }

    pub async fn find_organization(
        &self,
        organization_id: &str,
    ) -> Result<Option<Organization>, StoreError> {
        with_conn!(self, |conn| {
            Ok(organizations::table
                .find(organization_id)
                .filter(organizations::deleted_at.is_null())
                .select(Organization::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    pub async fn insert_api_token(
        &self,
        token: ApiToken,
        audit: AuditEntry,
    ) -> Result<ApiToken, StoreError> {
        transaction!(self, |conn| {
            diesel::insert_into(api_tokens::table)
                .values(&token)
                .execute(conn)
                .await?;
            diesel::insert_into(audit_log::table)
                .values(&audit)
                .execute(conn)
                .await?;
            Ok(token)
        })
    }

    /// The token with this id, unless revoked or of a deleted organization
    /// (one query: this runs on every call). The caller compares the secret hash.
    pub async fn find_api_token(&self, token_id: &str) -> Result<Option<ApiToken>, StoreError> {
        with_conn!(self, |conn| {
            let live_organizations = organizations::table
                .filter(organizations::deleted_at.is_null())
                .select(organizations::id.nullable());
            Ok(api_tokens::table
                .find(token_id)
                .filter(api_tokens::revoked_at.is_null())
                .filter(
                    api_tokens::organization_id
                        .is_null()
                        .or(api_tokens::organization_id.eq_any(live_organizations)),
                )
                .select(ApiToken::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// The tokens of `owner`, revoked and expired ones included, oldest first.
    pub async fn list_api_tokens(
        &self,
        owner: TokenOwner<'_>,
    ) -> Result<Vec<ApiToken>, StoreError> {
        with_conn!(self, |conn| {
            Ok(owned_by!(api_tokens::table.into_boxed(), owner)
                .order((api_tokens::created_at.asc(), api_tokens::id.asc()))
                .select(ApiToken::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Revokes a token of `owner` and audits it; `None` when `owner` has no
    /// such token. A token revoked already is returned unchanged (no second
    /// audit entry).
    pub async fn revoke_api_token(
        &self,
        owner: TokenOwner<'_>,
        token_id: &str,
        now_ms: i64,
        audit: AuditEntry,
    ) -> Result<Option<ApiToken>, StoreError> {
        transaction!(self, |conn| {
            let token = owned_by!(api_tokens::table.into_boxed(), owner)
                .filter(api_tokens::id.eq(token_id))
                .select(ApiToken::as_select())
                .first(conn)
                .await
                .optional()?;
            let Some(mut token) = token else {
                return Ok(None);
            };
            if token.revoked_at.is_some() {
                return Ok(Some(token));
            }
            // Read in this transaction: the token is the owner's.
            diesel::update(api_tokens::table.find(token_id))
                .filter(api_tokens::revoked_at.is_null())
                .set(api_tokens::revoked_at.eq(now_ms))
                .execute(conn)
                .await?;
            diesel::insert_into(audit_log::table)
                .values(&audit)
                .execute(conn)
                .await?;
            token.revoked_at = Some(now_ms);
            Ok(Some(token))
        })
    }

    /// Records use of a token, at most once a minute per token.
    pub async fn touch_api_token(&self, token_id: &str, now_ms: i64) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::update(api_tokens::table.find(token_id))
                .filter(
                    api_tokens::last_used_at
                        .is_null()
                        .or(api_tokens::last_used_at.lt(now_ms - 60_000)),
                )
                .set(api_tokens::last_used_at.eq(now_ms))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// Appends to the audit log outside any other change (e.g. a key was read).
    pub async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::insert_into(audit_log::table)
                .values(&entry)
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// The newest audit entries of an organization, newest first.
    pub async fn audit_entries(
        &self,
        organization_id: &str,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        with_conn!(self, |conn| {
            Ok(audit_log::table
                .filter(audit_log::organization_id.eq(organization_id))
                .order((audit_log::created_at.desc(), audit_log::id.desc()))
                .limit(limit)
                .select(AuditEntry::as_select())
                .load(conn)
                .await?)
        })
    }
}
