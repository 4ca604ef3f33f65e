//! Errors of the issuance engine and their classification: retryable (try again
//! later, maybe soon) or final (stored on the certificate in plain words).

use std::time::Duration;

use certfleet_store::StoreError;
use certfleet_vault::VaultError;
use instant_acme::Problem;

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("{context}: the CA answered: {}", describe_problem(problem))]
    Problem {
        context: &'static str,
        problem: Problem,
    },
    #[error("{context}: cannot reach the CA: {message}")]
    Connection {
        context: &'static str,
        message: String,
    },
    #[error("{context}: no answer from the CA within {} s", after.as_secs())]
    Timeout {
        context: &'static str,
        after: Duration,
    },
    #[error(
        "self-check of {url} failed: {reason}; the CA would fail the same way, so it was not asked yet{}",
        if *all_names { " (every name of the certificate failed)" } else { "" }
    )]
    SelfCheck {
        url: String,
        reason: String,
        /// Whether every name of the certificate failed its self-check.
        all_names: bool,
    },
    #[error("validation of {name} failed: {detail}")]
    AuthorizationFailed { name: String, detail: String },
    #[error("the CA marked the order invalid: {0}")]
    OrderInvalid(String),
    #[error("the CA did not offer {challenge} for {name}")]
    ChallengeUnavailable { name: String, challenge: String },
    #[error("the CA returned an unusable certificate: {0}")]
    BadCertificate(String),
    #[error("key generation failed: {0}")]
    Key(String),
    #[error("the organization {0} no longer exists")]
    OrganizationGone(String),
    /// The CA refuses new accounts without External Account Binding and the
    /// organization has none for its directory.
    #[error(
        "the CA requires External Account Binding: set it with `certfleet org eab set --org {organization} --directory {directory} --key-id KEY_ID --hmac-key-file FILE` (the key id and HMAC key the CA gave), then `certfleet cert renew` the certificate"
    )]
    EabRequired {
        organization: String,
        directory: String,
    },
    /// The CA refused the organization's External Account Binding.
    #[error(
        "the CA refused the External Account Binding key id {key_id} for {directory}: check the key id and HMAC key and set them again with `certfleet org eab set` ({detail})"
    )]
    EabRefused {
        key_id: String,
        directory: String,
        detail: String,
    },
    /// Writing, checking or removing a DNS-01 record failed.
    #[error("dns-01: {0}")]
    Dns(#[from] certfleet_dns::DnsError),
    /// The certificate's DNS provider cannot be used (gone, or its stored
    /// settings no longer pass the checks).
    #[error("dns-01: {0}")]
    DnsProvider(String),
    /// The work waits until `until_ms` without counting as a failure: a
    /// rate-limit budget is spent, or the CA answered `rateLimited`.
    #[error("{reason}")]
    Deferred { reason: String, until_ms: i64 },
    /// The CA that issued a version is not configured any more.
    #[error(
        "the CA {0} that issued this certificate is no longer configured; add it back (--fallback-ca {0}=URL) to act on the certificate"
    )]
    IssuerGone(String),
    /// The certificate asks for an ACME profile the CA does not offer.
    #[error(
        "the certificate asks for the ACME profile {profile:?}, which {issuer} does not offer (offered: {})",
        if offered.is_empty() { "none" } else { offered.as_str() }
    )]
    ProfileUnavailable {
        profile: String,
        issuer: String,
        offered: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key vault: {0}")]
    Vault(#[from] VaultError),
}

/// Problem types that will not go away by asking again.
const FINAL_PROBLEMS: [&str; 14] = [
    "rejectedIdentifier",
    "caa",
    "unauthorized",
    "malformed",
    "badCSR",
    "dns",
    "incorrectResponse",
    "unsupportedIdentifier",
    "badRevocationReason",
    "alreadyRevoked",
    "invalidContact",
    "unsupportedContact",
    "accountDoesNotExist",
    "externalAccountRequired",
];

impl AcmeError {
    pub(crate) fn problem(
        context: &'static str,
        limit: Duration,
        error: instant_acme::Error,
    ) -> AcmeError {
        match error {
            instant_acme::Error::Api(problem) => AcmeError::Problem { context, problem },
            instant_acme::Error::Timeout(_) => AcmeError::Timeout {
                context,
                after: limit,
            },
            other => AcmeError::Connection {
                context,
                message: other.to_string(),
            },
        }
    }

    /// The ACME problem type without its URN prefix, e.g. `badNonce`.
    pub fn problem_type(&self) -> Option<&str> {
        match self {
            AcmeError::Problem { problem, .. } => problem
                .r#type
                .as_deref()
                .map(|kind| kind.rsplit(':').next().unwrap_or(kind)),
            _ => None,
        }
    }

    /// Whether a later attempt can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            AcmeError::Problem { .. } => {
                !FINAL_PROBLEMS.contains(&self.problem_type().unwrap_or(""))
            }
            AcmeError::Dns(error) => error.is_transient(),
            AcmeError::Connection { .. }
            | AcmeError::Timeout { .. }
            | AcmeError::Deferred { .. }
            | AcmeError::SelfCheck { .. }
            | AcmeError::Store(_)
            | AcmeError::Vault(_) => true,
            AcmeError::AuthorizationFailed { .. }
            | AcmeError::OrderInvalid(_)
            | AcmeError::ChallengeUnavailable { .. }
            | AcmeError::BadCertificate(_)
            | AcmeError::Key(_)
            | AcmeError::DnsProvider(_)
            | AcmeError::OrganizationGone(_)
            | AcmeError::EabRequired { .. }
            | AcmeError::ProfileUnavailable { .. }
            | AcmeError::IssuerGone(_)
            | AcmeError::EabRefused { .. } => false,
        }
    }

    /// Worth retrying within the same attempt, after a short pause (a rejected
    /// nonce, a dropped connection).
    pub fn is_transient(&self) -> bool {
        // The `connection` problem type is the CA failing to reach the
        // challenge: a validation failure, not a hiccup between us and the CA.
        matches!(self.problem_type(), Some("badNonce" | "serverInternal"))
            || matches!(
                self,
                AcmeError::Connection { .. } | AcmeError::Timeout { .. }
            )
    }

    /// Whether the CA could not validate a name (could not reach or read the
    /// challenge): what the failed-authorization budget counts.
    pub fn is_validation_failure(&self) -> bool {
        matches!(self, AcmeError::AuthorizationFailed { .. })
            || matches!(
                self.problem_type(),
                Some("unauthorized" | "incorrectResponse" | "dns" | "connection")
            )
    }

    /// Whether the CA itself is failing (unreachable, timing out, answering
    /// 5xx or `serverInternal`), not the request or the domain: the case for
    /// trying the next configured CA.
    pub fn is_ca_outage(&self) -> bool {
        match self {
            AcmeError::Connection { .. } | AcmeError::Timeout { .. } => true,
            AcmeError::Problem { problem, .. } => {
                self.problem_type() == Some("serverInternal")
                    || problem.status.is_some_and(|status| status >= 500)
            }
            _ => false,
        }
    }

    /// When the CA asked to be asked again, as Unix milliseconds: the
    /// "retry after TIME" of a problem's detail (Let's Encrypt's words, and
    /// where the client notes a `Retry-After` header). RFC 3339 or Let's
    /// Encrypt's `2006-01-02 15:04:05 UTC`.
    pub fn retry_after_ms(&self) -> Option<i64> {
        let AcmeError::Problem { problem, .. } = self else {
            return None;
        };
        let detail = problem.detail.as_deref()?;
        let at = detail.rfind("retry after ")? + "retry after ".len();
        let rest = &detail[at..];
        let rfc3339 = time::format_description::well_known::Rfc3339;
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ';' || c == ',')
            .unwrap_or(rest.len());
        if let Ok(when) = time::OffsetDateTime::parse(rest[..end].trim_end_matches('.'), &rfc3339) {
            return Some(when.unix_timestamp().saturating_mul(1000));
        }
        // `2006-01-02 15:04:05 UTC`
        let candidate = rest.get(..23)?;
        let format =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
        let when = time::PrimitiveDateTime::parse(candidate, &format).ok()?;
        Some(when.assume_utc().unix_timestamp().saturating_mul(1000))
    }

    /// Whether this failure ends the work after `attempts` failed attempts.
    /// Validation failures (the CA could not reach or read the challenge) are
    /// often a routing or DNS change still in progress: they get a few
    /// attempts with back-off before they count as final.
    pub fn is_final_after(&self, attempts: u32) -> bool {
        const VALIDATION_ATTEMPTS: u32 = 3;
        if self.is_validation_failure() {
            return attempts >= VALIDATION_ATTEMPTS;
        }
        !self.is_retryable()
    }
}

