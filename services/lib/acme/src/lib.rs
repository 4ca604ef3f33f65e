//! The issuance engine: ACME accounts, orders, HTTP-01, keys and certificates
//! over instant-acme; the issuer that runs jobs under a lease; the scheduler
//! that finds renewals and lost work.

mod accounts;
mod backup;
mod certs;
mod config;
mod error;
mod issuer;
mod orders_list;
mod scheduler;
mod selfcheck;

pub use accounts::AccountCache;
pub use backup::{BackupPass, BackupWorker, retry_delay, version_copy};
pub use certs::{ParsedCertificate, generate_key, parse_chain};
pub use config::{
    AcmeConfig, Budget, CaSettings, DEFAULT_ISSUER, RateLimits, SelfCheckConfig,
    WELL_KNOWN_ISSUERS, issuer_name_for,
};
pub use error::AcmeError;
pub use issuer::{Issuer, IssuerPool, span};
pub use scheduler::{Scheduler, SchedulerConfig, queue_renewal};

/// The `failed` event of `certificate` as an outbox row: `error` in plain
/// words, `reason` as docs/EVENTS.md lists them.
pub(crate) fn failed_event(
    certificate: &certfleet_store::Certificate,
    error: &str,
    reason: &str,
    now_ms: i64,
) -> certfleet_store::OutboxMessage {
    certfleet_bus::EventBuilder::new(
        certfleet_proto::v1::EventType::Failed,
        &certificate.organization_id,
        &certificate.id,
        certificate.name_list(),
        now_ms,
    )
    .error(error)
    .reason(reason)
    .to_outbox()
}

/// Runs `pass` every `interval` (a late tick waits, none is made up) until
/// `stop` completes; a failed pass is logged as `what` and tried again at the
/// next tick.
pub(crate) async fn every<T, F, Fut>(
    interval: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
    what: &'static str,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, certfleet_store::StoreError>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut stop => break,
        }
        if let Err(error) = pass().await {
            tracing::warn!(%error, "{what} failed; tried again at the next one");
        }
    }
}

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Call once at
/// start-up, before any TLS connection; later calls do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
