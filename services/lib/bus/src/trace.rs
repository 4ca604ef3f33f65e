//! W3C trace context (`traceparent`) for messages that carry none yet.

use rand::Rng as _;

/// A fresh sampled `traceparent`: `00-<32 hex trace id>-<16 hex span id>-01`.
pub fn new_traceparent() -> String {
    let mut random = rand::rng();
    // All-zero ids are invalid; drawing one is as unlikely as it is harmless to redraw.
    let trace_id = loop {
        let id: u128 = random.random();
        if id != 0 {
            break id;
        }
    };
    let span_id = loop {
        let id: u64 = random.random();
        if id != 0 {
            break id;
        }
    };
    format!("00-{trace_id:032x}-{span_id:016x}-01")
}

/// Whether `value` is a well-formed version-00 `traceparent`.
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let [version, trace_id, span_id, flags] = parts.as_slice() else {
        return false;
    };
    let lower_hex = |part: &str, length: usize| {
        part.len() == length
            && part
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    *version == "00"
        && lower_hex(version, 2)
        && lower_hex(trace_id, 32)
        && lower_hex(span_id, 16)
        && lower_hex(flags, 2)
        && trace_id.bytes().any(|byte| byte != b'0')
        && span_id.bytes().any(|byte| byte != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_traceparents_are_valid_and_distinct() {
        let first = new_traceparent();
        assert!(valid_traceparent(&first), "{first}");
        assert_eq!(first.len(), 55);
        assert_ne!(first, new_traceparent());
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        assert!(!valid_traceparent(""));
        assert!(!valid_traceparent(
            "00-00000000000000000000000000000000-0000000000000001-01"
        ));
        assert!(!valid_traceparent(
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"
        ));
        assert!(valid_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        ));
    }
}
