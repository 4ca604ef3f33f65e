//! When to renew a certificate and how long to wait after a failed attempt (DESIGN §5).
//!
//! All times are unix milliseconds.

const MINUTE_MS: i64 = 60 * 1000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
const SHORT_LIFETIME_MS: i64 = 10 * DAY_MS;

/// The moment renewal becomes due, without an ARI window: when one third of
/// the lifetime remains (half for lifetimes of 10 days or less), or earlier
/// when `renew_before_expiry_ms` asks for it. An override that is not
/// shorter than the lifetime cannot be met by any certificate of this CA
/// (every new one would be due at once, a renewal loop) and is ignored.
pub fn renew_at(not_before_ms: i64, not_after_ms: i64, renew_before_expiry_ms: Option<i64>) -> i64 {
    let lifetime = not_after_ms.saturating_sub(not_before_ms).max(0);
    let remaining_at_renewal = if lifetime <= SHORT_LIFETIME_MS {
        lifetime / 2
    } else {
        lifetime / 3
    };
    let default_at = not_after_ms.saturating_sub(remaining_at_renewal);
    let at = match renew_before_override(not_before_ms, not_after_ms, renew_before_expiry_ms) {
        Some(asked) => default_at.min(asked),
        None => default_at,
    };
    at.max(not_before_ms)
}

/// The renewal time `renew_before_expiry_ms` asks for, when it is honoured:
/// positive and shorter than the lifetime (a longer one would make every new
/// certificate due at once, a renewal loop). The caller takes the earlier of
/// it and its own rule's time (the lifetime rule or the CA's ARI window).
pub fn renew_before_override(
    not_before_ms: i64,
    not_after_ms: i64,
    renew_before_expiry_ms: Option<i64>,
) -> Option<i64> {
    let lifetime = not_after_ms.saturating_sub(not_before_ms).max(0);
    renew_before_expiry_ms
        .filter(|before| *before > 0 && *before < lifetime)
        .map(|before| not_after_ms.saturating_sub(before))
}

/// The renewal time inside a CA's suggested window (RFC 9773 section 4.2):
/// the point `fraction` (0 to 1, chosen at random by the caller) of the way
/// from `start` to `end`; `now_ms` when the window has already begun to pass
/// that point, so a window in the past means at once.
pub fn ari_renew_at(start_ms: i64, end_ms: i64, fraction: f64, now_ms: i64) -> i64 {
    let span = end_ms.saturating_sub(start_ms).max(0);
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let offset = (span as f64 * fraction) as i64;
    let at = start_ms.saturating_add(offset);
    if end_ms <= now_ms { now_ms } else { at }
}

/// Delay before the next attempt after `attempts` failures (1-based):
/// 1 min, 10 min, 100 min, then daily.
pub fn retry_backoff_ms(attempts: u32) -> i64 {
    match attempts {
        0 | 1 => MINUTE_MS,
        2 => 10 * MINUTE_MS,
        3 => 100 * MINUTE_MS,
        _ => DAY_MS,
    }
}

/// Why a duration such as `90d` did not read (see [`parse_span`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanError {
    Empty,
    /// The last character is not `s`, `m`, `h` or `d`.
    NoUnit,
    NotANumber,
    NotPositive,
    TooLong,
}

