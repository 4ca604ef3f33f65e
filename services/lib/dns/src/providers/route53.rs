//! Amazon Route 53: TXT values written through the AWS SDK with the static
//! credentials of the settings. The hosted zone is the configured one, or the
//! one whose name is the longest suffix of the record's name.
//!
//! Route 53 holds all TXT values of a name in one record set, so adding or
//! removing one value rewrites the set: read it, change it, write it back.
//! That read-modify-write is serialized per name within the process.

mod failure;
mod settings;

use std::time::Duration;

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use tokio::time::Instant;

use crate::{DnsError, DnsProvider, ProviderKind, TxtRecord};

use failure::{PROVIDER, build_failure, sdk_failure};

/// Longest wait for a change to reach every Route 53 name server.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest pause between two `GetChange` polls.
const SYNC_POLL_MAX: Duration = Duration::from_secs(2);
const SYNC_POLL_FIRST: Duration = Duration::from_millis(250);

pub struct Route53 {
    client: Client,
    hosted_zone_id: Option<String>,
    ttl: i64,
    sync_timeout: Duration,
}

impl std::fmt::Debug for Route53 {
    // The client's config holds the credentials; show only what locates the zone.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53")
            .field("hosted_zone_id", &self.hosted_zone_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Route53 {
    /// The hosted zone id for `record`: configured, or found by name.
    async fn zone_id(&self, record: &TxtRecord) -> Result<String, DnsError> {
        if let Some(id) = &self.hosted_zone_id {
            return Ok(id.clone());
        }
        let candidates: Vec<&str> = match &record.zone {
            Some(zone) => vec![zone.as_str()],
            // Longest first; a bare top-level domain is no one's hosted zone.
            None => suffixes(&record.fqdn)
                .filter(|name| name.contains('.'))
                .collect(),
        };
        for name in &candidates {
            if let Some(id) = self.public_zone_named(name).await? {
                return Ok(id);
            }
        }
        Err(DnsError::NoZone {
            name: record.fqdn.clone(),
            detail: format!(
                "no public Route 53 hosted zone of these credentials is named {}",
                candidates.join(" or ")
            ),
        })
    }

    /// The id of the public hosted zone called `name`, if there is one.
    async fn public_zone_named(&self, name: &str) -> Result<Option<String>, DnsError> {
        let output = self
            .client
            .list_hosted_zones_by_name()
            .dns_name(name)
            .max_items(10)
            .send()
            .await
            .map_err(|error| sdk_failure(&format!("looking up the hosted zone {name}"), error))?;
        Ok(output
            .hosted_zones()
            .iter()
            .filter(|zone| same_name(zone.name(), name))
            .find(|zone| !zone.config().is_some_and(|config| config.private_zone()))
            .map(|zone| bare_id(zone.id()).to_owned()))
    }

    /// The TXT record set at `fqdn`, if any.
    async fn read_set(
        &self,
        zone_id: &str,
        fqdn: &str,
    ) -> Result<Option<ResourceRecordSet>, DnsError> {
        let output = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(fqdn)
            .start_record_type(RrType::Txt)
            .max_items(1)
            .send()
            .await
            .map_err(|error| {
                sdk_failure(
                    &format!("reading the TXT records at {fqdn} in hosted zone {zone_id}"),
                    error,
                )
            })?;
        let Some(set) = output
            .resource_record_sets()
            .iter()
            .find(|set| same_name(set.name(), fqdn) && *set.r#type() == RrType::Txt)
        else {
            return Ok(None);
        };
        if let Some(identifier) = set.set_identifier() {
            return Err(DnsError::Refused {
                provider: PROVIDER,
                detail: format!(
                    "the TXT records at {fqdn} use a routing policy (set identifier {identifier:?}); only simple record sets can be changed"
                ),
            });
        }
        Ok(Some(set.clone()))
    }

    /// Submits one change to `fqdn` and returns its id and status.
    async fn submit(
        &self,
        zone_id: &str,
        fqdn: &str,
        action: ChangeAction,
        set: ResourceRecordSet,
    ) -> Result<Option<(String, ChangeStatus)>, DnsError> {
        let change = Change::builder()
            .action(action)
            .resource_record_set(set)
            .build()
            .map_err(build_failure)?;
        let batch = ChangeBatch::builder()
            .comment("certfleet dns-01 challenge")
            .changes(change)
            .build()
            .map_err(build_failure)?;
        let output = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|error| {
                sdk_failure(
                    &format!("changing the TXT records at {fqdn} in hosted zone {zone_id}"),
                    error,
                )
            })?;
        Ok(output
            .change_info()
            .map(|info| (info.id().to_owned(), info.status().clone())))
    }

    /// Waits until the change reached every Route 53 name server (`INSYNC`).
    async fn wait_in_sync(&self, change: Option<(String, ChangeStatus)>) -> Result<(), DnsError> {
        let Some((id, mut status)) = change else {
            return Ok(());
        };
        let deadline = Instant::now() + self.sync_timeout;
        let mut pause = SYNC_POLL_FIRST;
        while status != ChangeStatus::Insync {
            let now = Instant::now();
            if now >= deadline {
                return Err(DnsError::Unavailable {
                    provider: PROVIDER,
                    detail: format!(
                        "change {id} was still {} after {} s",
                        status.as_str(),
                        self.sync_timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(SYNC_POLL_MAX);
            let output = self
                .client
                .get_change()
                .id(&id)
                .send()
                .await
                .map_err(|error| sdk_failure(&format!("checking change {id}"), error))?;
            if let Some(info) = output.change_info() {
                status = info.status().clone();
            }
        }
        Ok(())
    }

    fn txt_set(
        &self,
        fqdn: &str,
        ttl: i64,
        values: &[String],
    ) -> Result<ResourceRecordSet, DnsError> {
        let records = values
            .iter()
            .map(|value| {
                ResourceRecord::builder()
                    .value(value)
                    .build()
                    .map_err(build_failure)
            })
            .collect::<Result<Vec<_>, _>>()?;
        ResourceRecordSet::builder()
            .name(format!("{fqdn}."))
            .r#type(RrType::Txt)
            .ttl(ttl)
            .set_resource_records(Some(records))
            .build()
            .map_err(build_failure)
    }
}

/// Writes of one change before giving up when other writers keep undoing it.
const WRITE_TRIES: u32 = 5;

impl Route53 {
    /// Adds the value unless it is there; whether a change was made.
    async fn add_once(&self, zone_id: &str, record: &TxtRecord) -> Result<bool, DnsError> {
        let change = {
            let _guard = super::locks::lock_name(&format!("route53 {zone_id}"), &record.fqdn).await;
            let current = self.read_set(zone_id, &record.fqdn).await?;
            let mut values = current.as_ref().map(raw_values).unwrap_or_default();
            if values.iter().any(|value| unquote(value) == record.value) {
                return Ok(false);
            }
            values.push(quote(&record.value));
            let set = self.txt_set(&record.fqdn, self.ttl, &values)?;
            self.submit(zone_id, &record.fqdn, ChangeAction::Upsert, set)
                .await?
        };
        tracing::debug!(fqdn = %record.fqdn, zone_id, "route53 TXT value added");
        self.wait_in_sync(change).await?;
        Ok(true)
    }

    /// Removes the value if it is there; whether a change was made.
    async fn remove_once(&self, zone_id: &str, record: &TxtRecord) -> Result<bool, DnsError> {
        let change = {
            let _guard = super::locks::lock_name(&format!("route53 {zone_id}"), &record.fqdn).await;
            let Some(current) = self.read_set(zone_id, &record.fqdn).await? else {
                return Ok(false);
            };
            let values = raw_values(&current);
            let rest: Vec<String> = values
                .iter()
                .filter(|value| unquote(value) != record.value)
                .cloned()
                .collect();
            if rest.len() == values.len() {
                return Ok(false);
            }
            if rest.is_empty() {
                // A DELETE must name the set exactly as it is, TTL included.
                self.submit(zone_id, &record.fqdn, ChangeAction::Delete, current)
                    .await?
            } else {
                let ttl = current.ttl().unwrap_or(self.ttl);
                let set = self.txt_set(&record.fqdn, ttl, &rest)?;
                self.submit(zone_id, &record.fqdn, ChangeAction::Upsert, set)
                    .await?
            }
        };
        tracing::debug!(fqdn = %record.fqdn, zone_id, "route53 TXT value removed");
        self.wait_in_sync(change).await?;
        Ok(true)
    }
}

/// Repeats `once` until it finds nothing to change: an UPSERT replaces the
/// whole set, so another process writing the same name between our read and
/// our write can undo our change; reading back shows it.
async fn until_it_holds<F, Fut>(fqdn: &str, mut once: F) -> Result<(), DnsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, DnsError>>,
{
    for attempt in 0..=WRITE_TRIES {
        if !once().await? {
            return Ok(());
        }
        if attempt > 0 {
            tracing::debug!(
                fqdn,
                attempt,
                "another writer changed the set; writing again"
            );
        }
    }
    Err(DnsError::Unavailable {
        provider: "route53",
        detail: format!(
            "the TXT set at {fqdn} kept changing under other writers; {WRITE_TRIES} writes did not hold"
        ),
    })
}

#[async_trait::async_trait]
impl DnsProvider for Route53 {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Route53
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone_id = self.zone_id(record).await?;
        until_it_holds(&record.fqdn, || self.add_once(&zone_id, record)).await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone_id = self.zone_id(record).await?;
        until_it_holds(&record.fqdn, || self.remove_once(&zone_id, record)).await
    }
}

fn raw_values(set: &ResourceRecordSet) -> Vec<String> {
    set.resource_records()
        .iter()
        .map(|record| record.value().to_owned())
        .collect()
}

/// A TXT value in Route 53's zone-file form: one quoted character string.
fn quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The value of a single quoted character string; other forms as they are.
fn unquote(value: &str) -> String {
    match value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(inner) if !inner.contains("\" \"") => {
            inner.replace("\\\"", "\"").replace("\\\\", "\\")
        }
        _ => value.to_owned(),
    }
}

/// Whether Route 53's `name` (trailing dot, maybe upper case) is `expected`.
fn same_name(name: &str, expected: &str) -> bool {
    name.trim_end_matches('.')
        .eq_ignore_ascii_case(expected.trim_end_matches('.'))
}

/// `Z123` from `/hostedzone/Z123`.
fn bare_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// `a.b.c`, `b.c`, `c`.
fn suffixes(name: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(name), |rest| {
        rest.split_once('.').map(|(_, tail)| tail)
    })
}

#[cfg(test)]
mod tests;
