//! RFC 2136 dynamic update, TSIG-signed: adds or removes one TXT value with
//! one UPDATE sent to the zone's primary name server (BIND, Knot, PowerDNS,
//! Windows DNS).
//!
//! Adding is an "add to an RRset" update and removing a "delete an RR from an
//! RRset" update: both leave other values at the name alone and both are
//! idempotent on the server, so no read-modify-write is needed.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use hickory_net::NetError;
use hickory_net::client::{Client, ClientHandle as _};
use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::rdata::TXT;
use hickory_net::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_net::proto::rr::{Name, RData, Record, RecordSet, TSigner};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;

use crate::settings::Settings;
use crate::{DnsError, DnsProvider, ProviderConfig, ProviderKind, SettingError, TxtRecord};

const PROVIDER: &str = "rfc2136";
/// How long one update may take, retransmissions included.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted difference between our clock and the server's (the usual value).
const TSIG_FUDGE_SECONDS: u16 = 300;
const ALGORITHMS: [(&str, TsigAlgorithm); 3] = [
    ("hmac-sha256", TsigAlgorithm::HmacSha256),
    ("hmac-sha384", TsigAlgorithm::HmacSha384),
    ("hmac-sha512", TsigAlgorithm::HmacSha512),
];

/// Sends TSIG-signed dynamic updates to one name server.
pub struct Rfc2136 {
    server: SocketAddr,
    /// `None`: updates go unsigned (a server that allows updates by address).
    signer: Option<TSigner>,
    ttl: u32,
    zone: Option<String>,
}

impl std::fmt::Debug for Rfc2136 {
    // The signer holds the secret; only its key name is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136")
            .field("server", &self.server)
            .field(
                "tsig_key",
                &self
                    .signer
                    .as_ref()
                    .map(|signer| signer.signer_name().to_string()),
            )
            .field("ttl", &self.ttl)
            .field("zone", &self.zone)
            .finish()
    }
}

impl Rfc2136 {
    pub fn from_config(config: &ProviderConfig) -> Result<Rfc2136, SettingError> {
        let settings = &config.settings;
        let server = settings.required(
            "server",
            "(the primary name server's IP address, with an optional port)",
        )?;
        let server = settings.socket_addr("server", server, 53)?;
        let signer = signer(settings)?;
        let ttl = settings.number("ttl", 60, 1, 86_400)?;
        Ok(Rfc2136 {
            server,
            signer,
            // At most 86 400: fits.
            ttl: u32::try_from(ttl).unwrap_or(60),
            zone: config.zone.clone(),
        })
    }

    /// The zone to update and the names as DNS names, checked to fit.
    fn names(&self, record: &TxtRecord) -> Result<(Name, Name), DnsError> {
        let Some(zone) = record.zone.as_deref().or(self.zone.as_deref()) else {
            return Err(DnsError::NoZone {
                name: record.fqdn.clone(),
                detail:
                    "the rfc2136 provider needs its zone setting, or a zone found by the SOA lookup"
                        .to_owned(),
            });
        };
        let fqdn = absolute_name(&record.fqdn)?;
        let zone_name = absolute_name(zone)?;
        // hickory's update builders panic on a name outside the zone.
        if !zone_name.zone_of(&fqdn) {
            return Err(DnsError::NoZone {
                name: record.fqdn.clone(),
                detail: format!("the name is not inside the zone {zone}"),
            });
        }
        Ok((fqdn, zone_name))
    }

    fn rrset(&self, fqdn: Name, value: &str) -> Result<RecordSet, DnsError> {
        // One character-string holds at most 255 bytes; ACME values are 43.
        if value.len() > 255 {
            return Err(DnsError::Config(format!(
                "the TXT value at {fqdn} is {} bytes long, more than the 255 one update can carry",
                value.len()
            )));
        }
        let rdata = RData::TXT(TXT::new(vec![value.to_owned()]));
        Ok(RecordSet::from(Record::from_rdata(fqdn, self.ttl, rdata)))
    }

    async fn update(&self, change: Change, record: &TxtRecord) -> Result<(), DnsError> {
        let (fqdn, zone) = self.names(record)?;
        let rrset = self.rrset(fqdn, &record.value)?;
        let stream = UdpClientStream::builder(self.server, TokioRuntimeProvider::default())
            .with_timeout(Some(UPDATE_TIMEOUT))
            .with_signer(self.signer.clone())
            .build();
        let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        let background = tokio::spawn(background);
        let sent = match change {
            Change::Add => {
                tokio::time::timeout(UPDATE_TIMEOUT, client.append(rrset, zone, false)).await
            }
            Change::Remove => {
                tokio::time::timeout(UPDATE_TIMEOUT, client.delete_by_rdata(rrset, zone)).await
            }
        };
        drop(client);
        background.abort();
        let answer = match sent {
            Ok(Ok(response)) => response.response_code,
            Ok(Err(error)) => return Err(self.transport_error(&error)),
            Err(_) => return Err(self.no_answer()),
        };
        tracing::debug!(
            provider = PROVIDER,
            server = %self.server,
            fqdn = %record.fqdn,
            change = change.as_str(),
            rcode = %answer,
            "dynamic update answered"
        );
        answer_to_result(answer, &record.fqdn)
    }

    fn no_answer(&self) -> DnsError {
        DnsError::Unavailable {
            provider: PROVIDER,
            detail: format!(
                "no answer from {} within {} s",
                self.server,
                UPDATE_TIMEOUT.as_secs()
            ),
        }
    }

