//! Finding where a challenge record goes and waiting until it is served:
//! CNAME delegation of `_acme-challenge`, zone discovery by walking SOA
//! records, the zone's authoritative servers from its NS records, and the
//! propagation check that asks each of them directly.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::{DnsResponse, ResponseCode};
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;

use crate::{DnsError, TxtRecord};

/// A chain of CNAMEs longer than this is refused (a loop or a mistake).
const MAX_CNAME_HOPS: usize = 8;

/// How names are looked up and how long a record may take to be served.
#[derive(Debug, Clone)]
pub struct LookupConfig {
    /// The recursive resolver for CNAME, SOA, NS and address lookups.
    pub resolver: SocketAddr,
    /// Give up when not every authoritative server answers the value by then.
    pub propagation_timeout: Duration,
    /// Pause between two rounds of asking the servers that do not have it yet.
    pub propagation_interval: Duration,
    /// Limit of one DNS query.
    pub query_timeout: Duration,
}

impl LookupConfig {
    /// Defaults: 120 s propagation timeout, 2 s interval, 3 s per query.
    pub fn new(resolver: SocketAddr) -> LookupConfig {
        LookupConfig {
            resolver,
            propagation_timeout: Duration::from_secs(120),
            propagation_interval: Duration::from_secs(2),
            query_timeout: Duration::from_secs(3),
        }
    }
}

/// The first `nameserver` of `/etc/resolv.conf`, else 127.0.0.1:53.
pub fn system_resolver() -> SocketAddr {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("nameserver"))
                    .then(|| words.next())
                    .flatten()
                    .and_then(|address| address.parse::<IpAddr>().ok())
            })
        })
        .map_or_else(
            || SocketAddr::from(([127, 0, 0, 1], 53)),
            |ip| SocketAddr::new(ip, 53),
        )
}

/// Looks names up and checks propagation.
#[derive(Debug, Clone)]
pub struct DnsLookup {
    config: LookupConfig,
}

impl DnsLookup {
    pub fn new(config: LookupConfig) -> DnsLookup {
        DnsLookup { config }
    }

    pub fn config(&self) -> &LookupConfig {
        &self.config
    }

    /// Where the challenge record of `domain` (a name of the certificate,
    /// wildcard label removed) is written: `_acme-challenge.DOMAIN`, or the end
    /// of the CNAME chain that starts there.
    pub async fn challenge_name(&self, domain: &str) -> Result<String, DnsError> {
        let mut name = format!("_acme-challenge.{}", normalize(domain));
        let mut seen = BTreeSet::new();
        for _ in 0..=MAX_CNAME_HOPS {
            if !seen.insert(name.clone()) {
                return Err(lookup_error(&name, "CNAME", "the CNAME chain loops"));
            }
            let response = self
                .query(self.config.resolver, &name, RecordType::CNAME)
                .await?;
            let target = response
                .answers
                .iter()
                .find_map(|record| match &record.data {
                    RData::CNAME(target) if same_name(&record.name, &name) => {
                        Some(normalize(&target.0.to_ascii()))
                    }
                    _ => None,
                });
            match target {
                Some(target) => {
                    tracing::debug!(from = %name, to = %target, "following the challenge CNAME");
                    name = target;
                }
                None => return Ok(name),
            }
        }
        Err(lookup_error(
            &name,
            "CNAME",
            format!("more than {MAX_CNAME_HOPS} CNAMEs in a row"),
        ))
    }

    /// The zone that holds `fqdn`, found by asking for SOA records from the
    /// name up; `None` when only the root answers (the name is in no zone the
    /// resolver knows).
    pub async fn find_zone(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        let mut name = normalize(fqdn);
        loop {
            if name.is_empty() {
                return Ok(None);
            }
            let response = self
                .query(self.config.resolver, &name, RecordType::SOA)
                .await?;
            let owner = response
                .answers
                .iter()
                .chain(response.authorities.iter())
                .find(|record| matches!(record.data, RData::SOA(_)))
                .map(|record| normalize(&record.name.to_ascii()));
            match owner {
                Some(zone) if zone.is_empty() => return Ok(None),
                Some(zone) if is_suffix(&zone, &name) => return Ok(Some(zone)),
                _ => {}
            }
            name = match name.split_once('.') {
                Some((_, parent)) => parent.to_owned(),
                None => String::new(),
            };
        }
    }

