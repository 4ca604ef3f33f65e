//! `DomainName`: a DNS name that passed every rule of DESIGN §7.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
const WILDCARD_PREFIX: &str = "*.";

/// Why a string is not an acceptable certificate name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is not a valid DNS name")]
    Invalid,
    #[error("has an empty label")]
    EmptyLabel,
    #[error("contains a character that is not allowed in DNS names (only a-z, 0-9 and '-')")]
    InvalidCharacter,
    #[error("has a label that starts or ends with a hyphen")]
    HyphenPosition,
    #[error("label longer than 63 characters")]
    LabelTooLong,
    #[error("is longer than 253 characters")]
    TooLong,
    #[error("wildcard is only allowed as the leftmost label")]
    WildcardPosition,
    #[error("is an IP address; IP certificates are not supported")]
    IpAddress,
    #[error("is a public suffix")]
    PublicSuffix,
    #[error("is not a fully qualified domain name (needs at least two labels)")]
    SingleLabel,
}

/// A lower-case, ASCII (punycode) DNS name, optionally with a leftmost `*.` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    /// Normalises and validates `input`; the only way to build a `DomainName`.
    pub fn parse(input: &str) -> Result<DomainName, NameError> {
        if input.is_empty() {
            return Err(NameError::Empty);
        }
        if input.chars().any(char::is_whitespace) {
            return Err(NameError::Invalid);
        }
        if input.starts_with('[') || input.ends_with(']') {
            return Err(NameError::IpAddress);
        }
        let without_dot = input.strip_suffix('.').unwrap_or(input);
        if without_dot.is_empty() {
            return Err(NameError::Empty);
        }
        if without_dot.parse::<IpAddr>().is_ok() {
            return Err(NameError::IpAddress);
        }

        let (wildcard, base_input) = match without_dot.strip_prefix(WILDCARD_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, without_dot),
        };
        if base_input.contains('*') {
            return Err(NameError::WildcardPosition);
        }
        if base_input.is_empty() {
            return Err(NameError::Invalid);
        }

        let base = idna::domain_to_ascii_cow(base_input.as_bytes(), idna::AsciiDenyList::EMPTY)
            .map_err(|_| NameError::Invalid)?
            .into_owned();
        if base.is_empty() {
            return Err(NameError::Invalid);
        }
        if base.parse::<IpAddr>().is_ok() || looks_like_ipv4(&base) {
            return Err(NameError::IpAddress);
        }

        let full_len = base.len() + if wildcard { WILDCARD_PREFIX.len() } else { 0 };
        if full_len > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        for label in base.split('.') {
            check_label(label)?;
        }

        let label_count = base.split('.').count();
        if !wildcard && label_count < 2 {
            return Err(NameError::SingleLabel);
        }
        if is_public_suffix(&base) {
            return Err(NameError::PublicSuffix);
        }

        let name = if wildcard {
            format!("{WILDCARD_PREFIX}{base}")
        } else {
            base
        };
        Ok(DomainName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with(WILDCARD_PREFIX)
    }

    /// The name without its `*.` label; equal to `as_str` for non-wildcards.
    pub fn base(&self) -> &str {
        self.0.strip_prefix(WILDCARD_PREFIX).unwrap_or(&self.0)
    }
}

fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(NameError::LabelTooLong);
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(NameError::InvalidCharacter);
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::HyphenPosition);
    }
    Ok(())
}

