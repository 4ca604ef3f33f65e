//! An HTTPS reverse proxy in front of a running [`Pebble`] that adds ACME
//! Renewal Information (ARI, RFC 9773), which Pebble 2.4 lacks.
//!
//! Every request is forwarded to Pebble with its `Host` header unchanged:
//! Pebble builds the URLs it hands out (directory, `Location`, `Link`, order,
//! authorization and certificate URLs) from that header and checks the JWS
//! `url` against it, so all ACME traffic keeps going through the front and
//! signatures stay valid. On top of that the front
//!
//! - adds `renewalInfo` to the directory and answers `GET /renewal-info/{certID}`
//!   with a suggested window (the default one, or one the test set) and a
//!   `Retry-After`;
//! - learns every certificate Pebble hands out (certID, validity, and the
//!   account that fetched it);
//! - checks the `replaces` field of newOrder requests (RFC 9773 §5) and
//!   reflects it in the order objects, as Pebble ignores it;
//! - can answer newOrder with `rateLimited`, or everything with
//!   `serverInternal` (an outage).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use x509_parser::extensions::ParsedExtension;

use crate::pebble::Pebble;
use crate::webhook::{serve_http1, tls_acceptor};

/// Path prefix of the renewal information resource.
const RENEWAL_INFO_PATH: &str = "/renewal-info";
/// Pebble's directory path.
const DIRECTORY_PATH: &str = "/dir";
/// Pebble's newOrder path, used when the directory cannot be read at start.
const DEFAULT_NEW_ORDER_PATH: &str = "/order-plz";
const DEFAULT_RETRY_AFTER_SECS: u64 = 21_600;
const PEM_CHAIN: &str = "application/pem-certificate-chain";
const PROBLEM_JSON: &str = "application/problem+json";
/// Longest a forwarded request may wait for Pebble (which can deadlock).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

type Body = Full<Bytes>;

/// An HTTPS proxy on a free loopback port in front of a [`Pebble`], adding
/// ARI; the listener and its connections stop on drop.
#[derive(Debug)]
pub struct AcmeFront {
    port: u16,
    ca_path: PathBuf,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    upstream: Client<HttpsConnector<HttpConnector>, Body>,
    /// `127.0.0.1:PEBBLEPORT`.
    upstream_authority: String,
    /// `127.0.0.1:FRONTPORT`, used when a request carries no `Host`.
    front_authority: String,
    new_order_path: String,
}

#[derive(Debug, Default)]
struct State {
    windows: HashMap<String, (i64, i64)>,
    retry_after_secs: u64,
    renewal_info_requests: HashMap<String, usize>,
    certificates: HashMap<String, KnownCertificate>,
    certificate_order: Vec<String>,
    new_orders: usize,
    replaces_seen: Vec<String>,
    refused_replaces: Vec<(String, u16)>,
    /// certIDs named by a newOrder that has not (yet) failed.
    replaced: HashSet<String>,
    /// Path of an order (and of its finalize URL) → the certID it replaces.
    replacing_orders: HashMap<String, String>,
    rate_limited: usize,
    rate_limited_retry_after_secs: u64,
    down: bool,
    /// ACME profiles the directory offers (`meta.profiles`), name → description.
    profiles: Vec<(String, String)>,
    /// The `profile` of every newOrder that asked for one.
    profiles_seen: Vec<String>,
}

#[derive(Debug, Clone)]
struct KnownCertificate {
    not_before_ms: i64,
    not_after_ms: i64,
    /// The account (`kid`) whose request fetched the certificate.
    account: Option<String>,
}

/// Pebble's answer, read in full.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// The parts of a flattened JWS the front looks at; the signature is not checked.
struct Jws {
    kid: Option<String>,
    payload: serde_json::Value,
}

