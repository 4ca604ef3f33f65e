//! W3C trace context (`traceparent`): one trace from the gRPC call (or the
//! job) that causes work to every message that work writes.
//!
//! A handler runs inside [`in_trace`]; every outbox row written inside it
//! carries a child of that context ([`current_traceparent`]: same trace id,
//! new span id), which the relay publishes in the message's `traceparent`
//! header. The issuer runs each job inside the context its message carried,
//! so the events of an issuance belong to the trace of the request.

use std::future::Future;

use rand::Rng as _;

tokio::task_local! {
    static TRACE: String;
}

/// Runs `work` with `parent` (a valid `traceparent`, else a fresh trace) as
/// the trace context of the messages it writes.
pub async fn in_trace<F: Future>(parent: Option<String>, work: F) -> F::Output {
    let parent = parent
        .filter(|value| valid_traceparent(value))
        .unwrap_or_else(new_traceparent);
    TRACE.scope(parent, work).await
}

/// A child of the current trace context (same trace id and flags, a new span
/// id), or `None` outside [`in_trace`].
pub fn current_traceparent() -> Option<String> {
    TRACE.try_with(|parent| child_of(parent)).ok()
}

/// `parent`'s trace with a fresh span id.
fn child_of(parent: &str) -> String {
    // "00-" + 32 hex trace id + "-" is 36 characters; the span id's 16 follow,
    // then "-" and the flags.
    match (parent.get(..36), parent.get(53..)) {
        (Some(version_and_trace), Some(flags)) => {
            format!("{version_and_trace}{:016x}-{flags}", span_id())
        }
        _ => new_traceparent(),
    }
}

fn span_id() -> u64 {
    let mut random = rand::rng();
    loop {
        let id: u64 = random.random();
        if id != 0 {
            return id;
        }
    }
}

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
    format!("00-{trace_id:032x}-{:016x}-01", span_id())
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
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn fresh_traceparents_are_valid_and_distinct() {
        let first = new_traceparent();
        assert!(valid_traceparent(&first), "{first}");
        assert_eq!(first.len(), 55);
        assert_ne!(first, new_traceparent());
    }

    #[tokio::test]
    async fn messages_written_in_a_trace_are_its_children() {
        assert_eq!(current_traceparent(), None);
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
        let (first, second) = in_trace(Some(parent.clone()), async {
            (current_traceparent(), current_traceparent())
        })
        .await;
        let (first, second) = (first.unwrap(), second.unwrap());
        for child in [&first, &second] {
            assert!(valid_traceparent(child), "{child}");
            assert_eq!(child[..36], parent[..36]);
            assert_eq!(child[52..], parent[52..]);
            assert_ne!(child[36..52], parent[36..52]);
        }
        assert_ne!(first, second);
        // No valid parent: a fresh trace, shared by everything inside.
        let (first, second) = in_trace(Some("garbage".to_owned()), async {
            (current_traceparent(), current_traceparent())
        })
        .await;
        let (first, second) = (first.unwrap(), second.unwrap());
        assert!(valid_traceparent(&first));
        assert_eq!(first[..36], second[..36]);
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