    /// Every address of every name server in the zone's NS records, port 53.
    pub async fn authoritative_servers(&self, zone: &str) -> Result<Vec<SocketAddr>, DnsError> {
        let response = self
            .query(self.config.resolver, zone, RecordType::NS)
            .await?;
        let hosts: Vec<String> = response
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::NS(host) => Some(normalize(&host.0.to_ascii())),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return Err(lookup_error(zone, "NS", "the zone has no NS records"));
        }
        let mut servers = BTreeSet::new();
        for host in &hosts {
            for record_type in [RecordType::A, RecordType::AAAA] {
                let answer = self.query(self.config.resolver, host, record_type).await?;
                for record in &answer.answers {
                    match &record.data {
                        RData::A(ip) => servers.insert(SocketAddr::new(IpAddr::V4(ip.0), 53)),
                        RData::AAAA(ip) => servers.insert(SocketAddr::new(IpAddr::V6(ip.0), 53)),
                        _ => false,
                    };
                }
            }
        }
        if servers.is_empty() {
            return Err(lookup_error(
                zone,
                "NS",
                format!(
                    "no address found for its name servers ({})",
                    hosts.join(", ")
                ),
            ));
        }
        Ok(servers.into_iter().collect())
    }

    /// Waits until every server in `servers` answers `record.value` among the
    /// TXT values at `record.fqdn`. Asks at once, then every interval, only
    /// the servers that did not have it yet; no fixed sleep.
    pub async fn wait_until_served(
        &self,
        record: &TxtRecord,
        servers: &[SocketAddr],
    ) -> Result<(), DnsError> {
        let started = Instant::now();
        let mut missing: Vec<SocketAddr> = servers.to_vec();
        let mut round = 0_u32;
        loop {
            let mut still = Vec::new();
            for server in missing {
                match self.serves(server, record).await {
                    Ok(true) => {}
                    Ok(false) => still.push(server),
                    Err(error) => {
                        tracing::debug!(%server, %error, name = %record.fqdn, "name server did not answer");
                        still.push(server);
                    }
                }
            }
            missing = still;
            if missing.is_empty() {
                tracing::debug!(name = %record.fqdn, rounds = round + 1, elapsed_ms = started.elapsed().as_millis() as u64, "every authoritative server answers the value");
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= self.config.propagation_timeout {
                return Err(DnsError::NotPropagated {
                    name: record.fqdn.clone(),
                    value: record.value.clone(),
                    waited_s: waited.as_secs(),
                    missing: list(&missing),
                });
            }
            round += 1;
            if round == 1 || round.is_multiple_of(5) {
                tracing::info!(name = %record.fqdn, waiting_for = %list(&missing), elapsed_s = waited.as_secs(), timeout_s = self.config.propagation_timeout.as_secs(), "waiting for the TXT record to reach every authoritative name server");
            }
            let left = self.config.propagation_timeout.saturating_sub(waited);
            tokio::time::sleep(self.config.propagation_interval.min(left)).await;
        }
    }

    /// Whether `server` answers `record.value` at `record.fqdn`.
    pub async fn serves(&self, server: SocketAddr, record: &TxtRecord) -> Result<bool, DnsError> {
        Ok(self
            .txt_values(server, &record.fqdn)
            .await?
            .contains(&record.value))
    }

    /// The TXT values `server` answers at `fqdn` (strings of a value joined).
    pub async fn txt_values(
        &self,
        server: SocketAddr,
        fqdn: &str,
    ) -> Result<Vec<String>, DnsError> {
        let response = self.query(server, fqdn, RecordType::TXT).await?;
        Ok(response
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) if same_name(&record.name, fqdn) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// One query over UDP. NXDOMAIN and empty answers are answers; SERVFAIL,
    /// REFUSED and timeouts are errors.
    async fn query(
        &self,
        server: SocketAddr,
        name: &str,
        record_type: RecordType,
    ) -> Result<DnsResponse, DnsError> {
        let type_name = record_type_name(record_type);
        let fqdn = Name::from_ascii(format!("{}.", normalize(name)))
            .map_err(|error| lookup_error(name, type_name, format!("not a DNS name: {error}")))?;
        let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
            .with_timeout(Some(self.config.query_timeout))
            .build();
        let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        let background = tokio::spawn(background);
        let answer = tokio::time::timeout(
            self.config.query_timeout + Duration::from_millis(500),
            client.query(fqdn, DNSClass::IN, record_type),
        )
        .await;
        background.abort();
        // A resolver that does not answer is a setting to check.
        let hint = if server == self.config.resolver {
            "; is dns_resolver (CERTFLEET_DNS_RESOLVER) a resolver that answers from here?"
        } else {
            ""
        };
        let response = match answer {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                return Err(lookup_error(
                    name,
                    type_name,
                    format!("{error} (asking {server}){hint}"),
                ));
            }
            Err(_) => {
                return Err(lookup_error(
                    name,
                    type_name,
                    format!(
                        "no answer from {server} within {} s{hint}",
                        self.config.query_timeout.as_secs()
                    ),
                ));
            }
        };
        match response.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(response),
            code => Err(lookup_error(
                name,
                type_name,
                format!("{server} answered {code}"),
            )),
        }
    }
}

fn record_type_name(record_type: RecordType) -> &'static str {
    match record_type {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::CNAME => "CNAME",
        RecordType::NS => "NS",
        RecordType::SOA => "SOA",
        RecordType::TXT => "TXT",
        _ => "other",
    }
}

fn lookup_error(name: &str, record_type: &'static str, detail: impl std::fmt::Display) -> DnsError {
    DnsError::Lookup {
        name: name.to_owned(),
        record_type,
        detail: detail.to_string(),
    }
}

/// Lower case, no trailing dot.
pub fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn same_name(record_name: &Name, name: &str) -> bool {
    normalize(&record_name.to_ascii()) == normalize(name)
}

/// Whether `zone` is `name` or one of its parents.
pub(crate) fn is_suffix(zone: &str, name: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

fn list(servers: &[SocketAddr]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert!(is_suffix("example.test", "example.test"));
        assert!(is_suffix("example.test", "_acme-challenge.example.test"));
        assert!(!is_suffix("ample.test", "example.test"));
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize("Example.TEST."), "example.test");
    }
}
