//! Webhook signatures, so a receiver can tell certfleet's requests from
//! anyone else's.
//!
//! When a webhook channel has a secret, every request carries
//!
//! ```text
//! X-Certfleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//! ```
//!
//! where the HMAC key is the secret (its UTF-8 bytes) and the message is the
//! timestamp, a dot and the raw request body: `"<t>.<body>"`. To verify, a
//! receiver
//!
//! 1. reads `t` and every `v1` from the header (more than one `v1` may come
//!    while secrets are rotated);
//! 2. recomputes the HMAC over `t`, `.` and the body bytes exactly as
//!    received (before any JSON parsing);
//! 3. compares it with each `v1` in constant time, and accepts on a match;
//! 4. rejects the request when `|now - t|` is more than five minutes, so a
//!    captured request cannot be replayed later. The event id
//!    (`X-Certfleet-Event-Id`) lets it drop redeliveries it has already seen.
//!
//! [`verify_signature`] does all of this.

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq as _;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Certfleet-Signature";

/// How far a signature's timestamp may be from now, in seconds, by default.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body))
}

/// The `X-Certfleet-Signature` value for `body` sent at `timestamp`.
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

/// Whether `header` (an `X-Certfleet-Signature` value) signs `body` with
/// `secret` and its timestamp is within `tolerance_secs` of `now` (unix
/// seconds). Compares in constant time.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => candidates.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    if now.abs_diff(timestamp) > tolerance_secs.max(0).unsigned_abs() {
        return false;
    }
    let expected = mac(secret, timestamp, body);
    candidates.iter().fold(false, |matched, candidate| {
        matched | bool::from(expected.as_slice().ct_eq(candidate.as_slice()))
    })
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign().as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_797_242_400;

    #[test]
    fn known_vector() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"key",b"1.{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"key", 1, b"{}"),
            "1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }

    #[test]
    fn round_trip_within_tolerance() {
        let header = signature_header(b"secret", NOW, b"{\"a\":1}");
        assert!(verify_signature(b"secret", &header, b"{\"a\":1}", NOW, 300));
        assert!(verify_signature(
            b"secret",
            &header,
            b"{\"a\":1}",
            NOW + 300,
            300
        ));
        assert!(verify_signature(
            b"secret",
            &header,
            b"{\"a\":1}",
            NOW - 300,
            300
        ));
    }

    #[test]
    fn stale_or_future_timestamps_fail() {
        let header = signature_header(b"secret", NOW, b"{}");
        assert!(!verify_signature(b"secret", &header, b"{}", NOW + 301, 300));
        assert!(!verify_signature(b"secret", &header, b"{}", NOW - 301, 300));
    }

    #[test]
    fn tampered_body_wrong_secret_or_garbage_fail() {
        let header = signature_header(b"secret", NOW, b"{\"a\":1}");
        assert!(!verify_signature(
            b"secret",
            &header,
            b"{\"a\":2}",
            NOW,
            300
        ));
        assert!(!verify_signature(b"other", &header, b"{\"a\":1}", NOW, 300));
        assert!(!verify_signature(b"secret", "", b"{}", NOW, 300));
        assert!(!verify_signature(
            b"secret",
            &format!("t={NOW}"),
            b"{}",
            NOW,
            300
        ));
        assert!(!verify_signature(b"secret", "t=x,v1=00", b"{}", NOW, 300));
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert!(!verify_signature(b"secret", &moved, b"{\"a\":1}", NOW, 300));
    }

    #[test]
    fn any_v1_may_match_during_rotation() {
        let good = sign(b"new", NOW, b"{}");
        let header = format!("t={NOW},v1={},v1={good}", sign(b"old-other", NOW, b"{}"));
        assert!(verify_signature(b"new", &header, b"{}", NOW, 300));
    }
}
