//! A local stand-in for the Cloudflare API v4 endpoints the `cloudflare` DNS
//! provider uses: zones by name, and listing, creating and deleting DNS
//! records, with Cloudflare's envelopes (`success`, `errors`, `messages`,
//! `result`, `result_info`), page-number pagination and error codes. State
//! lives in memory; the server stops on drop.

mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{delete, get};
use serde_json::{Value, json};

use wire::{envelope, failure, failures, page_of, query_pairs, query_value, validation_error};

/// Cloudflare's documented page sizes of the two lists.
const ZONES_PER_PAGE: (u64, u64, u64) = (20, 5, 50);
const RECORDS_PER_PAGE: (u64, u64, u64) = (100, 1, 5_000_000);

/// A running fake Cloudflare API.
#[derive(Debug)]
pub struct FakeCloudflare {
    address: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

type Shared = Arc<Mutex<Account>>;

#[derive(Debug)]
struct Account {
    token: String,
    read_only_token: String,
    zones: Vec<Zone>,
    records: Vec<Record>,
    max_page_served: u64,
    rate_limited: bool,
}

#[derive(Debug, Clone)]
struct Zone {
    id: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Record {
    id: String,
    zone_id: String,
    name: String,
    kind: String,
    content: String,
    ttl: u64,
}

impl FakeCloudflare {
    /// Starts the server on a free loopback port.
    pub async fn start() -> anyhow::Result<FakeCloudflare> {
        let state: Shared = Arc::new(Mutex::new(Account {
            token: format!("cf-test-{}", uuid::Uuid::new_v4().simple()),
            read_only_token: format!("cf-read-{}", uuid::Uuid::new_v4().simple()),
            zones: Vec::new(),
            records: Vec::new(),
            max_page_served: 0,
            rate_limited: false,
        }));
        let router = Router::new()
            .route("/client/v4/zones", get(list_zones))
            .route(
                "/client/v4/zones/{zone_id}/dns_records",
                get(list_records).post(create_record),
            )
            .route(
                "/client/v4/zones/{zone_id}/dns_records/{record_id}",
                delete(delete_record),
            )
            .fallback(no_route)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the fake cloudflare api")?;
        let address = listener.local_addr().context("reading the bound address")?;
        let server = tokio::spawn(async move {
            // Ends only when aborted (on drop) or when accepting fails for good.
            let _ = axum::serve(listener, router).await;
        });
        Ok(FakeCloudflare {
            address,
            state,
            server,
        })
    }

    /// The API root, like `https://api.cloudflare.com/client/v4`.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.address)
    }

    /// A token allowed to read and edit every zone.
    pub fn token(&self) -> String {
        self.account().token.clone()
    }

    /// A token that may read zones and records but not change them.
    pub fn read_only_token(&self) -> String {
        self.account().read_only_token.clone()
    }

    /// Adds a zone; returns its id (32 hex digits, like Cloudflare's).
    pub fn add_zone(&self, name: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.account().zones.push(Zone {
            id: id.clone(),
            name: name.trim_end_matches('.').to_ascii_lowercase(),
        });
        id
    }

    /// Adds a TXT record directly, as another tool would have (`content` as
    /// given, quoted or not), in the zone whose name is the longest suffix.
    ///
    /// # Panics
    ///
    /// When no zone holds `name`.
    pub fn add_txt_record(&self, name: &str, content: &str) {
        let mut account = self.account();
        let zone = account
            .zones
            .iter()
            .filter(|zone| name == zone.name || name.ends_with(&format!(".{}", zone.name)))
            .max_by_key(|zone| zone.name.len())
            .cloned()
            .unwrap_or_else(|| panic!("no fake cloudflare zone holds {name}"));
        account.records.push(Record {
            id: uuid::Uuid::new_v4().simple().to_string(),
            zone_id: zone.id,
            name: name.to_ascii_lowercase(),
            kind: "TXT".to_owned(),
            content: content.to_owned(),
            ttl: 1,
        });
    }

    /// The contents of the TXT records at `name`, as stored (maybe quoted).
    pub fn txt_records(&self, name: &str) -> Vec<String> {
        self.account()
            .records
            .iter()
            .filter(|record| record.kind == "TXT" && record.name.eq_ignore_ascii_case(name))
            .map(|record| record.content.clone())
            .collect()
    }

    /// Every record whose name starts with `_acme-challenge.`, as (name, content).
    pub fn all_acme_challenge_records(&self) -> Vec<(String, String)> {
        self.account()
            .records
            .iter()
            .filter(|record| record.name.starts_with("_acme-challenge."))
            .map(|record| (record.name.clone(), record.content.clone()))
            .collect()
    }

    /// The highest page number of a DNS record list served so far.
    pub fn max_page_served(&self) -> u64 {
        self.account().max_page_served
    }

    /// While on, every request is answered 429 (Cloudflare's rate limit).
    pub fn set_rate_limited(&self, on: bool) {
        self.account().rate_limited = on;
    }

    fn account(&self) -> std::sync::MutexGuard<'_, Account> {
        lock(&self.state)
    }
}

