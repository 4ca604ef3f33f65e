//! DNS-01: the providers that write `_acme-challenge` TXT records, zone
//! discovery, CNAME delegation and the propagation check against every
//! authoritative name server.
//!
//! A provider only adds or removes one TXT value at one name; other values at
//! the same name stay (an apex and its wildcard in one order need two). Both
//! calls are idempotent: presenting a value twice leaves one, cleaning up a
//! value that is not there succeeds.

mod error;
pub mod http;
pub mod lookup;
mod settings;
mod solver;

pub mod providers;

pub use error::DnsError;
pub use lookup::{DnsLookup, LookupConfig};
pub use settings::{DnsPolicy, ProviderConfig, ProviderKind, Secrecy, SettingError, Settings};
pub use solver::{DnsSolver, ProbeReport};

/// One TXT value at one name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxtRecord {
    /// Fully qualified name without the trailing dot, lower case
    /// (`_acme-challenge.example.com`, or where its CNAME points).
    pub fqdn: String,
    /// The zone that holds `fqdn` (no trailing dot), when known from the SOA
    /// walk or the provider's `zone` setting. Providers with an API that lists
    /// zones find it themselves when it is `None`.
    pub zone: Option<String>,
    /// The TXT value (for ACME: the base64url SHA-256 of the key authorization).
    pub value: String,
}

/// Writes and removes TXT values.
#[async_trait::async_trait]
pub trait DnsProvider: Send + Sync + std::fmt::Debug {
    /// The provider kind (`rfc2136`, `pdns`, …), for logs and errors.
    fn kind(&self) -> ProviderKind;

    /// Adds `record.value` to the TXT values at `record.fqdn`. Idempotent.
    /// Returns when the server that holds the zone data has it (where the
    /// provider can tell, e.g. Route53's change status is `INSYNC`).
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError>;

    /// Removes `record.value` from the TXT values at `record.fqdn`, leaving any
    /// other value. Idempotent: a value (or name) that is not there is success.
    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError>;
}

/// The operator's DNS-01 settings, shared by the API (provider checks and
/// tests) and the issuer.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    pub policy: DnsPolicy,
    pub lookup: LookupConfig,
}

impl Default for DnsSettings {
    /// The system resolver, 120 s / 2 s propagation, no exec programs.
    fn default() -> Self {
        DnsSettings {
            policy: DnsPolicy::default(),
            lookup: LookupConfig::new(lookup::system_resolver()),
        }
    }
}
