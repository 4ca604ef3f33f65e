//! The self-check: fetch our own challenge URL the way the CA will, before the
//! CA is told to look, so a misrouted name costs a retry instead of a failed
//! authorization at the CA.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::{AcmeError, SelfCheckConfig};

/// Bodies larger than this are not a key authorization.
const MAX_BODY: usize = 8 * 1024;

#[derive(Clone)]
pub(crate) struct SelfChecker {
    config: SelfCheckConfig,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for SelfChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfChecker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

enum Outcome {
    Answered,
    /// A redirect: the CA follows it, we do not; treated as passing.
    Redirected,
    Wrong(String),
}

impl SelfChecker {
    pub(crate) fn new(config: SelfCheckConfig) -> SelfChecker {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        SelfChecker { config, client }
    }

    /// Waits until `http://name/.well-known/acme-challenge/token` answers
    /// `key_authorization`, retrying at growing intervals up to the timeout.
    pub(crate) async fn check(
        &self,
        name: &str,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), AcmeError> {
        if !self.config.enabled {
            return Ok(());
        }
        let path = format!("/.well-known/acme-challenge/{token}");
        let display_url = format!("http://{name}{path}");
        let authority = match self.config.connect_addr {
            Some(address) => address.to_string(),
            None => name.to_owned(),
        };
        let deadline = Instant::now() + self.config.timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let reason = match self.fetch(&authority, name, &path, key_authorization).await {
                Ok(Outcome::Answered) => return Ok(()),
                Ok(Outcome::Redirected) => {
                    tracing::info!(url = %display_url, "self-check got a redirect; leaving it to the CA");
                    return Ok(());
                }
                Ok(Outcome::Wrong(reason)) | Err(reason) => reason,
            };
            if Instant::now() + pause > deadline {
                return Err(AcmeError::SelfCheck {
                    url: display_url,
                    reason,
                    all_names: false,
                });
            }
            tracing::debug!(url = %display_url, %reason, "self-check not passing yet");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn fetch(
        &self,
        authority: &str,
        host: &str,
        path: &str,
        key_authorization: &str,
    ) -> Result<Outcome, String> {
        let request = http::Request::get(format!("http://{authority}{path}"))
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "certfleet-self-check")
            .body(Empty::<Bytes>::new())
            .map_err(|error| format!("bad request: {error}"))?;
        let response = tokio::time::timeout(Duration::from_secs(5), self.client.request(request))
            .await
            .map_err(|_| "no answer within 5 s".to_owned())?
            .map_err(|error| format!("connection failed: {error}"))?;
        let status = response.status();
        if status.is_redirection() {
            return Ok(Outcome::Redirected);
        }
        let body = tokio::time::timeout(
            Duration::from_secs(5),
            http_body_util::Limited::new(response.into_body(), MAX_BODY).collect(),
        )
        .await
        .map_err(|_| "body not received within 5 s".to_owned())?
        .map_err(|error| format!("reading the body failed: {error}"))?
        .to_bytes();
        if !status.is_success() {
            return Ok(Outcome::Wrong(format!("answered HTTP {status}")));
        }
        if body.trim_ascii() == key_authorization.as_bytes() {
            Ok(Outcome::Answered)
        } else {
            Ok(Outcome::Wrong(
                "answered something other than the key authorization".to_owned(),
            ))
        }
    }
}
