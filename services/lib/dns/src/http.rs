//! A small HTTPS client for the providers with an HTTP API (PowerDNS,
//! Cloudflare, webhooks): one request, a whole-request timeout, the status
//! and body back. Public CAs' roots from the platform.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The answer to one request.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: http::StatusCode,
    pub body: Bytes,
}

impl HttpAnswer {
    /// The body as text, cut to a length fit for an error message.
    pub fn body_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(300) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose requests each end within `timeout`.
    pub fn new(timeout: Duration) -> Result<HttpClient, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(provider)
            .map_err(|error| format!("preparing the HTTPS client: {error}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// Sends `request`; `Err` is a plain-words transport failure (the server
    /// did not answer), never an HTTP status.
    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<HttpAnswer, String> {
        let what = format!("{} {}", request.method(), redact_query(request.uri()));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| format!("{what}: {}", error_chain(&error)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| format!("{what}: reading the answer: {error}"))?
                .to_bytes();
            Ok(HttpAnswer { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "{what}: no answer within {} s",
                self.timeout.as_secs()
            )),
        }
    }
}

/// The URI without its query (which may carry tokens), for messages.
fn redact_query(uri: &http::Uri) -> String {
    let mut text = uri.to_string();
    if let Some(at) = text.find('?') {
        text.truncate(at);
    }
    text
}

/// An error and its sources, joined, for a message.
fn error_chain(error: &dyn std::error::Error) -> String {
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
