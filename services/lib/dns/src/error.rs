//! What can go wrong writing or checking a record, in plain words.

/// A DNS provider or lookup failure.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The provider answered and refused the change (DNS REFUSED/NOTAUTH,
    /// HTTP 401/403, an API error). Final: retrying will not help.
    #[error("the {provider} DNS provider refused the change: {detail}")]
    Refused {
        provider: &'static str,
        detail: String,
    },
    /// The provider could not be reached or failed on its side (timeout,
    /// connection refused, SERVFAIL, HTTP 5xx). Retryable.
    #[error("the {provider} DNS provider is unavailable: {detail}")]
    Unavailable {
        provider: &'static str,
        detail: String,
    },
    /// The zone of a name could not be found.
    #[error("cannot find the DNS zone of {name}: {detail}")]
    NoZone { name: String, detail: String },
    /// Not every authoritative name server answered the value in time.
    #[error(
        "TXT {value:?} at {name} did not reach every authoritative name server within {waited_s} s; not yet at: {missing} (check that the provider writes to the zone these servers serve, set the provider's nameservers if they are not the ones to ask, or raise dns_propagation_timeout)"
    )]
    NotPropagated {
        name: String,
        value: String,
        waited_s: u64,
        missing: String,
    },
    /// A lookup through the resolver failed.
    #[error("DNS lookup of {name} ({record_type}) failed: {detail}")]
    Lookup {
        name: String,
        record_type: &'static str,
        detail: String,
    },
    /// The provider's configuration cannot work (bad stored settings).
    #[error("DNS provider configuration: {0}")]
    Config(String),
}

impl DnsError {
    /// Whether trying again soon may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DnsError::Unavailable { .. } | DnsError::Lookup { .. } | DnsError::NotPropagated { .. }
        )
    }
}