impl Drop for FakeCloudflare {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, Account> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn list_zones(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let account = lock(&state);
    if let Some(refusal) = refusal(&account, &headers, false) {
        return refusal;
    }
    let query = query_pairs(&uri);
    let name = query_value(&query, "name").map(|name| name.to_ascii_lowercase());
    let zones: Vec<Value> = account
        .zones
        .iter()
        .filter(|zone| name.as_ref().is_none_or(|name| zone.name == *name))
        .map(|zone| {
            json!({
                "id": zone.id,
                "name": zone.name,
                "status": "active",
                "paused": false,
                "type": "full",
                "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            })
        })
        .collect();
    page_of(zones, &query, ZONES_PER_PAGE).0
}

async fn list_records(
    State(state): State<Shared>,
    Path(zone_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut account = lock(&state);
    if let Some(refusal) = refusal(&account, &headers, false) {
        return refusal;
    }
    let Some(zone) = find_zone(&account, &zone_id) else {
        return bad_zone(&uri);
    };
    let query = query_pairs(&uri);
    let kind = query_value(&query, "type");
    let name = query_value(&query, "name").map(|name| name.to_ascii_lowercase());
    let content = query_value(&query, "content");
    let records: Vec<Value> = account
        .records
        .iter()
        .filter(|record| record.zone_id == zone.id)
        .filter(|record| kind.as_ref().is_none_or(|kind| record.kind == *kind))
        .filter(|record| name.as_ref().is_none_or(|name| record.name == *name))
        .filter(|record| {
            content
                .as_ref()
                .is_none_or(|content| record.content == *content)
        })
        .map(|record| record_json(record, &zone))
        .collect();
    let (response, page) = page_of(records, &query, RECORDS_PER_PAGE);
    account.max_page_served = account.max_page_served.max(page);
    response
}

async fn create_record(
    State(state): State<Shared>,
    Path(zone_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut account = lock(&state);
    if let Some(refusal) = refusal(&account, &headers, true) {
        return refusal;
    }
    let Some(zone) = find_zone(&account, &zone_id) else {
        return bad_zone(&uri);
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return failure(StatusCode::BAD_REQUEST, 9207, "Request body is invalid.");
    };
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let (Some(kind), Some(name), Some(content)) = (text("type"), text("name"), text("content"))
    else {
        return validation_error(9000, "DNS name, type and content are required.");
    };
    let ttl = body.get("ttl").and_then(Value::as_u64).unwrap_or(1);
    if ttl != 1 && !(30..=86_400).contains(&ttl) {
        return validation_error(
            9021,
            "Invalid TTL. Must be between 30 and 86400 seconds, or 1 for Automatic.",
        );
    }
    // Cloudflare puts a name that is not in the zone under it.
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let name = if name == "@" {
        zone.name.clone()
    } else if name == zone.name || name.ends_with(&format!(".{}", zone.name)) {
        name
    } else {
        format!("{name}.{}", zone.name)
    };
    let identical = account.records.iter().any(|record| {
        record.zone_id == zone.id
            && record.kind == kind
            && record.name == name
            && record.content == content
    });
    if identical {
        return failure(
            StatusCode::BAD_REQUEST,
            81058,
            "An identical record already exists.",
        );
    }
    let record = Record {
        id: uuid::Uuid::new_v4().simple().to_string(),
        zone_id: zone.id.clone(),
        name,
        kind,
        content,
        ttl,
    };
    let result = record_json(&record, &zone);
    account.records.push(record);
    envelope(StatusCode::OK, result, None)
}

async fn delete_record(
    State(state): State<Shared>,
    Path((zone_id, record_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut account = lock(&state);
    if let Some(refusal) = refusal(&account, &headers, true) {
        return refusal;
    }
    if find_zone(&account, &zone_id).is_none() {
        return bad_zone(&uri);
    }
    let before = account.records.len();
    account
        .records
        .retain(|record| !(record.zone_id == zone_id && record.id == record_id));
    if account.records.len() == before {
        return failure(StatusCode::NOT_FOUND, 81044, "Record does not exist.");
    }
    envelope(StatusCode::OK, json!({ "id": record_id }), None)
}

async fn no_route() -> Response {
    failure(StatusCode::NOT_FOUND, 7000, "No route for that URI")
}

/// The answer to a request that may not go on: rate limited, or the bearer
/// token check failed (a missing or malformed header, an unknown token, a
/// read-only token asked to write), each as Cloudflare answers it.
fn refusal(account: &Account, headers: &HeaderMap, write: bool) -> Option<Response> {
    if account.rate_limited {
        return Some(failure(
            StatusCode::TOO_MANY_REQUESTS,
            971,
            "Please wait and consider throttling your request speed",
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(token) = token else {
        let errors = json!([{
            "code": 6003,
            "message": "Invalid request headers",
            "error_chain": [{ "code": 6111, "message": "Invalid format for Authorization header" }],
        }]);
        return Some(failures(StatusCode::BAD_REQUEST, errors));
    };
    if token == account.token || (token == account.read_only_token && !write) {
        None
    } else if token == account.read_only_token {
        Some(failure(
            StatusCode::FORBIDDEN,
            10000,
            "Authentication error",
        ))
    } else {
        Some(failure(StatusCode::FORBIDDEN, 9109, "Invalid access token"))
    }
}

fn find_zone(account: &Account, zone_id: &str) -> Option<Zone> {
    account
        .zones
        .iter()
        .find(|zone| zone.id == zone_id)
        .cloned()
}

fn bad_zone(uri: &Uri) -> Response {
    let path = uri.path().trim_start_matches("/client/v4");
    let message = format!("Could not route to {path}, perhaps your object identifier is invalid?");
    failure(StatusCode::BAD_REQUEST, 7003, &message)
}

fn record_json(record: &Record, zone: &Zone) -> Value {
    json!({
        "id": record.id,
        "zone_id": zone.id,
        "zone_name": zone.name,
        "name": record.name,
        "type": record.kind,
        "content": record.content,
        "proxiable": false,
        "proxied": false,
        "ttl": record.ttl,
        "settings": {},
        "meta": {},
        "comment": null,
        "tags": [],
    })
}
