//! One provider at work: where a challenge record goes, writing it, waiting
//! until the zone's authoritative servers answer it, and removing it. The
//! issuer and the provider test (`TestDnsProvider`) both go through here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::lookup::{is_suffix, normalize};
use crate::{DnsError, DnsLookup, DnsPolicy, DnsProvider, ProviderConfig, SettingError, TxtRecord};

/// A provider with its configuration and the lookups it needs.
#[derive(Debug, Clone)]
pub struct DnsSolver {
    provider: Arc<dyn DnsProvider>,
    config: ProviderConfig,
    lookup: DnsLookup,
}

/// What a probe did and how long each step took.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub record: TxtRecord,
    pub nameservers: Vec<SocketAddr>,
    pub present_ms: u64,
    pub propagation_ms: u64,
    pub cleanup_ms: u64,
}

impl DnsSolver {
    pub fn new(
        config: ProviderConfig,
        policy: &DnsPolicy,
        lookup: DnsLookup,
    ) -> Result<DnsSolver, SettingError> {
        let provider = crate::providers::build(&config, policy)?;
        Ok(DnsSolver {
            provider,
            config,
            lookup,
        })
    }

    /// With a provider built elsewhere (tests).
    pub fn with_provider(
        provider: Arc<dyn DnsProvider>,
        config: ProviderConfig,
        lookup: DnsLookup,
    ) -> DnsSolver {
        DnsSolver {
            provider,
            config,
            lookup,
        }
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The record that proves control of `domain` (a certificate name; a
    /// wildcard's `*.` is dropped): at `_acme-challenge.DOMAIN` or the end of
    /// its CNAME chain, in the zone from the `zone` setting or the SOA walk.
    pub async fn locate(&self, domain: &str, value: &str) -> Result<TxtRecord, DnsError> {
        let domain = normalize(domain.strip_prefix("*.").unwrap_or(domain));
        let fqdn = self.lookup.challenge_name(&domain).await?;
        let zone = match &self.config.zone {
            Some(zone) if is_suffix(zone, &fqdn) => Some(zone.clone()),
            Some(zone) => {
                return Err(DnsError::NoZone {
                    name: fqdn,
                    detail: format!("it is not inside the provider's zone setting {zone:?}"),
                });
            }
            None => self.lookup.find_zone(&fqdn).await?,
        };
        Ok(TxtRecord {
            fqdn,
            zone,
            value: value.to_owned(),
        })
    }

    pub async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.provider.present(record).await
    }

    pub async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.provider.cleanup(record).await
    }

    /// The servers the propagation check asks: the `nameservers` setting, else
    /// every address of the zone's NS records. Empty when the check is off.
    pub async fn check_servers(&self, record: &TxtRecord) -> Result<Vec<SocketAddr>, DnsError> {
        if !self.config.propagation_check {
            return Ok(Vec::new());
        }
        if !self.config.nameservers.is_empty() {
            return Ok(self.config.nameservers.clone());
        }
        let Some(zone) = &record.zone else {
            return Err(DnsError::NoZone {
                name: record.fqdn.clone(),
                detail: "no SOA record above it, so its name servers are unknown (set the provider's zone or nameservers setting)".to_owned(),
            });
        };
        self.lookup.authoritative_servers(zone).await
    }

    /// Waits until every server of [`check_servers`](Self::check_servers)
    /// answers the value. Returns the servers asked.
    pub async fn wait_propagated(&self, record: &TxtRecord) -> Result<Vec<SocketAddr>, DnsError> {
        let servers = self.check_servers(record).await?;
        if !servers.is_empty() {
            self.lookup.wait_until_served(record, &servers).await?;
        }
        Ok(servers)
    }

    /// Writes a random probe value for `domain`, waits for it, removes it.
    /// The clean-up runs also when the wait fails.
    pub async fn probe(&self, domain: &str) -> Result<ProbeReport, DnsError> {
        let value = format!("certfleet-probe-{:016x}", rand_u64());
        let record = self.locate(domain, &value).await?;
        let started = Instant::now();
        self.present(&record).await?;
        let present_ms = elapsed_ms(started);
        let started = Instant::now();
        let waited = self.wait_propagated(&record).await;
        let propagation_ms = elapsed_ms(started);
        let started = Instant::now();
        let cleaned = self.cleanup(&record).await;
        let cleanup_ms = elapsed_ms(started);
        let nameservers = waited?;
        cleaned?;
        Ok(ProbeReport {
            record,
            nameservers,
            present_ms,
            propagation_ms,
            cleanup_ms,
        })
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn rand_u64() -> u64 {
    let mut bytes = [0_u8; 8];
    // A probe value need not be secret; fall back to the clock if the RNG fails.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
    }
    u64::from_le_bytes(bytes)
}
