//! The PowerDNS Authoritative HTTP API (v1): adds or removes one TXT value.
//!
//! The API can only replace a whole RRset, so each change reads the TXT
//! RRset, adds or removes the value and writes the result back (or deletes the
//! RRset with its last value). Changes to one name are serialized within the
//! process, so an apex and its wildcard presented at once both stay. The API
//! has no conditional write: two processes changing one name at the same
//! instant can still lose a value.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;

use super::locks::lock_name;
use crate::http::{HttpAnswer, HttpClient};
use crate::settings::Settings;
use crate::{DnsError, DnsProvider, ProviderConfig, ProviderKind, SettingError, TxtRecord};

/// Writes of one change before giving up when other writers keep undoing it.
const WRITE_TRIES: u32 = 5;
/// Tries of one change when the server fails on its side.
const SERVER_ERROR_TRIES: u32 = 4;
const PROVIDER: &str = "pdns";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Talks to one PowerDNS server's API.
pub struct PowerDns {
    api_url: String,
    api_key: String,
    server_id: String,
    ttl: u64,
    zone: Option<String>,
    http: HttpClient,
}

impl std::fmt::Debug for PowerDns {
    // The API key is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDns")
            .field("api_url", &self.api_url)
            .field("server_id", &self.server_id)
            .field("ttl", &self.ttl)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

/// A zone on the server: its name (no trailing dot) and its id in API paths.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Zone {
    name: String,
    id: String,
}

/// One record of an RRset as the API shows it.
#[derive(Debug, Clone, Deserialize)]
struct ApiRecord {
    content: String,
    #[serde(default)]
    disabled: bool,
}

#[derive(Debug, Deserialize)]
struct ApiRrset {
    name: String,
    #[serde(rename = "type")]
    record_type: String,
    #[serde(default)]
    records: Vec<ApiRecord>,
}

#[derive(Debug, Deserialize)]
struct ApiZone {
    #[serde(default)]
    rrsets: Vec<ApiRrset>,
}

#[derive(Debug, Deserialize)]
struct ApiZoneListing {
    id: String,
    name: String,
}

impl PowerDns {
    pub fn from_config(config: &ProviderConfig) -> Result<PowerDns, SettingError> {
        let settings = &config.settings;
        let api_url =
            settings.required("api_url", "(the PowerDNS API, e.g. http://127.0.0.1:8081)")?;
        let api_url = settings.url("api_url", api_url)?;
        let api_key = settings.required("api_key", "(the PowerDNS api-key)")?;
        if http::HeaderValue::from_str(api_key).is_err() {
            return Err(SettingError::secret(
                &Settings::field("api_key"),
                "contains characters an HTTP header cannot carry",
            ));
        }
        let server_id = settings.optional("server_id").unwrap_or("localhost");
        let valid_id = server_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_id {
            return Err(SettingError::new(
                &Settings::field("server_id"),
                server_id,
                "is not a PowerDNS server id (letters, digits, '-', '_' and '.')",
            ));
        }
        let ttl = settings.number("ttl", 60, 1, 86_400)?;
        let http = HttpClient::new(REQUEST_TIMEOUT).map_err(|error| SettingError {
            field: Settings::field("api_url"),
            message: error,
        })?;
        Ok(PowerDns {
            api_url,
            api_key: api_key.to_owned(),
            server_id: server_id.to_owned(),
            ttl,
            zone: config.zone.clone(),
            http,
        })
    }

    fn zones_url(&self) -> String {
        format!("{}/api/v1/servers/{}/zones", self.api_url, self.server_id)
    }

