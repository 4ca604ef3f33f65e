//! Route 53 failures in plain words: the service said no (refused, final) or
//! could not be reached or asked to slow down (unavailable, retryable).

use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::error::{BuildError, ProvideErrorMetadata, SdkError};

use crate::DnsError;

pub(super) const PROVIDER: &str = "route53";

/// Error codes that mean "not now" rather than "no".
const TRANSIENT_CODES: [&str; 7] = [
    "Throttling",
    "ThrottlingException",
    "PriorRequestNotComplete",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalFailure",
];

/// What failed while doing `action` (a phrase: "reading the TXT records at …").
pub(super) fn sdk_failure<E>(action: &str, error: SdkError<E, HttpResponse>) -> DnsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let unavailable = |detail: String| DnsError::Unavailable {
        provider: PROVIDER,
        detail,
    };
    match &error {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let code = context.err().code().unwrap_or("no error code");
            let message = context
                .err()
                .message()
                .map(|message| message.trim().trim_end_matches('.'))
                .filter(|message| !message.is_empty())
                .unwrap_or("no message");
            let detail = format!("{action}: {message} ({code}, HTTP {status})");
            if status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code) {
                unavailable(detail)
            } else {
                DnsError::Refused {
                    provider: PROVIDER,
                    detail,
                }
            }
        }
        SdkError::TimeoutError(_) => unavailable(format!("{action}: no answer in time")),
        SdkError::DispatchFailure(_) => unavailable(format!(
            "{action}: cannot reach the service: {}",
            chain(&error)
        )),
        SdkError::ResponseError(_) => {
            unavailable(format!("{action}: unreadable answer: {}", chain(&error)))
        }
        SdkError::ConstructionFailure(_) => DnsError::Config(format!(
            "{action}: the request cannot be built: {}",
            chain(&error)
        )),
        _ => unavailable(format!("{action}: {}", chain(&error))),
    }
}

/// A request that the SDK's builders refused (a value that cannot be sent).
pub(super) fn build_failure(error: BuildError) -> DnsError {
    DnsError::Config(format!("building a route53 request: {error}"))
}

/// An error and its sources in their display forms, repeats left out.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}
