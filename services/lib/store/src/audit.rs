//! Reading the audit log across organizations, for platform admins. Entries
//! are written with the change they record (see [`crate::Effects`]).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::certificates::{PageCursor, escape_like};
use crate::models::{AuditEntry, Organization};
use crate::schema::{audit_log, organizations};
use crate::{Store, StoreError, with_conn};

/// Filters of [`Store::list_audit_entries`]; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries whose action starts with this text (matched literally).
    pub action_prefix: Option<String>,
    /// Only entries written at or after this time (Unix milliseconds).
    pub since_ms: Option<i64>,
    /// Only entries written before this time (Unix milliseconds).
    pub until_ms: Option<i64>,
    /// The last entry of the previous page; this page continues after it.
    pub after: Option<PageCursor>,
    pub limit: i64,
}

impl Store {
    /// One page of the audit log, newest first: the entries of one
    /// organization, or with `None` those of all organizations and the
    /// platform's own entries (a platform-admin view, never an organization's).
    pub async fn list_audit_entries(
        &self,
        organization_id: Option<&str>,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = audit_log::table
                .select(AuditEntry::as_select())
                .order((audit_log::created_at.desc(), audit_log::id.desc()))
                .limit(filter.limit)
                .into_boxed();
            if let Some(organization_id) = organization_id {
                query = query.filter(audit_log::organization_id.eq(organization_id.to_owned()));
            }
            if let Some(prefix) = &filter.action_prefix {
                let pattern = format!("{}%", escape_like(prefix));
                query = query.filter(audit_log::action.like(pattern).escape('\\'));
            }
            if let Some(since) = filter.since_ms {
                query = query.filter(audit_log::created_at.ge(since));
            }
            if let Some(until) = filter.until_ms {
                query = query.filter(audit_log::created_at.lt(until));
            }
            if let Some(cursor) = &filter.after {
                query = query.filter(
                    audit_log::created_at
                        .lt(cursor.created_at)
                        .or(audit_log::created_at
                            .eq(cursor.created_at)
                            .and(audit_log::id.lt(cursor.id.clone()))),
                );
            }
            Ok(query.load(conn).await?)
        })
    }

    /// Organizations by id, deleted ones included (the audit log outlives them).
    pub async fn organizations_by_ids(
        &self,
        organization_ids: &[String],
    ) -> Result<Vec<Organization>, StoreError> {
        if organization_ids.is_empty() {
            return Ok(Vec::new());
        }
        with_conn!(self, |conn| {
            Ok(organizations::table
                .filter(organizations::id.eq_any(organization_ids))
                .select(Organization::as_select())
                .load(conn)
                .await?)
        })
    }
}
