//! Calls that read certificates: get, list, the key bundle and the event stream.

use std::collections::HashMap;

use certfleet_core::InputError;
use certfleet_proto::v1 as pb;
use certfleet_store::{AuditEntry, Certificate, CertificateVersion, ListFilter, PageCursor};
use certfleet_vault::EncryptionContext;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

use super::{Caller, CertificateApi, EventStream, not_found};
use crate::ApiError;
use crate::convert::{
    certificate_to_proto, decode_page_token, encode_page_token, seconds, status_from_proto,
};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 500;

impl CertificateApi {
    /// The organization's certificate, or NOT_FOUND.
    pub(super) async fn find(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> Result<Certificate, ApiError> {
        self.state
            .store
            .get_certificate(organization_id, certificate_id)
            .await
            .map_err(|error| ApiError::store("get certificate", error))?
            .ok_or_else(|| ApiError::NotFound(not_found(certificate_id)))
    }

    /// The current version of a certificate, if it has one.
    pub(super) async fn current_version(
        &self,
        organization_id: &str,
        certificate: &Certificate,
    ) -> Result<Option<CertificateVersion>, ApiError> {
        let Some(version_id) = certificate.current_version_id.clone() else {
            return Ok(None);
        };
        let versions = self
            .state
            .store
            .versions_by_ids(organization_id, &[version_id])
            .await
            .map_err(|error| ApiError::store("load current version", error))?;
        Ok(versions.into_iter().next())
    }

    pub(super) async fn get(
        &self,
        caller: &Caller,
        certificate_id: &str,
    ) -> Result<pb::Certificate, ApiError> {
        let certificate = self.find(&caller.organization_id, certificate_id).await?;
        let current = self
            .current_version(&caller.organization_id, &certificate)
            .await?;
        let installations = self
            .state
            .store
            .installations(&caller.organization_id, &certificate.id)
            .await
            .map_err(|error| ApiError::store("list installations", error))?;
        let mut shown = certificate_to_proto(&certificate, current.as_ref());
        shown.installations = installations
            .iter()
            .map(super::agents::installation_to_proto)
            .collect();
        Ok(shown)
    }

    pub(super) async fn list(
        &self,
        caller: &Caller,
        request: &pb::ListCertificatesRequest,
    ) -> Result<pb::ListCertificatesResponse, ApiError> {
        let page_size = page_size(request.page_size)?;
        let expiring_before_ms = match request.expiring_before {
            0 => None,
            seconds if seconds < 0 => {
                return Err(InputError::new(
                    "expiring_before",
                    seconds.to_string(),
                    "must be a Unix time in seconds",
                )
                .into());
            }
            seconds => Some(seconds.saturating_mul(1000)),
        };
        let filter = ListFilter {
            status: status_from_proto("status", request.status)?.map(|s| s.as_str().to_owned()),
            name_contains: Some(request.name.trim())
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
            expiring_before_ms,
            after: decode_page_token("page_token", &request.page_token)?,
            // One more row than asked tells whether another page follows.
            limit: i64::from(page_size) + 1,
        };
        let organization_id = caller.organization_id.as_str();
        let mut rows = self
            .state
            .store
            .list_certificates(organization_id, &filter)
            .await
            .map_err(|error| ApiError::store("list certificates", error))?;
        let has_more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);

        let version_ids: Vec<String> = rows
            .iter()
            .filter_map(|row| row.current_version_id.clone())
            .collect();
        let versions: HashMap<String, CertificateVersion> = self
            .state
            .store
            .versions_by_ids(organization_id, &version_ids)
            .await
            .map_err(|error| ApiError::store("load current versions", error))?
            .into_iter()
            .map(|version| (version.id.clone(), version))
            .collect();

        let next_page_token = match rows.last() {
            Some(last) if has_more => encode_page_token(&PageCursor {
                created_at: last.created_at,
                id: last.id.clone(),
            }),
            _ => String::new(),
        };
        let certificates = rows
            .iter()
            .map(|row| {
                let current = row
                    .current_version_id
                    .as_ref()
                    .and_then(|id| versions.get(id));
                certificate_to_proto(row, current)
            })
            .collect();
        Ok(pb::ListCertificatesResponse {
            certificates,
            next_page_token,
        })
    }

