//! Request-level validation rules that combine several fields or check plain strings.

use crate::names::{IdentifierSet, InputError};
use crate::types::ChallengeType;

const MAX_EMAIL_LEN: usize = 254;
const MAX_SLUG_LEN: usize = 63;

/// Checks rules across names and challenge type: wildcards need DNS-01.
pub fn validate_request(names: &IdentifierSet, challenge: ChallengeType) -> Result<(), InputError> {
    if challenge == ChallengeType::Dns01 {
        return Ok(());
    }
    match names.names().iter().position(|name| name.is_wildcard()) {
        Some(index) => Err(InputError::new(
            format!("names[{index}]"),
            names.names()[index].as_str(),
            "is a wildcard; wildcard certificates need the DNS-01 challenge (challenge_type = dns-01)",
        )),
        None => Ok(()),
    }
}

/// A deliberately simple e-mail check; the CA does the authoritative one.
pub fn validate_email(field: &str, email: &str) -> Result<(), InputError> {
    let fail = |reason: &str| Err(InputError::new(field, email, reason));
    if email.is_empty() {
        return fail("is empty");
    }
    if email.len() > MAX_EMAIL_LEN {
        return fail("is longer than 254 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return fail("is not a valid e-mail address");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return fail("is not a valid e-mail address");
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return fail("is not a valid e-mail address");
    }
    Ok(())
}

const MAX_DIRECTORY_URL_CHARS: usize = 2048;

/// An ACME directory: an `https://host…` URL of at most 2,048 characters,
/// without spaces, kept exactly as given (it is the CA's identity in accounts
/// and External Account Bindings).
pub fn validate_directory_url(field: &str, value: &str) -> Result<(), InputError> {
    let fail = |reason: &str| Err(InputError::new(field, value, reason));
    if value.is_empty() {
        return fail("is empty");
    }
    if value.chars().count() > MAX_DIRECTORY_URL_CHARS {
        return Err(InputError::new(
            field,
            value.chars().take(40).collect::<String>() + "…",
            format!("is longer than {MAX_DIRECTORY_URL_CHARS} characters"),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return fail("contains spaces or control characters");
    }
    let Some(rest) = value.strip_prefix("https://") else {
        return fail("is not an https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return fail("has no host");
    }
    Ok(())
}

/// Slugs: lower-case a-z, 0-9 and '-', 1 to 63 characters, no leading or trailing '-'.
pub fn validate_slug(field: &str, slug: &str) -> Result<(), InputError> {
    let fail = |reason: &str| Err(InputError::new(field, slug, reason));
    if slug.is_empty() {
        return fail("is empty");
    }
    if slug.len() > MAX_SLUG_LEN {
        return fail("is longer than 63 characters");
    }
    if !slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail("may contain only lower-case letters, digits and '-'");
    }
    if slug.starts_with('-') || slug.ends_with('-') {
        return fail("must not start or end with '-'");
    }
    Ok(())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> IdentifierSet {
        let inputs: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
        IdentifierSet::new("names", &inputs).unwrap()
    }

    #[test]
    fn wildcard_with_http01_is_refused() {
        let names = set(&["example.com", "*.example.com"]);
        let err = validate_request(&names, ChallengeType::Http01).unwrap_err();
        assert_eq!(
            err.to_string(),
            "names[1]: \"*.example.com\" is a wildcard; wildcard certificates need the \
             DNS-01 challenge (challenge_type = dns-01)"
        );
        assert!(validate_request(&names, ChallengeType::Dns01).is_ok());
        assert!(validate_request(&set(&["example.com"]), ChallengeType::Http01).is_ok());
    }

    #[test]
    fn emails() {
        assert!(validate_email("email", "ops@example.com").is_ok());
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@localhost",
            "ops@@example.com",
            "o ps@example.com",
            "ops@example.com.",
            "a@b@example.com",
        ] {
            let err = validate_email("email", bad).unwrap_err();
            assert_eq!(err.field, "email", "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(243));
        assert_eq!(long.len(), 255);
        assert!(validate_email("email", &long).is_err());
    }

    #[test]
    fn slugs() {
        assert!(validate_slug("slug", "acme-corp-2").is_ok());
        assert!(validate_slug("slug", &"a".repeat(63)).is_ok());
        for bad in ["", "Acme", "acme_corp", "-acme", "acme-", "ac me", "äcme"] {
            assert!(validate_slug("slug", bad).is_err(), "{bad}");
        }
        assert!(validate_slug("slug", &"a".repeat(64)).is_err());
    }
}
