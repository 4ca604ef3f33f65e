//! An HTTP(S) server on a free loopback port that records every request it
//! gets and answers with a status the test chooses: the far end of webhook
//! tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

const PATH: &str = "/hooks/certfleet";

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The header's value, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("webhook body is not JSON")
    }
}

#[derive(Debug)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    status: AtomicU16,
}

/// The receiving server; stops on drop.
#[derive(Debug)]
pub struct WebhookReceiver {
    address: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl WebhookReceiver {
    /// Plain HTTP on 127.0.0.1, answering 200 until told otherwise.
    pub async fn start() -> anyhow::Result<WebhookReceiver> {
        Self::start_with(None).await
    }

    /// HTTPS with the given certificate chain and key (PEM).
    pub async fn start_https(cert_pem: &str, key_pem: &str) -> anyhow::Result<WebhookReceiver> {
        Self::start_with(Some(tls_acceptor(cert_pem.as_bytes(), key_pem.as_bytes())?)).await
    }

    async fn start_with(acceptor: Option<TlsAcceptor>) -> anyhow::Result<WebhookReceiver> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the webhook receiver")?;
        let address = listener.local_addr().context("reading the bound address")?;
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
        });
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let recording = Arc::clone(&shared);
        let server = tokio::spawn(serve_http1(listener, acceptor, move |request| {
            record(Arc::clone(&recording), request)
        }));
        Ok(WebhookReceiver {
            address,
            scheme,
            shared,
            server,
        })
    }

    /// Where to POST, e.g. `http://127.0.0.1:PORT/hooks/certfleet`; any path
    /// is accepted.
    pub fn url(&self) -> String {
        format!("{}://{}{PATH}", self.scheme, self.address)
    }

    /// The status of every answer from now on (200 at start).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `count` requests arrived.
    pub async fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<RecordedRequest>> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return Ok(requests);
            }
            if Instant::now() >= deadline {
                bail!(
                    "webhook receiver got {} of {count} requests within {} s",
                    requests.len(),
                    timeout.as_secs_f32()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A TLS acceptor with the certificate chain and key (PEM), offering HTTP/1.1.
pub(crate) fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<TlsAcceptor> {
    let certificates = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("reading the server certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("reading the server key")?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing tls versions")?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .context("loading the server certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections (with TLS first when there is an `acceptor`) and
/// serves HTTP/1.1 on each with `handle`; the connections are aborted with
/// this task. The ARI front ([`crate::acme_front`]) serves with it too.
pub(crate) async fn serve_http1<H, F, E>(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let service = service_fn(handle.clone());
                connections.spawn(async move {
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn record(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|path| path.as_str().to_owned())
                .unwrap_or_default(),
            headers: parts.headers,
            body: body.to_vec(),
        });
    let status = StatusCode::from_u16(shared.status.load(Ordering::SeqCst))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Full::new(Bytes::from(format!(
        "webhook receiver answers {status}"
    ))));
    *response.status_mut() = status;
    Ok(response)
}