impl AcmeFront {
    /// Listens on a free port of 127.0.0.1 with Pebble's listener certificate
    /// and forwards to `pebble`, which must outlive the front.
    pub async fn start(pebble: &Pebble) -> anyhow::Result<AcmeFront> {
        let state_dir = pebble.state_dir();
        let ca_path = pebble.listener_ca_path();
        let upstream_authority = Uri::try_from(pebble.directory_url())
            .context("parsing pebble's directory url")?
            .authority()
            .map(|authority| authority.as_str().to_owned())
            .ok_or_else(|| anyhow!("pebble's directory url has no authority"))?;

        let read = |name: &str| {
            let path = state_dir.join(name);
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
        };
        let acceptor = tls_acceptor(&read("listener.pem")?, &read("listener-key.pem")?)?;
        let upstream = upstream_client(&ca_path)?;

        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the acme front listener")?;
        let port = listener.local_addr()?.port();
        let front_authority = format!("127.0.0.1:{port}");
        let new_order_path =
            discover_new_order_path(&upstream, &upstream_authority, &front_authority).await;

        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
                ..State::default()
            }),
            upstream,
            upstream_authority,
            front_authority,
            new_order_path,
        });
        let handling = Arc::clone(&shared);
        let server = tokio::spawn(serve_http1(listener, Some(acceptor), move |request| {
            Arc::clone(&handling).handle(request)
        }));
        Ok(AcmeFront {
            port,
            ca_path,
            shared,
            server,
        })
    }

    /// The ACME directory behind the front, `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}{DIRECTORY_PATH}", self.port)
    }

    /// PEM file of the CA clients must trust to talk to the front: the same
    /// as [`Pebble::listener_ca_path`].
    pub fn ca_path(&self) -> PathBuf {
        self.ca_path.clone()
    }

    /// Makes `GET /renewal-info/{cert_id}` suggest this window (Unix ms),
    /// whether or not the front has seen the certificate.
    pub fn set_window(&self, cert_id: &str, start_ms: i64, end_ms: i64) {
        self.shared
            .lock()
            .windows
            .insert(cert_id.to_owned(), (start_ms, end_ms));
    }

    /// Drops a window set with [`set_window`](Self::set_window); a known
    /// certificate gets the default window again.
    pub fn clear_window(&self, cert_id: &str) {
        self.shared.lock().windows.remove(cert_id);
    }

    /// The `Retry-After` (seconds) of renewalInfo answers; 21600 by default.
    pub fn set_retry_after(&self, seconds: u64) {
        self.shared.lock().retry_after_secs = seconds;
    }

    /// How many `GET /renewal-info/{cert_id}` the front received (known or not).
    pub fn renewal_info_requests(&self, cert_id: &str) -> usize {
        self.shared
            .lock()
            .renewal_info_requests
            .get(cert_id)
            .copied()
            .unwrap_or(0)
    }

    /// certIDs of the certificates Pebble handed out through the front,
    /// oldest first.
    pub fn known_certificates(&self) -> Vec<String> {
        self.shared.lock().certificate_order.clone()
    }

    /// How many newOrder requests reached the front, including those it
    /// answered itself (injected `rateLimited`, refused `replaces`).
    pub fn new_orders(&self) -> usize {
        self.shared.lock().new_orders
    }

    /// The `replaces` values of newOrder requests that Pebble accepted, in order.
    pub fn replaces_seen(&self) -> Vec<String> {
        self.shared.lock().replaces_seen.clone()
    }

    /// The `replaces` values the front refused, with the HTTP status it gave
    /// (400 unknown, 403 other account, 409 already replaced).
    pub fn refused_replaces(&self) -> Vec<(String, u16)> {
        self.shared.lock().refused_replaces.clone()
    }

    /// Lets a new order replace `cert_id` again, as if the order that
    /// replaced it had failed. (Orders that Pebble rejects, or that the
    /// front sees become `invalid`, release their certificate by themselves.)
    pub fn forget_replacement(&self, cert_id: &str) {
        self.shared.lock().replaced.remove(cert_id);
    }

    /// Makes the directory offer these ACME profiles (`meta.profiles`).
    /// Pebble 2.4 knows none and ignores a newOrder's `profile`; the front
    /// records it (see [`profiles_seen`](Self::profiles_seen)).
    pub fn offer_profiles(&self, profiles: &[(&str, &str)]) {
        self.shared.lock().profiles = profiles
            .iter()
            .map(|(name, description)| ((*name).to_owned(), (*description).to_owned()))
            .collect();
    }

    /// The `profile` of every newOrder that asked for one, in order.
    pub fn profiles_seen(&self) -> Vec<String> {
        self.shared.lock().profiles_seen.clone()
    }

    /// Answers the next `count` newOrder requests with 429 `rateLimited`
    /// and `Retry-After: retry_after_secs`, without forwarding them.
    pub fn inject_rate_limited(&self, count: usize, retry_after_secs: u64) {
        let mut state = self.shared.lock();
        state.rate_limited = count;
        state.rate_limited_retry_after_secs = retry_after_secs;
    }

    /// While down, every request gets 503 `serverInternal`.
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// The RFC 9773 §4.1 certID of the first certificate in `leaf_pem`:
    /// `base64url(AKI keyIdentifier) "." base64url(DER serial content)`.
    pub fn cert_id(leaf_pem: &str) -> anyhow::Result<String> {
        Ok(parse_leaf(leaf_pem.as_bytes())?.0)
    }
}