/// A positive whole number followed by a unit, `s`, `m`, `h` or `d`
/// (`3600s`, `30m`, `12h`, `7d`), in seconds. Callers word the errors for
/// their own setting.
pub fn parse_span(text: &str) -> Result<i64, SpanError> {
    let trimmed = text.trim();
    let unit = trimmed.chars().last().ok_or(SpanError::Empty)?;
    let unit_seconds: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(SpanError::NoUnit),
    };
    let count: i64 = trimmed[..trimmed.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| SpanError::NotANumber)?;
    if count <= 0 {
        return Err(SpanError::NotPositive);
    }
    count.checked_mul(unit_seconds).ok_or(SpanError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn ari_time_is_inside_the_window_or_now_when_it_passed() {
        let (start, end) = (T0 + DAY_MS, T0 + 2 * DAY_MS);
        assert_eq!(ari_renew_at(start, end, 0.0, T0), start);
        assert_eq!(ari_renew_at(start, end, 1.0, T0), end);
        assert_eq!(ari_renew_at(start, end, 0.5, T0), start + DAY_MS / 2);
        assert_eq!(ari_renew_at(start, end, 7.0, T0), end);
        assert_eq!(ari_renew_at(start, end, f64::NAN, T0), start);
        // The whole window is in the past: renew now.
        assert_eq!(ari_renew_at(T0 - 2 * DAY_MS, T0 - DAY_MS, 0.5, T0), T0);
        // Started but not ended: a point in it (possibly already past, so due).
        assert!(ari_renew_at(T0 - DAY_MS, T0 + DAY_MS, 0.25, T0) < T0);
    }

    #[test]
    fn ninety_day_certificate_renews_30_days_before_expiry() {
        let not_after = T0 + 90 * DAY_MS;
        assert_eq!(renew_at(T0, not_after, None), not_after - 30 * DAY_MS);
    }

    #[test]
    fn ten_day_certificate_renews_at_half_life() {
        let not_after = T0 + 10 * DAY_MS;
        assert_eq!(renew_at(T0, not_after, None), not_after - 5 * DAY_MS);
    }

    #[test]
    fn six_day_certificate_renews_at_half_life() {
        let not_after = T0 + 6 * DAY_MS;
        assert_eq!(renew_at(T0, not_after, None), not_after - 3 * DAY_MS);
    }

    #[test]
    fn five_year_certificate_renews_with_a_third_left() {
        let lifetime = 5 * 365 * DAY_MS;
        let not_after = T0 + lifetime;
        assert_eq!(renew_at(T0, not_after, None), not_after - lifetime / 3);
    }

    #[test]
    fn earlier_override_wins() {
        let not_after = T0 + 90 * DAY_MS;
        assert_eq!(
            renew_at(T0, not_after, Some(45 * DAY_MS)),
            not_after - 45 * DAY_MS
        );
    }

    #[test]
    fn later_override_is_ignored() {
        let not_after = T0 + 90 * DAY_MS;
        assert_eq!(
            renew_at(T0, not_after, Some(7 * DAY_MS)),
            not_after - 30 * DAY_MS
        );
        assert_eq!(renew_at(T0, not_after, Some(0)), not_after - 30 * DAY_MS);
    }

    #[test]
    fn an_override_as_long_as_the_lifetime_is_ignored_not_looped() {
        let not_after = T0 + 6 * DAY_MS;
        assert_eq!(renew_at(T0, not_after, Some(30 * DAY_MS)), T0 + 3 * DAY_MS);
        assert_eq!(renew_at(T0, not_after, Some(6 * DAY_MS)), T0 + 3 * DAY_MS);
        assert_eq!(
            renew_at(T0, not_after, Some(6 * DAY_MS - 1)),
            T0 + 1,
            "just shorter is honoured"
        );
        assert_eq!(renew_at(T0, T0 - DAY_MS, None), T0);
        assert_eq!(
            renew_at(T0, T0 + 90 * DAY_MS, Some(i64::MAX)),
            T0 + 60 * DAY_MS
        );
    }

    #[test]
    fn an_override_applies_only_when_shorter_than_the_lifetime() {
        let not_after = T0 + 6 * DAY_MS;
        assert_eq!(
            renew_before_override(T0, not_after, Some(DAY_MS)),
            Some(not_after - DAY_MS)
        );
        assert_eq!(renew_before_override(T0, not_after, Some(6 * DAY_MS)), None);
        assert_eq!(renew_before_override(T0, not_after, Some(0)), None);
        assert_eq!(renew_before_override(T0, not_after, None), None);
    }

    #[test]
    fn spans_read_with_their_unit() {
        assert_eq!(parse_span("90d"), Ok(90 * 86_400));
        assert_eq!(parse_span(" 12h "), Ok(12 * 3600));
        assert_eq!(parse_span("30m"), Ok(1800));
        assert_eq!(parse_span("3600s"), Ok(3600));
        assert_eq!(parse_span(""), Err(SpanError::Empty));
        assert_eq!(parse_span("5"), Err(SpanError::NoUnit));
        assert_eq!(parse_span("xd"), Err(SpanError::NotANumber));
        assert_eq!(parse_span("0d"), Err(SpanError::NotPositive));
        assert_eq!(parse_span("-1d"), Err(SpanError::NotPositive));
        assert_eq!(
            parse_span(&format!("{}d", i64::MAX / 2)),
            Err(SpanError::TooLong)
        );
    }

    #[test]
    fn backoff_steps() {
        assert_eq!(retry_backoff_ms(1), 60_000);
        assert_eq!(retry_backoff_ms(2), 600_000);
        assert_eq!(retry_backoff_ms(3), 6_000_000);
        assert_eq!(retry_backoff_ms(4), 86_400_000);
        assert_eq!(retry_backoff_ms(50), 86_400_000);
        assert_eq!(retry_backoff_ms(0), 60_000);
    }
}
