//! Cloudflare API v4: TXT records created and deleted one value each (a
//! Cloudflare record holds one value, so values at one name never touch each
//! other). The zone is the configured one, or found by name with the token.

mod api;

use std::time::Duration;

use serde_json::{Value, json};

use crate::http::HttpClient;
use crate::settings::Settings;
use crate::{DnsError, DnsProvider, ProviderConfig, ProviderKind, SettingError, TxtRecord};

use api::{Api, CODE_IDENTICAL_RECORD, encode};

const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Cloudflare {
    api: Api,
    zone_id: Option<String>,
    ttl: u64,
}

impl Cloudflare {
    /// Checks the settings and prepares the HTTPS client (no I/O).
    pub fn from_config(config: &ProviderConfig) -> Result<Cloudflare, SettingError> {
        let settings = &config.settings;
        let token = settings.required("api_token", "for the cloudflare provider")?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SettingError::secret(
                &Settings::field("api_token"),
                "contains spaces or characters that cannot be sent in an HTTP header",
            ));
        }
        let api_url = match settings.optional("api_url") {
            Some(url) => settings.url("api_url", url)?,
            None => DEFAULT_API_URL.to_owned(),
        };
        let zone_id = settings
            .optional("zone_id")
            .map(|id| {
                if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    Ok(id.to_owned())
                } else {
                    Err(SettingError::new(
                        &Settings::field("zone_id"),
                        id,
                        "is not a Cloudflare zone id (32 hexadecimal digits)",
                    ))
                }
            })
            .transpose()?;
        let ttl = settings.number("ttl", 120, 1, 86_400)?;
        if (2..30).contains(&ttl) {
            return Err(SettingError::new(
                &Settings::field("ttl"),
                &ttl.to_string(),
                "is neither 1 (automatic) nor a number of seconds from 30 to 86400",
            ));
        }
        let http = HttpClient::new(REQUEST_TIMEOUT).map_err(|error| SettingError {
            field: Settings::field("api_url"),
            message: format!("cannot be reached: {error}"),
        })?;
        Ok(Cloudflare {
            api: Api::new(http, api_url, token.to_owned()),
            zone_id,
            ttl,
        })
    }

    /// The zone id for `record`: configured, or found by name.
    async fn zone_id(&self, record: &TxtRecord) -> Result<String, DnsError> {
        if let Some(id) = &self.zone_id {
            return Ok(id.clone());
        }
        let candidates: Vec<&str> = match &record.zone {
            Some(zone) => vec![zone.as_str()],
            // Longest first; a bare top-level domain is no one's zone.
            None => std::iter::successors(Some(record.fqdn.as_str()), |rest| {
                rest.split_once('.').map(|(_, tail)| tail)
            })
            .filter(|name| name.contains('.'))
            .collect(),
        };
        for name in &candidates {
            let path = format!("/zones?name={}&per_page=5", encode(name));
            let zones = self
                .api
                .get(&path, &format!("looking up the zone {name}"))
                .await?;
            let id = result_array(&zones.body)
                .iter()
                .find(|zone| {
                    text(zone, "name").is_some_and(|found| found.eq_ignore_ascii_case(name))
                })
                .and_then(|zone| text(zone, "id"));
            if let Some(id) = id {
                return Ok(id.to_owned());
            }
        }
        Err(DnsError::NoZone {
            name: record.fqdn.clone(),
            detail: format!(
                "no Cloudflare zone that the token can see is named {}",
                candidates.join(" or ")
            ),
        })
    }

    /// The ids of the TXT records at `fqdn` whose value is `value`, every page read.
    async fn matching_records(
        &self,
        zone_id: &str,
        fqdn: &str,
        value: &str,
    ) -> Result<Vec<String>, DnsError> {
        let action = format!("listing the TXT records at {fqdn}");
        let mut ids = Vec::new();
        let mut page: u64 = 1;
        loop {
            let path = format!(
                "/zones/{zone_id}/dns_records?type=TXT&name={}&per_page=100&page={page}",
                encode(fqdn)
            );
            let answer = self.api.get(&path, &action).await?;
            let records = result_array(&answer.body);
            ids.extend(
                records
                    .iter()
                    .filter(|record| {
                        text(record, "content").is_some_and(|content| unquote(content) == value)
                    })
                    .filter_map(|record| text(record, "id").map(str::to_owned)),
            );
            let total_pages = answer.body["result_info"]["total_pages"]
                .as_u64()
                .unwrap_or(1);
            // An empty page ends the walk too, whatever the total says.
            if records.is_empty() || page >= total_pages || page >= 10_000 {
                return Ok(ids);
            }
            page += 1;
        }
    }
}

#[async_trait::async_trait]
impl DnsProvider for Cloudflare {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Cloudflare
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone_id = self.zone_id(record).await?;
        if !self
            .matching_records(&zone_id, &record.fqdn, &record.value)
            .await?
            .is_empty()
        {
            return Ok(());
        }
        let body = json!({
            "type": "TXT",
            "name": record.fqdn,
            "content": format!("\"{}\"", record.value),
            "ttl": self.ttl,
        });
        let action = format!("creating the TXT record at {}", record.fqdn);
        match self
            .api
            .post(&format!("/zones/{zone_id}/dns_records"), &body, &action)
            .await
        {
            Ok(_) => {}
            // Another worker added the same value meanwhile.
            Err(failure) if failure.has_code(CODE_IDENTICAL_RECORD) => {}
            Err(failure) => return Err(failure.into()),
        }
        tracing::debug!(fqdn = %record.fqdn, zone_id, "cloudflare TXT value added");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone_id = self.zone_id(record).await?;
        let ids = self
            .matching_records(&zone_id, &record.fqdn, &record.value)
            .await?;
        for id in ids {
            let action = format!("deleting the TXT record {id} at {}", record.fqdn);
            match self
                .api
                .delete(&format!("/zones/{zone_id}/dns_records/{id}"), &action)
                .await
            {
                Ok(_) => {}
                // Already gone.
                Err(failure) if failure.status == Some(http::StatusCode::NOT_FOUND) => {}
                Err(failure) => return Err(failure.into()),
            }
        }
        tracing::debug!(fqdn = %record.fqdn, zone_id, "cloudflare TXT value removed");
        Ok(())
    }
}

fn result_array(body: &Value) -> &[Value] {
    body["result"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn text<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item.get(key).and_then(Value::as_str)
}

/// Cloudflare keeps TXT content as given, quoted or not.
fn unquote(content: &str) -> &str {
    content
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(content)
}

#[cfg(test)]
mod tests;
