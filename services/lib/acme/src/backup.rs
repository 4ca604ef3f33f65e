//! Copies of issued versions in the archive (a folder or S3): a pass writes
//! every version that has none yet, records where, and on failure records
//! why and when to try again. Issuance never waits for it: the pass runs
//! beside the issuer, one replica at a time (a named lease).

use std::sync::Arc;
use std::time::Duration;

use certfleet_archive::{Archive, CertificateMeta, OrganizationMeta, VersionCopy, VersionMeta};
use certfleet_core::Clock;
use certfleet_store::{BackupDue, Store, StoreError};

const LEASE: &str = "archive-copies";
const LEASE_MS: i64 = 60_000;
const BATCH: i64 = 100;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackupPass {
    pub copied: usize,
    pub failed: usize,
}

/// Writes the archive copies; see the module docs.
#[derive(Clone)]
pub struct BackupWorker {
    store: Store,
    archive: Arc<Archive>,
    clock: Arc<dyn Clock>,
    owner: String,
}

impl std::fmt::Debug for BackupWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupWorker")
            .field("archive", &self.archive.describe())
            .field("owner", &self.owner)
            .finish()
    }
}

/// Wait before the next attempt after `attempts` failures: 1, 5, 30 minutes,
/// then hourly.
pub fn retry_delay(attempts: i32) -> Duration {
    match attempts {
        ..=1 => Duration::from_secs(60),
        2 => Duration::from_secs(5 * 60),
        3 => Duration::from_secs(30 * 60),
        _ => Duration::from_secs(60 * 60),
    }
}

impl BackupWorker {
    pub fn new(store: Store, archive: Archive, clock: Arc<dyn Clock>, owner: String) -> Self {
        Self {
            store,
            archive: Arc::new(archive),
            clock,
            owner,
        }
    }

    /// Writes every due copy, in batches, while holding the lease; a replica
    /// that does not hold it does nothing.
    pub async fn pass(&self) -> Result<BackupPass, StoreError> {
        let mut pass = BackupPass::default();
        loop {
            let now = self.clock.now_ms();
            if !self
                .store
                .acquire_named_lease(LEASE, &self.owner, now, now + LEASE_MS)
                .await?
            {
                return Ok(pass);
            }
            let due = self.store.backups_due(now, BATCH).await?;
            let count = due.len();
            for item in due {
                if self.copy(item).await? {
                    pass.copied += 1;
                } else {
                    pass.failed += 1;
                }
            }
            if i64::try_from(count).unwrap_or(i64::MAX) < BATCH {
                break;
            }
        }
        self.store.release_named_lease(LEASE, &self.owner).await?;
        if pass != BackupPass::default() {
            tracing::info!(copied = pass.copied, failed = pass.failed, archive = %self.archive.describe(), "archive pass");
        }
        Ok(pass)
    }

    /// One copy; whether it was written. Its failure is recorded, not returned.
    async fn copy(&self, item: BackupDue) -> Result<bool, StoreError> {
        let version_id = item.version.id.clone();
        let revoked_at = item.version.revoked_at;
        let attempts = item.attempts;
        let copy = version_copy(item);
        let label = format!(
            "{}/{}/{}",
            copy.organization.id, copy.certificate.id, copy.version.serial
        );
        match self.archive.put(&copy).await {
            Ok(location) => {
                let now = self.clock.now_ms();
                self.store
                    .record_backup(&version_id, revoked_at, &copy.key_sealed, &location, now)
                    .await?;
                tracing::debug!(copy = %label, %location, "certificate copy written");
                Ok(true)
            }
            Err(error) => {
                let delay = retry_delay(attempts + 1);
                let next =
                    self.clock.now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                tracing::warn!(copy = %label, %error, attempts = attempts + 1, retry_in_s = delay.as_secs(), "the certificate copy could not be written; retried later");
                self.store
                    .record_backup_failure(&version_id, &error.to_string(), next)
                    .await?;
                Ok(false)
            }
        }
    }

    /// Runs a pass every `interval` until `stop` completes.
    pub async fn run_until(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        crate::every(interval, stop, "archive pass", || self.pass()).await;
    }
}

/// The archive's form of a version and what it belongs to.
pub fn version_copy(item: BackupDue) -> VersionCopy {
    let BackupDue {
        organization,
        certificate,
        version,
        ..
    } = item;
    let names = certificate.name_list();
    VersionCopy {
        organization: OrganizationMeta {
            id: organization.id,
            slug: organization.slug,
            name: organization.name,
            contact_email: organization.contact_email,
            created_at: organization.created_at,
        },
        certificate: CertificateMeta {
            id: certificate.id,
            primary_name: certificate.primary_name,
            names,
            wildcard: certificate.wildcard,
            key_type: certificate.key_type,
            challenge_type: certificate.challenge_type,
            dns_provider_id: certificate.dns_provider_id,
            directory_url: certificate.directory_url,
            profile: certificate.profile,
            auto_renew: certificate.auto_renew,
            renew_before_ms: certificate.renew_before_ms,
            created_at: certificate.created_at,
        },
        version: VersionMeta {
            id: version.id,
            version: version.version,
            serial: version.serial,
            fingerprint_sha256: version.fingerprint_sha256,
            not_before: version.not_before,
            not_after: version.not_after,
            key_type: version.key_type,
            order_url: version.order_url,
            created_at: version.created_at,
            revoked_at: version.revoked_at,
            revocation_reason: version.revocation_reason,
            issuer: version.issuer,
        },
        leaf_pem: version.leaf_pem,
        chain_pem: version.chain_pem,
        key_sealed: version.key_sealed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_hourly() {
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(2), Duration::from_secs(300));
        assert_eq!(retry_delay(3), Duration::from_secs(1800));
        assert_eq!(retry_delay(9), Duration::from_secs(3600));
    }
}
