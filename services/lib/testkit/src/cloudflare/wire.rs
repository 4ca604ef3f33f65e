//! Cloudflare's wire conventions for the fake: the `{success, errors,
//! messages, result, result_info}` envelope, error bodies, page-number
//! pagination and query strings.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse as _, Response};
use serde_json::{Value, json};

/// One page of `items` as `page` and `per_page` ask (clamped to `limits`:
/// default, minimum, maximum), with its `result_info`; and the page number.
pub(super) fn page_of(
    items: Vec<Value>,
    query: &[(String, String)],
    limits: (u64, u64, u64),
) -> (Response, u64) {
    let number = |key: &str| query_value(query, key).and_then(|value| value.parse::<u64>().ok());
    let (default, min, max) = limits;
    let per_page = number("per_page").unwrap_or(default).clamp(min, max);
    let page = number("page").unwrap_or(1).max(1);
    let total_count = items.len() as u64;
    let total_pages = total_count.div_ceil(per_page).max(1);
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    let result: Vec<Value> = items.into_iter().skip(skip).take(take).collect();
    let info = json!({
        "page": page,
        "per_page": per_page,
        "count": result.len(),
        "total_count": total_count,
        "total_pages": total_pages,
    });
    (
        envelope(StatusCode::OK, Value::Array(result), Some(info)),
        page,
    )
}

pub(super) fn envelope(status: StatusCode, result: Value, result_info: Option<Value>) -> Response {
    let mut body = json!({ "success": true, "errors": [], "messages": [], "result": result });
    if let Some(info) = result_info {
        body["result_info"] = info;
    }
    json_response(status, &body)
}

pub(super) fn validation_error(code: u64, message: &str) -> Response {
    let errors = json!([{
        "code": 1004,
        "message": "DNS Validation Error",
        "error_chain": [{ "code": code, "message": message }],
    }]);
    failures(StatusCode::BAD_REQUEST, errors)
}

pub(super) fn failure(status: StatusCode, code: u64, message: &str) -> Response {
    failures(status, json!([{ "code": code, "message": message }]))
}

pub(super) fn failures(status: StatusCode, errors: Value) -> Response {
    let body = json!({ "success": false, "errors": errors, "messages": [], "result": null });
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

pub(super) fn query_value(query: &[(String, String)], key: &str) -> Option<String> {
    query
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.clone())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                index += 1;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let uri: Uri = "/x?name=_acme-challenge.example.com&content=%22a+b%22&page=2"
            .parse()
            .expect("uri");
        let query = query_pairs(&uri);
        assert_eq!(query_value(&query, "content").as_deref(), Some("\"a b\""));
        assert_eq!(query_value(&query, "page").as_deref(), Some("2"));
        assert_eq!(query_value(&query, "missing"), None);
    }
}