fn describe_problem(problem: &Problem) -> String {
    let kind = problem
        .r#type
        .as_deref()
        .map(|kind| kind.rsplit(':').next().unwrap_or(kind))
        .unwrap_or("unknown problem");
    let mut text = match &problem.detail {
        Some(detail) => format!("{detail} ({kind})"),
        None => kind.to_owned(),
    };
    for subproblem in &problem.subproblems {
        if let Some(detail) = &subproblem.detail {
            text.push_str("; ");
            text.push_str(detail);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str) -> AcmeError {
        let json = format!(
            r#"{{"type":"urn:ietf:params:acme:error:{kind}","detail":"something","status":400}}"#
        );
        match serde_json::from_str::<Problem>(&json) {
            Ok(problem) => AcmeError::Problem {
                context: "new order",
                problem,
            },
            Err(error) => panic!("bad test problem: {error}"),
        }
    }

    #[test]
    fn classifies_problems() {
        assert!(problem("badNonce").is_retryable());
        assert!(problem("badNonce").is_transient());
        assert!(problem("serverInternal").is_retryable());
        assert!(problem("rateLimited").is_retryable());
        assert!(!problem("rateLimited").is_transient());
        assert!(!problem("connection").is_transient());
        assert!(!problem("rejectedIdentifier").is_retryable());
        assert!(!problem("caa").is_retryable());
        assert!(!problem("unauthorized").is_retryable());
    }

    #[test]
    fn validation_failures_get_a_few_attempts() {
        assert!(!problem("unauthorized").is_final_after(1));
        assert!(!problem("unauthorized").is_final_after(2));
        assert!(problem("unauthorized").is_final_after(3));
        assert!(problem("rejectedIdentifier").is_final_after(1));
        assert!(!problem("badNonce").is_final_after(50));
    }

    #[test]
    fn binding_refusals_are_final_at_once() {
        let required = AcmeError::EabRequired {
            organization: "acme".to_owned(),
            directory: "https://ca/dir".to_owned(),
        };
        assert!(required.is_final_after(1));
        assert!(
            required
                .to_string()
                .contains("certfleet org eab set --org acme")
        );
        let refused = AcmeError::EabRefused {
            key_id: "kid-1".to_owned(),
            directory: "https://ca/dir".to_owned(),
            detail: "bad signature (unauthorized)".to_owned(),
        };
        assert!(refused.is_final_after(1));
        assert!(
            refused
                .to_string()
                .contains("key id kid-1 for https://ca/dir")
        );
    }

    fn detailed(kind: &str, detail: &str, status: u16) -> AcmeError {
        let problem = Problem {
            r#type: Some(format!("urn:ietf:params:acme:error:{kind}")),
            detail: Some(detail.to_owned()),
            status: Some(status),
            subproblems: Vec::new(),
        };
        AcmeError::Problem {
            context: "placing the order",
            problem,
        }
    }

    #[test]
    fn the_cas_retry_time_is_read_from_the_detail() {
        let noted = detailed(
            "rateLimited",
            "too many; retry after 2026-12-07T21:00:00Z",
            429,
        );
        assert_eq!(noted.retry_after_ms(), Some(1_796_677_200_000));
        let letsencrypt = detailed(
            "rateLimited",
            "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-12-07 21:00:00 UTC: see https://letsencrypt.org/docs/rate-limits/",
            429,
        );
        assert_eq!(letsencrypt.retry_after_ms(), Some(1_796_677_200_000));
        assert_eq!(
            detailed("rateLimited", "slow down", 429).retry_after_ms(),
            None
        );
    }

    #[test]
    fn ca_outages_are_told_from_refusals() {
        assert!(detailed("serverInternal", "oops", 500).is_ca_outage());
        assert!(detailed("unknown", "bad gateway", 502).is_ca_outage());
        assert!(!detailed("rateLimited", "slow down", 429).is_ca_outage());
        assert!(!detailed("rejectedIdentifier", "no", 400).is_ca_outage());
        let down = AcmeError::Connection {
            context: "loading the directory",
            message: "connection refused".to_owned(),
        };
        assert!(down.is_ca_outage());
    }

    #[test]
    fn final_errors_read_as_plain_words() {
        let text = problem("rejectedIdentifier").to_string();
        assert_eq!(
            text,
            "new order: the CA answered: something (rejectedIdentifier)"
        );
    }
}