    /// The zone holding `record`: given, or the longest zone on the server
    /// that `record.fqdn` is in.
    async fn zone_of(&self, record: &TxtRecord) -> Result<Zone, DnsError> {
        if let Some(name) = record.zone.as_deref().or(self.zone.as_deref()) {
            if !in_zone(&record.fqdn, name) {
                return Err(DnsError::NoZone {
                    name: record.fqdn.clone(),
                    detail: format!("the name is not inside the zone {name}"),
                });
            }
            return Ok(Zone {
                name: name.to_owned(),
                id: format!("{name}."),
            });
        }
        let answer = self.call(http::Method::GET, self.zones_url(), None).await?;
        let zones: Vec<ApiZoneListing> = parse_json(&answer, "the zone list")?;
        let count = zones.len();
        zones
            .into_iter()
            .map(|zone| Zone {
                name: zone.name.trim_end_matches('.').to_ascii_lowercase(),
                id: zone.id,
            })
            .filter(|zone| in_zone(&record.fqdn, &zone.name))
            .max_by_key(|zone| zone.name.len())
            .ok_or_else(|| DnsError::NoZone {
                name: record.fqdn.clone(),
                detail: format!(
                    "none of the {count} zones on the PowerDNS server {} holds it",
                    self.server_id
                ),
            })
    }

    /// The TXT records at `fqdn` now.
    async fn current(&self, zone: &Zone, fqdn: &str) -> Result<Vec<ApiRecord>, DnsError> {
        // PowerDNS 4.7 filters by rrset_name and rrset_type; the filter below
        // keeps older servers that return the whole zone correct too.
        let url = format!(
            "{}/{}?rrset_name={fqdn}.&rrset_type=TXT",
            self.zones_url(),
            zone.id
        );
        let answer = self.call(http::Method::GET, url, None).await?;
        let zone_data: ApiZone = parse_json(&answer, "the zone")?;
        Ok(zone_data
            .rrsets
            .into_iter()
            .filter(|rrset| {
                rrset.record_type == "TXT"
                    && rrset.name.trim_end_matches('.').eq_ignore_ascii_case(fqdn)
            })
            .flat_map(|rrset| rrset.records)
            .collect())
    }

    /// Writes `records` as the whole TXT RRset at `fqdn`; none deletes it.
    async fn write(&self, zone: &Zone, fqdn: &str, records: &[ApiRecord]) -> Result<(), DnsError> {
        let rrset = if records.is_empty() {
            serde_json::json!({ "name": format!("{fqdn}."), "type": "TXT", "changetype": "DELETE" })
        } else {
            let records: Vec<serde_json::Value> = records
                .iter()
                .map(|record| serde_json::json!({ "content": record.content, "disabled": record.disabled }))
                .collect();
            serde_json::json!({
                "name": format!("{fqdn}."),
                "type": "TXT",
                "ttl": self.ttl,
                "changetype": "REPLACE",
                "records": records,
            })
        };
        let body = serde_json::json!({ "rrsets": [rrset] }).to_string();
        let url = format!("{}/{}", self.zones_url(), zone.id);
        self.call(http::Method::PATCH, url, Some(body))
            .await
            .map(drop)
    }

    async fn change(&self, record: &TxtRecord, add: bool) -> Result<(), DnsError> {
        check_name(&record.fqdn)?;
        let zone = self.zone_of(record).await?;
        let _guard = lock_name(
            &format!("{} {} {}", self.api_url, self.server_id, zone.id),
            &record.fqdn,
        )
        .await;
        // The API replaces whole sets and has no conditional write: another
        // process writing the same name between our read and our write can
        // undo our change. Read back, and write again until it holds.
        for attempt in 0..=WRITE_TRIES {
            let mut records = self.current(&zone, &record.fqdn).await?;
            let present = records
                .iter()
                .any(|existing| txt_value(&existing.content) == record.value);
            if present == add {
                return Ok(());
            }
            if attempt == WRITE_TRIES {
                break;
            }
            if attempt > 0 {
                tracing::debug!(provider = PROVIDER, fqdn = %record.fqdn, attempt, "another writer changed the set; writing again");
                tokio::time::sleep(std::time::Duration::from_millis(25 * u64::from(attempt))).await;
            }
            if add {
                records.push(ApiRecord {
                    content: quote(&record.value),
                    disabled: false,
                });
            } else {
                records.retain(|existing| txt_value(&existing.content) != record.value);
            }
            self.write(&zone, &record.fqdn, &records).await?;
            tracing::debug!(
                provider = PROVIDER,
                zone = %zone.name,
                fqdn = %record.fqdn,
                change = if add { "add" } else { "remove" },
                values = records.len(),
                "txt rrset written"
            );
        }
        Err(DnsError::Unavailable {
            provider: PROVIDER,
            detail: format!(
                "the TXT set at {} kept changing under other writers; {WRITE_TRIES} writes did not hold",
                record.fqdn
            ),
        })
    }

