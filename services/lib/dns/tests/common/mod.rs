//! What the provider tests share: a provider built from its settings the way
//! the API builds it, a record to write, and the checks the tests end with.
//! Every test file that declares `mod common;` uses all of it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use certfleet_dns::{
    DnsError, DnsPolicy, DnsProvider, ProviderConfig, ProviderKind, TxtRecord, providers,
};

pub const ZONE: &str = "example.test";
pub const NAME: &str = "_acme-challenge.example.test";

/// A provider of `kind` from `(key, value)` settings; of a key given twice
/// the later value counts.
pub fn build_provider(
    kind: ProviderKind,
    pairs: &[(&str, &str)],
) -> anyhow::Result<Arc<dyn DnsProvider>> {
    let values: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let policy = DnsPolicy::default();
    let config = ProviderConfig::parse(kind, values, &policy)?;
    Ok(providers::build(&config, &policy)?)
}

/// A value at `fqdn` with no zone given: the provider finds the zone.
pub fn record(fqdn: &str, value: &str) -> TxtRecord {
    TxtRecord {
        fqdn: fqdn.to_owned(),
        zone: None,
        value: value.to_owned(),
    }
}

/// A final refusal that says `words` and shows none of `secrets`.
pub fn assert_refused(error: &DnsError, words: &str, secrets: &[&str]) {
    assert!(
        matches!(error, DnsError::Refused { .. }),
        "not refused: {error:?}"
    );
    assert!(!error.is_transient(), "{error}");
    let text = error.to_string();
    assert!(text.contains(words), "{text} lacks {words:?}");
    for secret in secrets {
        assert!(!text.contains(secret), "{text} shows a secret");
    }
}

/// `left`: what the server still holds (or the receiver accepted).
pub fn assert_nothing_left<T: Debug>(left: &[T]) {
    assert!(left.is_empty(), "records left behind: {left:?}");
}
