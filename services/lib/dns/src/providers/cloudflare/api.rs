//! Calls to the Cloudflare API v4 and its answers in plain words: the
//! `{success, errors: [{code, message}], messages, result}` envelope read,
//! 401/403 and `success: false` refused, 429 and 5xx unavailable.

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;

use crate::DnsError;
use crate::http::HttpClient;

const PROVIDER: &str = "cloudflare";

/// "An identical record already exists."
pub(super) const CODE_IDENTICAL_RECORD: u64 = 81058;

pub(super) struct Api {
    http: HttpClient,
    base_url: String,
    token: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A successful answer.
pub(super) struct Answer {
    pub(super) body: Value,
}

/// A failed call: the status (none when the API did not answer), Cloudflare's
/// error codes and the whole story in plain words.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) status: Option<StatusCode>,
    codes: Vec<u64>,
    detail: String,
    transient: bool,
}

impl Failure {
    pub(super) fn has_code(&self, code: u64) -> bool {
        self.codes.contains(&code)
    }
}

impl From<Failure> for DnsError {
    fn from(failure: Failure) -> DnsError {
        if failure.transient {
            DnsError::Unavailable {
                provider: PROVIDER,
                detail: failure.detail,
            }
        } else {
            DnsError::Refused {
                provider: PROVIDER,
                detail: failure.detail,
            }
        }
    }
}

impl Api {
    pub(super) fn new(http: HttpClient, base_url: String, token: String) -> Api {
        Api {
            http,
            base_url,
            token,
        }
    }

    pub(super) async fn get(&self, path: &str, action: &str) -> Result<Answer, DnsError> {
        self.call(Method::GET, path, None, action)
            .await
            .map_err(DnsError::from)
    }

    pub(super) async fn post(
        &self,
        path: &str,
        body: &Value,
        action: &str,
    ) -> Result<Answer, Failure> {
        self.call(Method::POST, path, Some(body), action).await
    }

    pub(super) async fn delete(&self, path: &str, action: &str) -> Result<Answer, Failure> {
        self.call(Method::DELETE, path, None, action).await
    }

    /// One request; `action` says what it was for in messages.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        action: &str,
    ) -> Result<Answer, Failure> {
        let payload = body.map(Value::to_string).unwrap_or_default();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|error| Failure {
                status: None,
                codes: Vec::new(),
                detail: format!("{action}: the request cannot be built: {error}"),
                transient: false,
            })?;
        let answer = self.http.send(request).await.map_err(|error| Failure {
            status: None,
            codes: Vec::new(),
            detail: format!("{action}: {error}"),
            transient: true,
        })?;
        let status = answer.status;
        let mut parsed = serde_json::from_slice::<Value>(&answer.body).ok();
        let succeeded = parsed
            .as_ref()
            .is_some_and(|body| body["success"].as_bool() != Some(false));
        if status.is_success()
            && succeeded
            && let Some(body) = parsed.take()
        {
            return Ok(Answer { body });
        }
        let (codes, errors) = match &parsed {
            Some(body) => describe_errors(body),
            None => (Vec::new(), String::new()),
        };
        let errors = if !errors.is_empty() {
            errors
        } else if answer.body.is_empty() {
            "no details given".to_owned()
        } else {
            answer.body_excerpt()
        };
        let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        let detail = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "{action}: the API token is not allowed to do this: {errors} (HTTP {})",
                status.as_u16()
            ),
            _ => format!("{action}: {errors} (HTTP {})", status.as_u16()),
        };
        Err(Failure {
            status: Some(status),
            codes,
            detail,
            transient,
        })
    }
}

/// The codes of `errors[]` (and their `error_chain`s) and their messages,
/// like `Invalid access token (code 9109)`.
fn describe_errors(body: &Value) -> (Vec<u64>, String) {
    let mut codes = Vec::new();
    let mut parts = Vec::new();
    let mut pending: Vec<&Value> = body["errors"]
        .as_array()
        .map(|errors| errors.iter().collect())
        .unwrap_or_default();
    pending.reverse();
    while let Some(error) = pending.pop() {
        let code = error["code"].as_u64();
        let message = error["message"]
            .as_str()
            .unwrap_or("")
            .trim()
            .trim_end_matches('.');
        codes.extend(code);
        match code {
            Some(code) => parts.push(format!("{message} (code {code})")),
            None if !message.is_empty() => parts.push(message.to_owned()),
            None => {}
        }
        if let Some(chain) = error["error_chain"].as_array() {
            pending.extend(chain.iter().rev());
        }
    }
    (codes, parts.join("; "))
}

/// A query value percent-encoded (all but RFC 3986 unreserved characters).
pub(super) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn errors_and_chains_are_described() {
        let body = json!({
            "success": false,
            "errors": [{
                "code": 1004,
                "message": "DNS Validation Error",
                "error_chain": [{ "code": 9021, "message": "Invalid TTL." }],
            }],
            "messages": [],
            "result": null,
        });
        let (codes, text) = describe_errors(&body);
        assert_eq!(codes, [1004, 9021]);
        assert_eq!(
            text,
            "DNS Validation Error (code 1004); Invalid TTL (code 9021)"
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode("_acme-challenge.example.com"),
            "_acme-challenge.example.com"
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