/// Names whose labels are all numeric (`10.1`, `1.2.3`) are read as IPv4 by
/// browsers and resolvers; no real top-level domain is numeric.
fn looks_like_ipv4(name: &str) -> bool {
    name.split('.')
        .next_back()
        .is_some_and(|last| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// The registered domain of `name` (a wildcard's base): the public suffix
/// plus one label, e.g. `example.co.uk` for `www.example.co.uk`; the name
/// itself when the list has nothing to say.
pub fn registered_domain(name: &str) -> String {
    let base = name.strip_prefix(WILDCARD_PREFIX).unwrap_or(name);
    match psl::domain(base.as_bytes()) {
        Some(domain) => String::from_utf8_lossy(domain.as_bytes()).into_owned(),
        None => base.to_owned(),
    }
}

fn is_public_suffix(name: &str) -> bool {
    match psl::suffix(name.as_bytes()) {
        Some(suffix) => suffix.as_bytes() == name.as_bytes(),
        None => false,
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for DomainName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DomainName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        DomainName::parse(&raw).map_err(|err| serde::de::Error::custom(format!("\"{raw}\" {err}")))
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        match DomainName::parse(input) {
            Ok(name) => name.as_str().to_owned(),
            Err(err) => panic!("{input:?} rejected: {err}"),
        }
    }

    fn err(input: &str) -> NameError {
        match DomainName::parse(input) {
            Ok(name) => panic!("{input:?} accepted as {name}"),
            Err(err) => err,
        }
    }

    #[test]
    fn lower_cases() {
        assert_eq!(ok("WWW.Example.COM"), "www.example.com");
    }

    #[test]
    fn removes_one_trailing_dot() {
        assert_eq!(ok("example.com."), "example.com");
        assert_eq!(err("example.com.."), NameError::EmptyLabel);
        assert_eq!(err("."), NameError::Empty);
    }

    #[test]
    fn converts_unicode_to_punycode() {
        assert_eq!(ok("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(ok("BÜCHER.example"), "xn--bcher-kva.example");
        assert_eq!(ok("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(ok("*.bücher.example"), "*.xn--bcher-kva.example");
    }

    #[test]
    fn label_of_63_is_fine_and_64_is_too_long() {
        let label63 = "a".repeat(63);
        assert_eq!(ok(&format!("{label63}.com")), format!("{label63}.com"));
        let label64 = "a".repeat(64);
        assert_eq!(err(&format!("{label64}.com")), NameError::LabelTooLong);
        assert_eq!(
            NameError::LabelTooLong.to_string(),
            "label longer than 63 characters"
        );
    }

    #[test]
    fn total_of_253_is_fine_and_254_is_too_long() {
        let label = "a".repeat(63);
        // 63*3 + 3 dots = 192; plus 57 + ".com" = 253
        let name253 = format!("{label}.{label}.{label}.{}.com", "b".repeat(57));
        assert_eq!(name253.len(), 253);
        assert_eq!(ok(&name253), name253);
        let name254 = format!("{label}.{label}.{label}.{}.com", "b".repeat(58));
        assert_eq!(name254.len(), 254);
        assert_eq!(err(&name254), NameError::TooLong);
        assert_eq!(
            NameError::TooLong.to_string(),
            "is longer than 253 characters"
        );
    }

    #[test]
    fn wildcard_only_as_leftmost_label() {
        let name = DomainName::parse("*.example.com").unwrap();
        assert!(name.is_wildcard());
        assert_eq!(name.base(), "example.com");
        assert_eq!(name.as_str(), "*.example.com");
        assert_eq!(err("a.*.example.com"), NameError::WildcardPosition);
        assert_eq!(err("*a.example.com"), NameError::WildcardPosition);
        assert_eq!(err("*.*.example.com"), NameError::WildcardPosition);
        assert!(DomainName::parse("*").is_err());
        assert!(DomainName::parse("*.").is_err());
        assert_eq!(err("*.com"), NameError::PublicSuffix);
        assert!(!DomainName::parse("example.com").unwrap().is_wildcard());
        assert_eq!(
            DomainName::parse("example.com").unwrap().base(),
            "example.com"
        );
    }

    #[test]
    fn rejects_ip_literals() {
        assert_eq!(err("192.0.2.1"), NameError::IpAddress);
        assert_eq!(err("192.0.2.1."), NameError::IpAddress);
        assert_eq!(err("::1"), NameError::IpAddress);
        assert_eq!(err("2001:db8::1"), NameError::IpAddress);
        assert_eq!(err("[::1]"), NameError::IpAddress);
        assert_eq!(err("10.1"), NameError::IpAddress);
        assert_eq!(
            NameError::IpAddress.to_string(),
            "is an IP address; IP certificates are not supported"
        );
    }

    #[test]
    fn rejects_public_suffixes() {
        assert_eq!(err("com"), NameError::SingleLabel);
        assert_eq!(err("co.uk"), NameError::PublicSuffix);
        assert_eq!(err("*.co.uk"), NameError::PublicSuffix);
        assert_eq!(err("github.io"), NameError::PublicSuffix);
        assert_eq!(err("*.github.io"), NameError::PublicSuffix);
        assert_eq!(ok("example.co.uk"), "example.co.uk");
        assert_eq!(ok("*.example.co.uk"), "*.example.co.uk");
        assert_eq!(ok("someone.github.io"), "someone.github.io");
        assert_eq!(NameError::PublicSuffix.to_string(), "is a public suffix");
    }

    #[test]
    fn rejects_single_label() {
        assert_eq!(err("localhost"), NameError::SingleLabel);
    }

    #[test]
    fn rejects_whitespace_anywhere() {
        assert_eq!(err("exa mple.com"), NameError::Invalid);
        assert_eq!(err(" example.com"), NameError::Invalid);
        assert_eq!(err("example.com\n"), NameError::Invalid);
        assert_eq!(err("example.com\t"), NameError::Invalid);
        assert_eq!(NameError::Invalid.to_string(), "is not a valid DNS name");
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(err(""), NameError::Empty);
        assert_eq!(NameError::Empty.to_string(), "is empty");
    }

    #[test]
    fn rejects_underscore_and_other_characters() {
        assert_eq!(err("exa_mple.com"), NameError::InvalidCharacter);
        assert_eq!(
            err("_acme-challenge.example.com"),
            NameError::InvalidCharacter
        );
        assert_eq!(err("exa/mple.com"), NameError::InvalidCharacter);
        assert!(DomainName::parse("exa@mple.com").is_err());
    }

    #[test]
    fn hyphen_rules() {
        assert_eq!(ok("my-site.example.com"), "my-site.example.com");
        assert_eq!(err("-site.example.com"), NameError::HyphenPosition);
        assert_eq!(err("site-.example.com"), NameError::HyphenPosition);
        assert_eq!(err("site.-example.com"), NameError::HyphenPosition);
    }

    #[test]
    fn rejects_empty_label() {
        assert_eq!(err("a..example.com"), NameError::EmptyLabel);
        assert_eq!(err(".example.com"), NameError::EmptyLabel);
    }

    #[test]
    fn serde_round_trip_validates() {
        let name = DomainName::parse("Example.COM").unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"example.com\"");
        let back: DomainName = serde_json::from_str(&json).unwrap();
        assert_eq!(back, name);
        let bad = serde_json::from_str::<DomainName>("\"exa mple.com\"");
        assert!(bad.is_err());
        let bad = serde_json::from_str::<DomainName>("\"co.uk\"");
        assert!(bad.is_err());
    }

    #[test]
    fn display_and_as_ref() {
        let name = DomainName::parse("example.com").unwrap();
        assert_eq!(name.to_string(), "example.com");
        let as_ref: &str = name.as_ref();
        assert_eq!(as_ref, "example.com");
    }
}
