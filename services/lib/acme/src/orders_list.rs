//! The account's orders list (RFC 8555 §7.1.2.1), which instant-acme does not
//! read: POST-as-GET requests signed here with the account key (ES256, the key
//! type instant-acme registers accounts with).
//!
//! Used only to recover: an attempt that stopped between the CA creating an
//! order and the database saving its URL left an order nobody knows; the next
//! attempt finds it here instead of placing another. Not every CA offers the
//! list (Let's Encrypt does not): then there is nothing to find, and nothing
//! else changes.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::prelude::{BASE64_URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// At most this many pages of the list are read.
const MAX_PAGES: usize = 100;
/// Immediate repeats of a request whose nonce the CA rejected.
const NONCE_RETRIES: u32 = 10;

pub(crate) type RawClient = HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An account that can sign POST-as-GET requests.
pub(crate) struct RawAccount {
    client: RawClient,
    key: EcdsaKeyPair,
    kid: String,
    directory_url: String,
    timeout: Duration,
    /// The nonce the CA returned last, for the next request.
    nonce: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for RawAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAccount")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl RawAccount {
    /// From instant-acme's serialized `AccountCredentials`
    /// (`{"id": KID, "key_pkcs8": BASE64URL, ...}`).
    pub(crate) fn from_credentials(
        client: RawClient,
        credentials_json: &[u8],
        directory_url: &str,
        timeout: Duration,
    ) -> Result<RawAccount, String> {
        let credentials: Value = serde_json::from_slice(credentials_json)
            .map_err(|_| "the stored account credentials are not JSON".to_owned())?;
        let kid = credentials["id"]
            .as_str()
            .ok_or("the stored account credentials have no account URL")?
            .to_owned();
        let pkcs8 = zeroize::Zeroizing::new(
            BASE64_URL_SAFE_NO_PAD
                .decode(
                    credentials["key_pkcs8"]
                        .as_str()
                        .ok_or("the stored account credentials have no key")?,
                )
                .map_err(|_| "the stored account key is not base64url".to_owned())?,
        );
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|_| "the stored account key is not a P-256 key".to_owned())?;
        Ok(RawAccount {
            client,
            key,
            kid,
            directory_url: directory_url.to_owned(),
            timeout,
            nonce: std::sync::Mutex::new(None),
        })
    }

    /// The URLs of the account's orders, or `None` when the CA does not list
    /// them. Follows `Link: rel="next"` pages.
    pub(crate) async fn order_urls(&self) -> Result<Option<Vec<String>>, String> {
        let (_, account) = self.post_as_get(&self.kid).await?;
        let Some(mut next) = account["orders"].as_str().map(str::to_owned) else {
            return Ok(None);
        };
        let mut urls = Vec::new();
        for _ in 0..MAX_PAGES {
            let (headers, page) = self.post_as_get(&next).await?;
            let orders = page["orders"]
                .as_array()
                .ok_or_else(|| format!("the orders list at {next} has no \"orders\" array"))?;
            urls.extend(orders.iter().filter_map(Value::as_str).map(str::to_owned));
            match next_link(&headers) {
                Some(link) => next = link,
                None => return Ok(Some(urls)),
            }
        }
        Ok(Some(urls))
    }

    /// The order at `url` as the CA describes it (status, identifiers, ...).
    pub(crate) async fn order(&self, url: &str) -> Result<Value, String> {
        Ok(self.post_as_get(url).await?.1)
    }

    /// A POST-as-GET to `url`, repeated with a fresh nonce when the CA rejects
    /// the one sent. Keeps the nonce the CA returns for the next request.
    async fn post_as_get(&self, url: &str) -> Result<(HeaderMap, Value), String> {
        let mut rejected = 0;
        loop {
            let saved = self.saved_nonce().take();
            let current = match saved {
                Some(nonce) => nonce,
                None => self.new_nonce().await?,
            };
            let body = self.sign(url, &current)?;
            let (status, headers, bytes) = self.send(Method::POST, url, Some(body)).await?;
            *self.saved_nonce() = headers
                .get("replay-nonce")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok((headers, value));
            }
            let problem = value["type"].as_str().unwrap_or_default();
            if problem.ends_with(":badNonce") && rejected < NONCE_RETRIES {
                rejected += 1;
                continue;
            }
            return Err(format!(
                "POST-as-GET {url}: HTTP {status}: {}",
                value["detail"].as_str().unwrap_or(problem)
            ));
        }
    }

    fn saved_nonce(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A poisoned lock only holds a nonce: use it anyway.
        self.nonce
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn new_nonce(&self) -> Result<String, String> {
        let (status, _, bytes) = self.send(Method::GET, &self.directory_url, None).await?;
        if !status.is_success() {
            return Err(format!("directory {}: HTTP {status}", self.directory_url));
        }
        let directory: Value = serde_json::from_slice(&bytes)
            .map_err(|_| format!("directory {} is not JSON", self.directory_url))?;
        let url = directory["newNonce"]
            .as_str()
            .ok_or_else(|| format!("directory {} has no newNonce", self.directory_url))?;
        let (_, headers, _) = self.send(Method::HEAD, url, None).await?;
        headers
            .get("replay-nonce")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("{url} returned no Replay-Nonce"))
    }

    /// The flattened JWS of a POST-as-GET: empty payload, `kid` header.
    fn sign(&self, url: &str, nonce: &str) -> Result<String, String> {
        let protected = json!({ "alg": "ES256", "kid": self.kid, "nonce": nonce, "url": url });
        let protected = BASE64_URL_SAFE_NO_PAD.encode(protected.to_string());
        let signing_input = format!("{protected}.");
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| "signing with the account key failed".to_owned())?;
        Ok(json!({
            "protected": protected,
            "payload": "",
            "signature": BASE64_URL_SAFE_NO_PAD.encode(signature.as_ref()),
        })
        .to_string())
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let mut request = Request::builder().method(method).uri(url);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/jose+json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| format!("{url}: {error}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| format!("{url}: {error}"))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|error| format!("{url}: {error}"))?
                .to_bytes();
            Ok((parts.status, parts.headers, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("{url}: no answer within {} s", self.timeout.as_secs()))?
    }
}

/// The target of a `Link: <URL>;rel="next"` header, if any.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let is_next = params
                .split(';')
                .any(|param| matches!(param.trim(), "rel=\"next\"" | "rel=next"));
            is_next.then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
        })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn finds_the_next_page_among_other_links() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::LINK,
            HeaderValue::from_static("<https://ca/dir>;rel=\"index\""),
        );
        headers.append(
            header::LINK,
            HeaderValue::from_static("<https://ca/orders/1?cursor=2>; rel=\"next\""),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://ca/orders/1?cursor=2")
        );
        headers.remove(header::LINK);
        assert_eq!(next_link(&headers), None);
    }
}