    pub(super) async fn bundle(
        &self,
        caller: &Caller,
        certificate_id: &str,
    ) -> Result<pb::CertificateBundle, ApiError> {
        let organization_id = caller.organization_id.as_str();
        let certificate = self.find(organization_id, certificate_id).await?;
        let Some(version) = self.current_version(organization_id, &certificate).await? else {
            return Err(ApiError::FailedPrecondition(
                "certificate has not been issued yet".to_owned(),
            ));
        };
        let context = EncryptionContext::private_key_version(
            organization_id,
            certificate_id,
            version.version,
        );
        let plaintext = self
            .state
            .vault
            .open(&context, &version.key_sealed)
            .await
            .map_err(|error| ApiError::vault("open private key", error))?;
        let private_key_pem = std::str::from_utf8(&plaintext)
            .map_err(|_| {
                ApiError::Internal(format!(
                    "private key of certificate {certificate_id} version {} is not utf-8",
                    version.id
                ))
            })?
            .to_owned();
        drop(plaintext);

        let mut audit = AuditEntry::new(
            Some(organization_id),
            &caller.token_id,
            "certificate.bundle_read",
            Some(certificate_id),
            self.state.clock.now_ms(),
        )
        .from_remote(caller.remote_addr.as_deref());
        audit.details = format!("version {} serial {}", version.version, version.serial);
        // No key leaves without its audit entry.
        self.state
            .store
            .append_audit(audit)
            .await
            .map_err(|error| ApiError::store("audit bundle read", error))?;
        tracing::info!(
            organization_id,
            certificate_id,
            token_id = %caller.token_id,
            version = version.version,
            "private key bundle read"
        );

        let mut fullchain_pem = version.leaf_pem.clone();
        if !fullchain_pem.is_empty() && !fullchain_pem.ends_with('\n') {
            fullchain_pem.push('\n');
        }
        fullchain_pem.push_str(&version.chain_pem);
        Ok(pb::CertificateBundle {
            certificate_id: certificate.id,
            version: u32::try_from(version.version).unwrap_or(0),
            serial: version.serial,
            certificate_pem: version.leaf_pem,
            chain_pem: version.chain_pem,
            fullchain_pem,
            private_key_pem,
            not_after: seconds(version.not_after),
        })
    }

    /// Events of the caller's organization until the client goes away or the
    /// server shuts down.
    pub(super) fn watch(&self, caller: Caller) -> EventStream {
        let organization_id = caller.organization_id;
        let events = BroadcastStream::new(self.state.events.subscribe()).filter_map(move |item| {
            match item {
                Ok(event) if event.organization_id == organization_id => Some(Ok(event)),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    tracing::warn!(%organization_id, missed, "watcher fell behind; events skipped");
                    None
                }
            }
        });
        // The shutdown signal becomes a `None` that ends the stream.
        let stopped = WatchStream::new(self.shutdown.clone())
            .filter(|stopping| *stopping)
            .map(|_| None);
        Box::pin(
            events
                .map(Some)
                .merge(stopped)
                .take_while(Option::is_some)
                .filter_map(|item| item),
        )
    }
}

/// The page size asked for: 1..=500, 0 meaning the default of 100.
fn page_size(requested: u32) -> Result<u32, InputError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        size if size > MAX_PAGE_SIZE => Err(InputError::new(
            "page_size",
            size.to_string(),
            "must be at most 500",
        )),
        size => Ok(size),
    }
}

#[cfg(test)]
mod tests {
    use super::page_size;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).ok(), Some(100));
        assert_eq!(page_size(1).ok(), Some(1));
        assert_eq!(page_size(500).ok(), Some(500));
        assert!(page_size(501).is_err());
    }
}
