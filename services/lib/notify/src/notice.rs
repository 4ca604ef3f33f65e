//! What a notification says: the facts of one lifecycle event and the
//! plain-language subject and text every channel sends.

use std::fmt;

use time::OffsetDateTime;
use time::macros::format_description;

/// Longest error text put in a subject line; the body carries all of it.
const SUBJECT_ERROR_CHARS: usize = 120;

/// What a notification is about, built by the notifier from a lifecycle
/// event. It never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event_id: String,
    pub kind: NoticeKind,
    /// Organization slug.
    pub organization: String,
    pub certificate_id: String,
    pub names: Vec<String>,
    /// Hex serial of the current certificate; may be empty.
    pub serial: String,
    /// Expiry of the current certificate, unix seconds.
    pub not_after: Option<i64>,
    /// Why now, e.g. "7 days left", "will retry", "final", "renewal failing".
    pub reason: String,
    /// The failure; may be empty.
    pub error: String,
    /// When the event happened, unix milliseconds.
    pub time: i64,
}

/// The kind of a [`Notice`]; displays as the webhook event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// The certificate expires soon and has not been renewed.
    Expiring,
    /// A renewal or issuance failed.
    Failed,
    /// A test message (`certfleet notify test`): proves the channel works.
    Test,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Expiring => "certificate.expiring",
            NoticeKind::Failed => "certificate.failed",
            NoticeKind::Test => "certfleet.test",
        }
    }
}

impl fmt::Display for NoticeKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Notice {
    /// One line, e.g. `[certfleet] example.com expires in 7 days (2026-12-14
    /// 10:00 UTC)` or `[certfleet] renewal of example.com failed: <error>`.
    pub fn subject(&self) -> String {
        let names = self.names_short();
        match self.kind {
            NoticeKind::Expiring => match self.not_after {
                Some(not_after) => format!(
                    "[certfleet] {names} {} ({})",
                    self.expiry_phrase(not_after),
                    format_unix(not_after)
                ),
                None => format!("[certfleet] {names} is about to expire"),
            },
            NoticeKind::Failed => {
                let error = one_line(&self.error);
                if error.is_empty() {
                    format!("[certfleet] renewal of {names} failed")
                } else {
                    format!(
                        "[certfleet] renewal of {names} failed: {}",
                        truncate_chars(&error, SUBJECT_ERROR_CHARS)
                    )
                }
            }
            NoticeKind::Test => format!(
                "[certfleet] test message for organization {}",
                self.organization
            ),
        }
    }

    /// The full message: what happened, the facts, and what happens next.
    pub fn text(&self) -> String {
        let names = self.names_short();
        let mut text = match (self.kind, self.not_after) {
            (NoticeKind::Expiring, Some(not_after)) => format!(
                "The certificate for {names} in organization {} {}, on {}.\n\n",
                self.organization,
                self.expiry_phrase(not_after),
                format_unix(not_after)
            ),
            (NoticeKind::Expiring, None) => format!(
                "The certificate for {names} in organization {} is about to expire.\n\n",
                self.organization
            ),
            (NoticeKind::Failed, _) => format!(
                "Renewing the certificate for {names} in organization {} failed.\n\n",
                self.organization
            ),
            (NoticeKind::Test, _) => format!(
                "This is a test message from certfleet for organization {}: this channel \
                 receives its certificate notifications.\n\n",
                self.organization
            ),
        };
        let mut field = |label: &str, value: &str| {
            if !value.is_empty() {
                text.push_str(&format!("{label:<14}{value}\n"));
            }
        };
        field("Organization:", &self.organization);
        field("Certificate:", &self.certificate_id);
        field("Names:", &self.names.join(", "));
        field("Serial:", &self.serial);
        field(
            "Expires:",
            &self.not_after.map(format_unix).unwrap_or_default(),
        );
        field("Reason:", &self.reason);
        field("Error:", &self.error);
        field("Event:", &format!("{} {}", self.kind, self.event_id));
        field("Time:", &format_unix(self.time.div_euclid(1000)));
        text.push('\n');
        text.push_str(&self.next_steps());
        text.push('\n');
        text
    }

    /// Two short lines for chat (the Slack format): organization, certificate
    /// and why.
    pub fn short_text(&self) -> String {
        let mut line = format!(
            "organization {} · certificate {} · {}",
            self.organization,
            self.certificate_id,
            self.names.join(", ")
        );
        if !self.reason.is_empty() {
            line.push_str(&format!(" · {}", self.reason));
        }
        if self.kind == NoticeKind::Failed && !self.error.is_empty() {
            line.push_str(&format!("\nerror: {}", one_line(&self.error)));
        }
        line
    }