impl Drop for AcmeFront {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        Ok(match self.serve(request).await {
            Ok(response) => response,
            Err(error) => problem(
                StatusCode::BAD_GATEWAY,
                "serverInternal",
                &format!("acme front: {error:#}"),
                None,
            ),
        })
    }

    async fn serve(&self, request: Request<Incoming>) -> anyhow::Result<Response<Body>> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the request body")?
            .to_bytes();
        if self.lock().down {
            return Ok(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "serverInternal",
                "the ACME server is down",
                None,
            ));
        }
        let path = parts.uri.path().to_owned();
        if path == RENEWAL_INFO_PATH || path.starts_with("/renewal-info/") {
            return Ok(self.renewal_info(&parts.method, &path));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map_or_else(|| self.front_authority.clone(), str::to_owned);
        let jws = (parts.method == Method::POST)
            .then(|| parse_jws(&body))
            .flatten();

        let mut replaces = None;
        if parts.method == Method::POST && path == self.new_order_path {
            match self.check_new_order(jws.as_ref()) {
                Ok(named) => replaces = named,
                Err(refusal) => return Ok(*refusal),
            }
        }

        let mut upstream = match self.forward(&parts, &host, body).await {
            Ok(upstream) => upstream,
            Err(error) => {
                if let Some(cert_id) = &replaces {
                    self.lock().replaced.remove(cert_id);
                }
                return Err(error);
            }
        };
        if let Some(cert_id) = replaces {
            self.after_new_order(&cert_id, &mut upstream);
        }
        self.observe(&parts.method, &path, &host, jws.as_ref(), &mut upstream);
        Ok(upstream.into_response())
    }

    /// `GET /renewal-info/{certID}`.
    fn renewal_info(&self, method: &Method, path: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "malformed",
                "renewalInfo only answers GET",
                None,
            );
        }
        let cert_id = path
            .strip_prefix(RENEWAL_INFO_PATH)
            .unwrap_or_default()
            .trim_start_matches('/');
        let (window, retry_after) = {
            let mut state = self.lock();
            *state
                .renewal_info_requests
                .entry(cert_id.to_owned())
                .or_default() += 1;
            let window = state.windows.get(cert_id).copied().or_else(|| {
                state.certificates.get(cert_id).map(|certificate| {
                    default_window(certificate.not_before_ms, certificate.not_after_ms)
                })
            });
            (window, state.retry_after_secs)
        };
        let Some((start_ms, end_ms)) = window else {
            return problem(
                StatusCode::NOT_FOUND,
                "malformed",
                "unknown certificate",
                None,
            );
        };
        let (start, end) = match (rfc3339(start_ms), rfc3339(end_ms)) {
            (Ok(start), Ok(end)) => (start, end),
            (Err(error), _) | (_, Err(error)) => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "serverInternal",
                    &format!("formatting the window: {error:#}"),
                    None,
                );
            }
        };
        let body = serde_json::json!({
            "suggestedWindow": { "start": start, "end": end }
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        response
    }

    /// Counts a newOrder and decides whether it goes to Pebble: `Ok` with
    /// the certID it replaces (now marked replaced), or the refusal.
    fn check_new_order(&self, jws: Option<&Jws>) -> Result<Option<String>, Box<Response<Body>>> {
        let mut state = self.lock();
        state.new_orders += 1;
        if state.rate_limited > 0 {
            state.rate_limited -= 1;
            return Err(Box::new(problem(
                StatusCode::TOO_MANY_REQUESTS,
                "rateLimited",
                "too many new orders recently",
                Some(state.rate_limited_retry_after_secs),
            )));
        }
        let Some(jws) = jws else {
            return Ok(None);
        };
        if let Some(profile) = jws.payload.get("profile").and_then(|value| value.as_str()) {
            state.profiles_seen.push(profile.to_owned());
        }
        let Some(replaces) = jws.payload.get("replaces") else {
            return Ok(None);
        };
        let Some(cert_id) = replaces.as_str().map(str::to_owned) else {
            state
                .refused_replaces
                .push((replaces.to_string(), StatusCode::BAD_REQUEST.as_u16()));
            return Err(Box::new(problem(
                StatusCode::BAD_REQUEST,
                "malformed",
                "replaces must be a string",
                None,
            )));
        };
        let refusal = match state.certificates.get(&cert_id) {
            None => Some((
                StatusCode::BAD_REQUEST,
                "malformed",
                "replaces names an unknown certificate",
            )),
            Some(certificate)
                if certificate.account.is_some() && certificate.account != jws.kid =>
            {
                Some((
                    StatusCode::FORBIDDEN,
                    "unauthorized",
                    "the certificate named by replaces belongs to another account",
                ))
            }
            Some(_) if state.replaced.contains(&cert_id) => Some((
                StatusCode::CONFLICT,
                "alreadyReplaced",
                "the certificate named by replaces has already been replaced",
            )),
            Some(_) => None,
        };
        if let Some((status, kind, detail)) = refusal {
            state.refused_replaces.push((cert_id, status.as_u16()));
            return Err(Box::new(problem(status, kind, detail, None)));
        }
        state.replaced.insert(cert_id.clone());
        Ok(Some(cert_id))
    }

    /// Pebble answered a newOrder that replaces `cert_id`.
    fn after_new_order(&self, cert_id: &str, upstream: &mut Upstream) {
        let mut state = self.lock();
        if !upstream.status.is_success() {
            state.replaced.remove(cert_id);
            return;
        }
        state.replaces_seen.push(cert_id.to_owned());
        if let Some(order_path) = upstream
            .headers
            .get(header::LOCATION)
            .and_then(|location| location.to_str().ok())
            .and_then(url_path)
        {
            state
                .replacing_orders
                .insert(order_path, cert_id.to_owned());
        }
        if let Ok(order) = serde_json::from_slice::<serde_json::Value>(&upstream.body)
            && let Some(finalize_path) = order
                .get("finalize")
                .and_then(serde_json::Value::as_str)
                .and_then(url_path)
        {
            state
                .replacing_orders
                .insert(finalize_path, cert_id.to_owned());
        }
        drop(state);
        reflect_replaces(cert_id, upstream);
    }

    /// Everything the front learns from, or adds to, Pebble's answers.
    fn observe(
        &self,
        method: &Method,
        path: &str,
        host: &str,
        jws: Option<&Jws>,
        upstream: &mut Upstream,
    ) {
        if method == Method::GET && path == DIRECTORY_PATH && upstream.status.is_success() {
            add_renewal_info(host, upstream);
            let profiles = self.lock().profiles.clone();
            if !profiles.is_empty() {
                upstream.edit_json(|directory| {
                    let offered: serde_json::Map<String, serde_json::Value> = profiles
                        .into_iter()
                        .map(|(name, description)| (name, serde_json::Value::from(description)))
                        .collect();
                    let meta = directory
                        .entry("meta")
                        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
                    if let Some(meta) = meta.as_object_mut() {
                        meta.insert("profiles".to_owned(), serde_json::Value::Object(offered));
                    }
                });
            }
        }
        let is_chain = upstream
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with(PEM_CHAIN));
        if is_chain
            && upstream.status.is_success()
            && let Ok((cert_id, not_before_ms, not_after_ms)) = parse_leaf(&upstream.body)
        {
            let mut state = self.lock();
            if !state.certificates.contains_key(&cert_id) {
                state.certificates.insert(
                    cert_id.clone(),
                    KnownCertificate {
                        not_before_ms,
                        not_after_ms,
                        account: jws.and_then(|jws| jws.kid.clone()),
                    },
                );
                state.certificate_order.push(cert_id);
            }
        }
        let replacing = self.lock().replacing_orders.get(path).cloned();
        if let Some(cert_id) = replacing
            && method == Method::POST
            && upstream.status.is_success()
        {
            let invalid = serde_json::from_slice::<serde_json::Value>(&upstream.body)
                .ok()
                .is_some_and(|order| {
                    order.get("status").and_then(serde_json::Value::as_str) == Some("invalid")
                });
            if invalid {
                self.lock().replaced.remove(&cert_id);
            }
            reflect_replaces(&cert_id, upstream);
        }
    }

    /// Sends the request to Pebble with the same method, path, headers
    /// (`Host` included) and body.
    async fn forward(
        &self,
        parts: &hyper::http::request::Parts,
        host: &str,
        body: Bytes,
    ) -> anyhow::Result<Upstream> {
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |path_and_query| path_and_query.as_str());
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = Uri::try_from(format!(
            "https://{}{path_and_query}",
            self.upstream_authority
        ))
        .context("building the upstream url")?;
        let headers = request.headers_mut();
        for (name, value) in &parts.headers {
            if !is_hop_by_hop(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(
            header::HOST,
            HeaderValue::from_str(host).context("the host header")?,
        );
        let response = tokio::time::timeout(UPSTREAM_TIMEOUT, self.upstream.request(request))
            .await
            .map_err(|_| {
                anyhow!(
                    "pebble did not answer within {} s",
                    UPSTREAM_TIMEOUT.as_secs()
                )
            })?
            .context("forwarding to pebble")?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading pebble's response")?
            .to_bytes();
        Ok(Upstream {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

impl Upstream {
    fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            if !is_hop_by_hop(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        response
    }

    /// Replaces the JSON body, if it is a JSON object, with `edit`'s result.
    fn edit_json(&mut self, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
        let Ok(serde_json::Value::Object(mut object)) =
            serde_json::from_slice::<serde_json::Value>(&self.body)
        else {
            return;
        };
        edit(&mut object);
        if let Ok(body) = serde_json::to_vec_pretty(&serde_json::Value::Object(object)) {
            self.body = Bytes::from(body);
        }
    }
}

fn add_renewal_info(host: &str, upstream: &mut Upstream) {
    upstream.edit_json(|directory| {
        directory.insert(
            "renewalInfo".to_owned(),
            serde_json::Value::from(format!("https://{host}{RENEWAL_INFO_PATH}")),
        );
    });
}

/// RFC 9773 §5: the order reflects the `replaces` of its newOrder.
fn reflect_replaces(cert_id: &str, upstream: &mut Upstream) {
    upstream.edit_json(|order| {
        order
            .entry("replaces")
            .or_insert_with(|| serde_json::Value::from(cert_id));
    });
}

/// Headers that belong to one connection, and `Content-Length`, which
/// hyper recomputes from the (possibly edited) body.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

/// The path of an absolute URL.
fn url_path(url: &str) -> Option<String> {
    Uri::try_from(url).ok().map(|uri| uri.path().to_owned())
}

/// An RFC 8807 problem document response.
fn problem(
    status: StatusCode,
    kind: &str,
    detail: &str,
    retry_after_secs: Option<u64>,
) -> Response<Body> {
    let body = serde_json::json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": detail,
        "status": status.as_u16(),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(seconds) = retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Reads the `kid` of the protected header and the payload of a flattened
/// JWS (JSON serialization); `None` when the body is no such thing.
fn parse_jws(body: &[u8]) -> Option<Jws> {
    let jws: serde_json::Value = serde_json::from_slice(body).ok()?;
    let decode = |field: &str| -> Option<serde_json::Value> {
        let encoded = jws.get(field)?.as_str()?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?;
        if bytes.is_empty() {
            // POST-as-GET.
            return Some(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).ok()
    };
    let protected = decode("protected")?;
    let kid = protected
        .get("kid")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let payload = decode("payload").unwrap_or(serde_json::Value::Null);
    Some(Jws { kid, payload })
}

/// certID, notBefore and notAfter (Unix ms) of the first certificate of a PEM chain.
fn parse_leaf(pem: &[u8]) -> anyhow::Result<(String, i64, i64)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|error| anyhow!("reading the certificate pem: {error}"))?;
    let certificate = pem
        .parse_x509()
        .map_err(|error| anyhow!("parsing the certificate: {error}"))?;
    let key_identifier = certificate
        .extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })
        .ok_or_else(|| anyhow!("the certificate has no authority key identifier"))?;
    let serial = certificate.tbs_certificate.raw_serial();
    if serial.is_empty() {
        bail!("the certificate has an empty serial number");
    }
    let cert_id = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(key_identifier.0),
        URL_SAFE_NO_PAD.encode(serial)
    );
    let validity = certificate.validity();
    Ok((
        cert_id,
        validity.not_before.timestamp().saturating_mul(1000),
        validity.not_after.timestamp().saturating_mul(1000),
    ))
}

/// start = notBefore + 2/3 of the lifetime, end = start + 1/6 of it.
fn default_window(not_before_ms: i64, not_after_ms: i64) -> (i64, i64) {
    let lifetime = not_after_ms.saturating_sub(not_before_ms).max(0);
    let start = not_before_ms.saturating_add(lifetime.saturating_mul(2) / 3);
    (start, start.saturating_add(lifetime / 6))
}

/// Unix ms as RFC 3339 UTC, floored to the second.
fn rfc3339(ms: i64) -> anyhow::Result<String> {
    let time = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .context("timestamp out of range")?;
    time.format(&time::format_description::well_known::Rfc3339)
        .context("formatting a timestamp")
}

fn upstream_client(ca_path: &Path) -> anyhow::Result<Client<HttpsConnector<HttpConnector>, Body>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_path)
        .with_context(|| format!("reading {}", ca_path.display()))?
    {
        roots
            .add(certificate.with_context(|| format!("reading {}", ca_path.display()))?)
            .context("trusting pebble's listener ca")?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing tls versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// The path of the directory's `newOrder`; Pebble's usual one when the
/// directory cannot be read.
async fn discover_new_order_path(
    upstream: &Client<HttpsConnector<HttpConnector>, Body>,
    upstream_authority: &str,
    front_authority: &str,
) -> String {
    let read = async {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() =
            Uri::try_from(format!("https://{upstream_authority}{DIRECTORY_PATH}"))?;
        request
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_str(front_authority)?);
        let response =
            tokio::time::timeout(Duration::from_secs(10), upstream.request(request)).await??;
        let body = response.into_body().collect().await?.to_bytes();
        let directory: serde_json::Value = serde_json::from_slice(&body)?;
        directory
            .get("newOrder")
            .and_then(serde_json::Value::as_str)
            .and_then(url_path)
            .ok_or_else(|| anyhow!("no newOrder in the directory"))
    };
    let read: anyhow::Result<String> = read.await;
    read.unwrap_or_else(|_| DEFAULT_NEW_ORDER_PATH.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, KeyPair, SerialNumber,
    };

    /// The example of RFC 9773 §4.1.
    #[test]
    fn cert_id_matches_the_rfc_example() {
        let ca_key = KeyPair::generate().expect("test value");
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_identifier_method = KeyIdMethod::PreSpecified(vec![
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
            0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ]);
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("test value");
        let mut leaf_params =
            CertificateParams::new(vec!["example.test".to_owned()]).expect("test value");
        leaf_params.serial_number = Some(SerialNumber::from_slice(&[0x87, 0x65, 0x43, 0x21]));
        leaf_params.use_authority_key_identifier_extension = true;
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("test value");

        assert_eq!(
            AcmeFront::cert_id(&leaf.pem()).expect("test value"),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
    }

    #[test]
    fn default_window_is_the_last_third_but_one_sixth() {
        let day = 86_400_000;
        assert_eq!(default_window(0, 90 * day), (60 * day, 75 * day));
        assert_eq!(rfc3339(1_500).expect("test value"), "1970-01-01T00:00:01Z");
    }

    #[test]
    fn jws_kid_and_payload_are_read() {
        let protected = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"https://x/acct/1"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"replaces":"a.b"}"#);
        let body =
            format!(r#"{{"protected":"{protected}","payload":"{payload}","signature":"x"}}"#);
        let jws = parse_jws(body.as_bytes()).expect("test value");
        assert_eq!(jws.kid.as_deref(), Some("https://x/acct/1"));
        assert_eq!(jws.payload["replaces"], "a.b");

        let empty = format!(r#"{{"protected":"{protected}","payload":"","signature":"x"}}"#);
        assert!(
            parse_jws(empty.as_bytes())
                .expect("test value")
                .payload
                .is_null()
        );
    }
}