    /// [`change`](Self::change), tried again after a short pause when the
    /// server failed on its side: PowerDNS on SQLite answers 500 ("database is
    /// locked") to concurrent writes to one zone.
    async fn change_with_retries(&self, record: &TxtRecord, add: bool) -> Result<(), DnsError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.change(record, add).await {
                Err(error) if error.is_transient() && tries < SERVER_ERROR_TRIES => {
                    tracing::debug!(provider = PROVIDER, fqdn = %record.fqdn, %error, tries, "trying the change again");
                    tokio::time::sleep(Duration::from_millis(100 << tries)).await;
                }
                other => return other,
            }
        }
    }

    /// One API request; a non-2xx answer becomes the matching error.
    async fn call(
        &self,
        method: http::Method,
        url: String,
        body: Option<String>,
    ) -> Result<HttpAnswer, DnsError> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("X-API-Key", &self.api_key)
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| {
                DnsError::Config(format!(
                    "cannot build a request to the PowerDNS API: {error}"
                ))
            })?;
        let answer = self
            .http
            .send(request)
            .await
            .map_err(|detail| DnsError::Unavailable {
                provider: PROVIDER,
                detail,
            })?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        Err(api_error(&answer))
    }
}

#[async_trait::async_trait]
impl DnsProvider for PowerDns {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Pdns
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.change_with_retries(record, true).await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.change_with_retries(record, false).await
    }
}

/// What a refused or failed API call means, with PowerDNS's own words.
fn api_error(answer: &HttpAnswer) -> DnsError {
    let status = answer.status;
    let said = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|json| {
            json.get("error")
                .and_then(|error| error.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| answer.body_excerpt());
    let detail = match status.as_u16() {
        401 | 403 => format!("the API key was not accepted ({status}: {said})"),
        404 => format!(
            "the server id or the zone does not exist on the PowerDNS server ({status}: {said})"
        ),
        _ => format!("{status}: {said}"),
    };
    if status.is_server_error() {
        DnsError::Unavailable {
            provider: PROVIDER,
            detail,
        }
    } else {
        DnsError::Refused {
            provider: PROVIDER,
            detail,
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    answer: &HttpAnswer,
    what: &str,
) -> Result<T, DnsError> {
    serde_json::from_slice(&answer.body).map_err(|error| DnsError::Unavailable {
        provider: PROVIDER,
        detail: format!("{what} from the API could not be read: {error}"),
    })
}

/// Whether `fqdn` is `zone` or below it.
fn in_zone(fqdn: &str, zone: &str) -> bool {
    fqdn == zone
        || fqdn
            .strip_suffix(zone)
            .is_some_and(|head| head.ends_with('.'))
}

/// The name goes into a URL query unescaped: only DNS name characters.
fn check_name(fqdn: &str) -> Result<(), DnsError> {
    let valid = !fqdn.is_empty()
        && fqdn.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if valid {
        Ok(())
    } else {
        Err(DnsError::Config(format!(
            "{fqdn:?} is not a lower-case DNS name"
        )))
    }
}

/// A TXT value as PowerDNS content: one quoted string, `"` and `\` escaped.
fn quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The value of TXT content `"ab" "cd"`: its strings joined, unescaped.
fn txt_value(content: &str) -> String {
    let mut value = String::new();
    let mut quoted = false;
    let mut chars = content.chars();
    while let Some(character) = chars.next() {
        match (quoted, character) {
            (true, '\\') => value.extend(chars.next()),
            (_, '"') => quoted = !quoted,
            (true, _) => value.push(character),
            (false, _) => {}
        }
    }
    value
}

#[cfg(test)]
mod tests;
