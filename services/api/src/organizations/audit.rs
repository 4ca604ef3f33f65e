//! ListAuditEntries: the audit log for platform admins, newest first, with
//! keyset paging on (created_at, id).

use std::collections::HashMap;

use certfleet_core::{InputError, validate_slug};
use certfleet_proto::v1 as pb;
use certfleet_store::{AuditEntry, AuditFilter, PageCursor};

use super::{OrganizationApi, check_text};
use crate::ApiError;
use crate::convert::{decode_page_token, encode_page_token, seconds};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;
const MAX_ACTION_PREFIX_CHARS: usize = 100;

impl OrganizationApi {
    pub(super) async fn audit_entries(
        &self,
        request: pb::ListAuditEntriesRequest,
    ) -> Result<pb::ListAuditEntriesResponse, ApiError> {
        let page_size = page_size(request.page_size)?;
        check_text(
            "action_prefix",
            &request.action_prefix,
            MAX_ACTION_PREFIX_CHARS,
            false,
        )?;
        let since_ms = time_bound("since", request.since)?;
        let until_ms = time_bound("until", request.until)?;
        if let (Some(since), Some(until)) = (since_ms, until_ms)
            && until <= since
        {
            return Err(InputError::new(
                "until",
                request.until.to_string(),
                format!("must be later than since ({})", request.since),
            )
            .into());
        }
        let organization_id = if request.organization.is_empty() {
            None
        } else {
            validate_slug("organization", &request.organization)?;
            Some(self.organization(&request.organization).await?.id)
        };
        let filter = AuditFilter {
            action_prefix: Some(request.action_prefix).filter(|prefix| !prefix.is_empty()),
            since_ms,
            until_ms,
            after: decode_page_token("page_token", &request.page_token)?,
            // One more row than asked tells whether another page follows.
            limit: i64::from(page_size) + 1,
        };
        let mut rows = self
            .state
            .store
            .list_audit_entries(organization_id.as_deref(), &filter)
            .await
            .map_err(|error| ApiError::store("list audit entries", error))?;
        let has_more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);

        let mut organization_ids: Vec<String> = rows
            .iter()
            .filter_map(|row| row.organization_id.clone())
            .collect();
        organization_ids.sort_unstable();
        organization_ids.dedup();
        let slugs: HashMap<String, String> = self
            .state
            .store
            .organizations_by_ids(&organization_ids)
            .await
            .map_err(|error| ApiError::store("load organizations of audit entries", error))?
            .into_iter()
            .map(|organization| (organization.id, organization.slug))
            .collect();

        let next_page_token = match rows.last() {
            Some(last) if has_more => encode_page_token(&PageCursor {
                created_at: last.created_at,
                id: last.id.clone(),
            }),
            _ => String::new(),
        };
        let entries = rows
            .into_iter()
            .map(|row| entry_to_proto(row, &slugs))
            .collect();
        Ok(pb::ListAuditEntriesResponse {
            entries,
            next_page_token,
        })
    }
}

fn entry_to_proto(row: AuditEntry, slugs: &HashMap<String, String>) -> pb::AuditEntry {
    let organization = row
        .organization_id
        .as_ref()
        .and_then(|id| slugs.get(id))
        .cloned()
        .unwrap_or_default();
    pb::AuditEntry {
        id: row.id,
        organization_id: row.organization_id.unwrap_or_default(),
        organization,
        actor: row.actor,
        action: row.action,
        target_id: row.target_id.unwrap_or_default(),
        details: row.details,
        remote_addr: row.remote_addr.unwrap_or_default(),
        created_at: seconds(row.created_at),
    }
}

/// The page size asked for: 1..=1000, 0 meaning the default of 100.
fn page_size(requested: u32) -> Result<u32, InputError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        size if size > MAX_PAGE_SIZE => Err(InputError::new(
            "page_size",
            size.to_string(),
            format!("must be at most {MAX_PAGE_SIZE}"),
        )),
        size => Ok(size),
    }
}

/// A Unix time in seconds as milliseconds; 0 means no bound.
fn time_bound(field: &str, seconds: i64) -> Result<Option<i64>, InputError> {
    match seconds {
        0 => Ok(None),
        seconds if seconds < 0 => Err(InputError::new(
            field,
            seconds.to_string(),
            "must be a Unix time in seconds",
        )),
        seconds => Ok(Some(seconds.saturating_mul(1000))),
    }
}

#[cfg(test)]
mod tests {
    use super::{page_size, time_bound};

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).ok(), Some(100));
        assert_eq!(page_size(1000).ok(), Some(1000));
        assert!(page_size(1001).is_err());
    }

    #[test]
    fn time_bounds() {
        assert_eq!(time_bound("since", 0).ok(), Some(None));
        assert_eq!(time_bound("since", 5).ok(), Some(Some(5000)));
        assert!(time_bound("since", -1).is_err());
    }
}