    fn next_steps(&self) -> String {
        match self.kind {
            NoticeKind::Expiring => "What happens next: certfleet keeps trying to renew this \
                 certificate. If it is not renewed before it expires, clients will reject it; \
                 check the certificate's recent renewal attempts and its DNS or HTTP challenge \
                 set-up."
                .to_owned(),
            NoticeKind::Failed if self.reason.eq_ignore_ascii_case("final") => {
                "What happens next: certfleet has stopped retrying this renewal. Fix the cause \
                 above, then renew the certificate again."
                    .to_owned()
            }
            NoticeKind::Failed if self.reason.eq_ignore_ascii_case("will retry") => {
                "What happens next: certfleet retries the renewal automatically; nothing to do \
                 unless the failure repeats."
                    .to_owned()
            }
            NoticeKind::Failed => "What happens next: certfleet keeps renewing on its schedule; \
                 if the failure repeats, fix the cause above before the certificate expires."
                .to_owned(),
            NoticeKind::Test => "Nothing to do: the channel works.".to_owned(),
        }
    }

    /// "expires in 7 days", "expires in 5 hours", "expired".
    fn expiry_phrase(&self, not_after: i64) -> String {
        let left = not_after - self.time.div_euclid(1000);
        if left <= 0 {
            return "has expired".to_owned();
        }
        let days = left / 86_400;
        let hours = left / 3_600;
        match (days, hours) {
            (0, 0) => "expires in less than an hour".to_owned(),
            (0, 1) => "expires in 1 hour".to_owned(),
            (0, hours) => format!("expires in {hours} hours"),
            (1, _) => "expires in 1 day".to_owned(),
            (days, _) => format!("expires in {days} days"),
        }
    }

    /// The first name, and how many more there are.
    fn names_short(&self) -> String {
        match self.names.as_slice() {
            [] => format!("certificate {}", self.certificate_id),
            [only] => only.clone(),
            [first, rest @ ..] => format!("{first} (+{} more)", rest.len()),
        }
    }
}

/// `2026-12-14 10:00 UTC`; the raw number when out of range.
pub(crate) fn format_unix(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|time| {
            time.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("unix time {seconds}"))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-14 10:00:00 UTC
    const NOT_AFTER: i64 = 1_797_242_400;

    fn expiring() -> Notice {
        Notice {
            event_id: "0193e5a2-7c1d-7000-8000-000000000001".to_owned(),
            kind: NoticeKind::Expiring,
            organization: "acme".to_owned(),
            certificate_id: "cert-1".to_owned(),
            names: vec!["example.com".to_owned(), "www.example.com".to_owned()],
            serial: "04ab".to_owned(),
            not_after: Some(NOT_AFTER),
            reason: "7 days left".to_owned(),
            error: String::new(),
            time: (NOT_AFTER - 7 * 86_400 - 60) * 1000,
        }
    }

    #[test]
    fn expiring_subject_names_days_and_date() {
        assert_eq!(
            expiring().subject(),
            "[certfleet] example.com (+1 more) expires in 7 days (2026-12-14 10:00 UTC)"
        );
        let mut single = expiring();
        single.names.truncate(1);
        single.time = (NOT_AFTER - 3 * 3600) * 1000;
        assert_eq!(
            single.subject(),
            "[certfleet] example.com expires in 3 hours (2026-12-14 10:00 UTC)"
        );
    }

    #[test]
    fn expiring_text_has_the_facts_and_next_steps() {
        let text = expiring().text();
        for expected in [
            "acme",
            "cert-1",
            "example.com, www.example.com",
            "04ab",
            "2026-12-14 10:00 UTC",
            "7 days left",
            "certificate.expiring",
            "What happens next",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert!(!text.contains("Error:"), "{text}");
    }

    #[test]
    fn failed_subject_carries_one_line_of_the_error() {
        let notice = Notice {
            kind: NoticeKind::Failed,
            reason: "final".to_owned(),
            error: "dns-01 challenge\nfailed: NXDOMAIN".to_owned(),
            ..expiring()
        };
        assert_eq!(
            notice.subject(),
            "[certfleet] renewal of example.com (+1 more) failed: dns-01 challenge failed: NXDOMAIN"
        );
        let text = notice.text();
        assert!(
            text.contains("Error:        dns-01 challenge\nfailed"),
            "{text}"
        );
        assert!(text.contains("stopped retrying"), "{text}");
        let long = Notice {
            error: "x".repeat(500),
            ..notice
        };
        assert!(long.subject().chars().count() < 200);
        assert!(long.subject().ends_with('…'));
    }

    #[test]
    fn failed_without_error_or_names() {
        let notice = Notice {
            kind: NoticeKind::Failed,
            names: Vec::new(),
            serial: String::new(),
            not_after: None,
            reason: "will retry".to_owned(),
            ..expiring()
        };
        assert_eq!(
            notice.subject(),
            "[certfleet] renewal of certificate cert-1 failed"
        );
        let text = notice.text();
        assert!(text.contains("retries the renewal automatically"), "{text}");
        assert!(!text.contains("Serial:"), "{text}");
    }

    #[test]
    fn kinds_display_as_event_types() {
        assert_eq!(NoticeKind::Expiring.to_string(), "certificate.expiring");
        assert_eq!(NoticeKind::Failed.to_string(), "certificate.failed");
    }

    #[test]
    fn expired_certificate_says_so() {
        let notice = Notice {
            time: (NOT_AFTER + 10) * 1000,
            ..expiring()
        };
        assert!(
            notice.subject().contains("has expired"),
            "{}",
            notice.subject()
        );
    }
}