    /// A failure before a usable answer. An answer that fails the TSIG check
    /// is how a rejected key shows: servers send BADKEY/BADSIG unsigned.
    fn transport_error(&self, error: &NetError) -> DnsError {
        let server = self.server;
        match error {
            NetError::Timeout => self.no_answer(),
            NetError::Proto(inner)
                if self.signer.is_some()
                    && inner.to_string().to_ascii_lowercase().contains("tsig") =>
            {
                DnsError::Refused {
                    provider: PROVIDER,
                    detail: format!(
                        "the name server {server} rejected the TSIG key or secret (its answer was not signed with them; check settings.tsig_key, settings.tsig_algorithm and settings.tsig_secret)"
                    ),
                }
            }
            other => DnsError::Unavailable {
                provider: PROVIDER,
                detail: format!("sending the update to {server} failed: {other}"),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Add,
    Remove,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Add => "add",
            Change::Remove => "remove",
        }
    }
}

#[async_trait::async_trait]
impl DnsProvider for Rfc2136 {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Rfc2136
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(Change::Add, record).await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(Change::Remove, record).await
    }
}

/// The TSIG signer from `tsig_key`, `tsig_algorithm` and `tsig_secret`.
fn signer(settings: &Settings) -> Result<Option<TSigner>, SettingError> {
    let key = settings.optional("tsig_key");
    let secret = settings.optional("tsig_secret");
    let algorithm = tsig_algorithm(settings)?;
    let (key, secret) = match (key, secret) {
        (None, None) => return Ok(None),
        (Some(key), Some(secret)) => (key, secret),
        (Some(_), None) => {
            return Err(SettingError::missing(
                &Settings::field("tsig_secret"),
                "when settings.tsig_key is set",
            ));
        }
        (None, Some(_)) => {
            return Err(SettingError::missing(
                &Settings::field("tsig_key"),
                "when settings.tsig_secret is set",
            ));
        }
    };
    let key_field = Settings::field("tsig_key");
    let key_name = crate::settings::dns_name(&key_field, key).and_then(|name| {
        Name::from_ascii(format!("{name}."))
            .map_err(|_| SettingError::new(&key_field, key, "is not a DNS name"))
    })?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .map_err(|_| SettingError::secret(&Settings::field("tsig_secret"), "is not base64"))?;
    if secret.is_empty() {
        return Err(SettingError::secret(
            &Settings::field("tsig_secret"),
            "is empty",
        ));
    }
    TSigner::new(secret, algorithm, key_name, TSIG_FUDGE_SECONDS)
        .map(Some)
        .map_err(|error| SettingError {
            field: Settings::field("tsig_algorithm"),
            message: format!("cannot be used: {error}"),
        })
}

fn tsig_algorithm(settings: &Settings) -> Result<TsigAlgorithm, SettingError> {
    let Some(value) = settings.optional("tsig_algorithm") else {
        return Ok(TsigAlgorithm::HmacSha256);
    };
    let wanted = value.trim_end_matches('.').to_ascii_lowercase();
    ALGORITHMS
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, algorithm)| algorithm.clone())
        .ok_or_else(|| {
            SettingError::new(
                &Settings::field("tsig_algorithm"),
                value,
                format!(
                    "is not a TSIG algorithm this provider supports (one of {})",
                    ALGORITHMS.map(|(name, _)| name).join(", ")
                ),
            )
        })
}

/// `name.` as a DNS name.
fn absolute_name(name: &str) -> Result<Name, DnsError> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|_| DnsError::Config(format!("{name:?} is not a DNS name")))
}

/// What the server's response code means for the change.
fn answer_to_result(code: ResponseCode, fqdn: &str) -> Result<(), DnsError> {
    let refused = |detail: String| {
        Err(DnsError::Refused {
            provider: PROVIDER,
            detail,
        })
    };
    let tsig = |name: &str| {
        refused(format!(
            "the server rejected the TSIG key or secret ({name})"
        ))
    };
    match code {
        ResponseCode::NoError => Ok(()),
        ResponseCode::ServFail => Err(DnsError::Unavailable {
            provider: PROVIDER,
            detail: format!("the server failed while updating {fqdn} (SERVFAIL)"),
        }),
        ResponseCode::Refused => refused(format!(
            "the server refused the update of {fqdn} (REFUSED): the TSIG key may not change this name, or the zone takes no updates"
        )),
        ResponseCode::NotAuth => refused(format!(
            "the server is not authoritative for the zone of {fqdn} or did not accept the TSIG key (NOTAUTH)"
        )),
        ResponseCode::NotZone => refused(format!("{fqdn} is not inside the zone named in the update (NOTZONE)")),
        ResponseCode::NotImp => refused("the server does not support dynamic updates (NOTIMP)".to_owned()),
        ResponseCode::FormErr => refused("the server could not read the update (FORMERR)".to_owned()),
        ResponseCode::NXDomain | ResponseCode::YXDomain | ResponseCode::YXRRSet | ResponseCode::NXRRSet => {
            refused(format!("a condition of the update of {fqdn} failed ({})", code.to_str()))
        }
        ResponseCode::BADSIG => tsig("BADSIG"),
        ResponseCode::BADKEY => tsig("BADKEY"),
        ResponseCode::BADALG => tsig("BADALG"),
        ResponseCode::BADTRUNC => tsig("BADTRUNC"),
        ResponseCode::BADTIME => refused(
            "the server rejected the TSIG signature's time; check that both clocks are right (BADTIME)".to_owned(),
        ),
        ResponseCode::BADVERS
        | ResponseCode::BADMODE
        | ResponseCode::BADNAME
        | ResponseCode::BADCOOKIE
        | ResponseCode::Unknown(_) => refused(format!(
            "the server answered the update of {fqdn} with response code {} ({})",
            u16::from(code),
            code.to_str()
        )),
    }
}

#[cfg(test)]
mod tests;
