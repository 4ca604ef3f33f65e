//! Provider settings: what each kind accepts, which values are secrets, and
//! checks that name the setting and the value when something is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The kinds of DNS provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// RFC 2136 dynamic update, TSIG-signed (BIND, Knot, Windows DNS, …).
    Rfc2136,
    /// The PowerDNS Authoritative HTTP API.
    Pdns,
    /// Amazon Route 53.
    Route53,
    /// Cloudflare API v4.
    Cloudflare,
    /// An operator's program: `PROGRAM present|cleanup FQDN VALUE`.
    Exec,
    /// An HTTP POST signed with HMAC-SHA256.
    Webhook,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 6] = [
        ProviderKind::Rfc2136,
        ProviderKind::Pdns,
        ProviderKind::Route53,
        ProviderKind::Cloudflare,
        ProviderKind::Exec,
        ProviderKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Rfc2136 => "rfc2136",
            ProviderKind::Pdns => "pdns",
            ProviderKind::Route53 => "route53",
            ProviderKind::Cloudflare => "cloudflare",
            ProviderKind::Exec => "exec",
            ProviderKind::Webhook => "webhook",
        }
    }

    /// Parses a kind; `field` names it in the error.
    pub fn parse(field: &str, value: &str) -> Result<ProviderKind, SettingError> {
        let lower = value.trim().to_ascii_lowercase();
        ProviderKind::ALL
            .into_iter()
            .find(|kind| {
                kind.as_str() == lower || (lower == "powerdns" && *kind == ProviderKind::Pdns)
            })
            .ok_or_else(|| {
                SettingError::new(
                    field,
                    value,
                    format!(
                        "is not a DNS provider kind (one of {})",
                        ProviderKind::ALL.map(ProviderKind::as_str).join(", ")
                    ),
                )
            })
    }

    /// Whether one value is added or removed atomically on the server
    /// (RFC 2136 updates, Cloudflare records). The others read a whole set
    /// and write it back (PowerDNS, Route 53) or do what an operator's program
    /// does, so concurrent writers of one name must be serialized.
    pub fn changes_single_values(self) -> bool {
        matches!(self, ProviderKind::Rfc2136 | ProviderKind::Cloudflare)
    }

    /// The settings of this kind (besides the common ones), secrets marked.
    pub fn keys(self) -> &'static [(&'static str, Secrecy)] {
        use Secrecy::{Plain, Secret};
        match self {
            ProviderKind::Rfc2136 => &[
                ("server", Plain),
                ("tsig_key", Plain),
                ("tsig_algorithm", Plain),
                ("tsig_secret", Secret),
                ("ttl", Plain),
            ],
            ProviderKind::Pdns => &[
                ("api_url", Plain),
                ("api_key", Secret),
                ("server_id", Plain),
                ("ttl", Plain),
            ],
            ProviderKind::Route53 => &[
                ("access_key_id", Plain),
                ("secret_access_key", Secret),
                ("session_token", Secret),
                ("region", Plain),
                ("endpoint_url", Plain),
                ("hosted_zone_id", Plain),
                ("ttl", Plain),
            ],
            ProviderKind::Cloudflare => &[
                ("api_token", Secret),
                ("api_url", Plain),
                ("zone_id", Plain),
                ("ttl", Plain),
            ],
            ProviderKind::Exec => &[("program", Plain), ("timeout_seconds", Plain)],
            ProviderKind::Webhook => &[
                ("url", Plain),
                ("hmac_secret", Secret),
                ("timeout_seconds", Plain),
            ],
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a setting is stored sealed and never shown again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    Plain,
    Secret,
}

/// Settings every kind accepts.
pub const COMMON_KEYS: [&str; 3] = ["zone", "nameservers", "propagation_check"];

/// What the operator allows tenants to configure.
#[derive(Debug, Clone, Default)]
pub struct DnsPolicy {
    /// Programs an `exec` provider may run (absolute paths). Empty: `exec` is
    /// refused. A tenant must not be able to run an arbitrary program on a
    /// worker.
    pub exec_programs: Vec<PathBuf>,
}

/// A setting that is missing or wrong; names the setting and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingError {
    pub field: String,
    pub message: String,
}

impl SettingError {
    /// `field: "value" problem`. Secret values are never echoed: use [`secret`](Self::secret).
    pub fn new(field: &str, value: &str, problem: impl std::fmt::Display) -> SettingError {
        SettingError {
            field: field.to_owned(),
            message: format!("{value:?} {problem}"),
        }
    }

    /// A problem with a secret setting; the value is not repeated.
    pub fn secret(field: &str, problem: impl std::fmt::Display) -> SettingError {
        SettingError {
            field: field.to_owned(),
            message: format!("(secret value) {problem}"),
        }
    }

    pub fn missing(field: &str, why: &str) -> SettingError {
        SettingError {
            field: field.to_owned(),
            message: format!("is required {why}"),
        }
    }
}

/// The settings of one provider, plain and secret, as given. Keys are named
/// `settings.KEY` in errors.
#[derive(Clone, Default)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Settings {
    pub fn new(values: BTreeMap<String, String>) -> Settings {
        Settings { values }
    }

    pub fn field(key: &str) -> String {
        format!("settings.{key}")
    }

    /// The value, trimmed; `None` when absent or blank.
    pub fn optional(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    pub fn required(&self, key: &str, why: &str) -> Result<&str, SettingError> {
        self.optional(key)
            .ok_or_else(|| SettingError::missing(&Settings::field(key), why))
    }

    /// An `http://` or `https://` URL with a host.
    pub fn url(&self, key: &str, value: &str) -> Result<String, SettingError> {
        let field = Settings::field(key);
        let rest = value
            .strip_prefix("https://")
            .or_else(|| value.strip_prefix("http://"))
            .ok_or_else(|| SettingError::new(&field, value, "is not an http:// or https:// URL"))?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty()
            || host.contains(char::is_whitespace)
            || value.contains(char::is_whitespace)
        {
            return Err(SettingError::new(&field, value, "is not a valid URL"));
        }
        Ok(value.trim_end_matches('/').to_owned())
    }

    /// A whole number in `min..=max`, or `default` when absent.
    pub fn number(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64, SettingError> {
        let Some(value) = self.optional(key) else {
            return Ok(default);
        };
        match value.parse::<u64>() {
            Ok(number) if (min..=max).contains(&number) => Ok(number),
            _ => Err(SettingError::new(
                &Settings::field(key),
                value,
                format!("is not a whole number from {min} to {max}"),
            )),
        }
    }

    /// `true`/`false` (also yes/no, 1/0, on/off), or `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, SettingError> {
        let Some(value) = self.optional(key) else {
            return Ok(default);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            _ => Err(SettingError::new(
                &Settings::field(key),
                value,
                "is not true or false",
            )),
        }
    }

    /// `host:port` or `host` (then `default_port`); the host an IP address.
    pub fn socket_addr(
        &self,
        key: &str,
        value: &str,
        default_port: u16,
    ) -> Result<SocketAddr, SettingError> {
        parse_socket_addr(value, default_port)
            .ok_or_else(|| SettingError::new(&Settings::field(key), value, "is not an IP address with an optional port (192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53)"))
    }
}

/// `1.2.3.4`, `1.2.3.4:53`, `2001:db8::1`, `[2001:db8::1]:53`.
pub fn parse_socket_addr(value: &str, default_port: u16) -> Option<SocketAddr> {
    let value = value.trim();
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Some(addr);
    }
    value
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

/// A lower-case DNS name without its trailing dot, or an error naming `field`.
pub fn dns_name(field: &str, value: &str) -> Result<String, SettingError> {
    let name = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(name)
    } else {
        Err(SettingError::new(field, value, "is not a DNS name"))
    }
}

/// A provider's checked configuration: its kind, the common settings, and
/// the kind's own settings (secrets included, kept apart from plain ones).
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// The zone to write in, instead of the SOA walk's answer.
    pub zone: Option<String>,
    /// Check propagation on these servers instead of the zone's NS records.
    pub nameservers: Vec<SocketAddr>,
    /// Whether to wait for the authoritative name servers (default true).
    /// Off only where they cannot be queried from the workers (split DNS).
    pub propagation_check: bool,
    /// Every setting as given (plain and secret); the kind reads its own.
    pub settings: Settings,
}

impl ProviderConfig {
    /// Checks `values` for `kind` under the operator's `policy`. Unknown keys
    /// are refused (a typo must not silently fall back to a default).
    pub fn parse(
        kind: ProviderKind,
        values: BTreeMap<String, String>,
        policy: &DnsPolicy,
    ) -> Result<ProviderConfig, SettingError> {
        for key in values.keys() {
            let known = COMMON_KEYS.contains(&key.as_str())
                || kind.keys().iter().any(|(name, _)| name == key);
            if !known {
                let mut accepted: Vec<&str> = COMMON_KEYS.to_vec();
                accepted.extend(kind.keys().iter().map(|(name, _)| *name));
                return Err(SettingError {
                    field: Settings::field(key),
                    message: format!(
                        "is not a setting of the {kind} provider (accepted: {})",
                        accepted.join(", ")
                    ),
                });
            }
        }
        let settings = Settings::new(values);
        let zone = settings
            .optional("zone")
            .map(|zone| dns_name(&Settings::field("zone"), zone))
            .transpose()?;
        let nameservers = match settings.optional("nameservers") {
            None => Vec::new(),
            Some(list) => list
                .split([',', ' '])
                .filter(|item| !item.is_empty())
                .map(|item| settings.socket_addr("nameservers", item, 53))
                .collect::<Result<_, _>>()?,
        };
        let propagation_check = settings.flag("propagation_check", true)?;
        let config = ProviderConfig {
            kind,
            zone,
            nameservers,
            propagation_check,
            settings,
        };
        // Each kind checks its own settings now, so a bad one is refused at
        // creation, not at the first issuance.
        crate::providers::check(&config, policy)?;
        Ok(config)
    }

    /// Rebuilds a stored provider: its plain settings (a JSON object) and the
    /// opened secret ones (a JSON object), checked again under `policy`.
    pub fn from_stored(
        kind: &str,
        settings_json: &str,
        secrets_json: Option<&[u8]>,
        policy: &DnsPolicy,
    ) -> Result<ProviderConfig, SettingError> {
        let kind = ProviderKind::parse("kind", kind)?;
        let stored = |field: &str, error: serde_json::Error| SettingError {
            field: field.to_owned(),
            message: format!("the stored value cannot be read: {error}"),
        };
        let mut values: BTreeMap<String, String> =
            serde_json::from_str(settings_json).map_err(|error| stored("settings", error))?;
        if let Some(secrets) = secrets_json {
            let secrets: BTreeMap<String, String> = serde_json::from_slice(secrets)
                .map_err(|error| stored("secret settings", error))?;
            values.extend(secrets);
        }
        ProviderConfig::parse(kind, values, policy)
    }

    /// Splits the settings into plain (shown) and secret (sealed, never shown).
    pub fn split(&self) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let mut plain = BTreeMap::new();
        let mut secret = BTreeMap::new();
        for (key, value) in &self.settings.values {
            let is_secret = self
                .kind
                .keys()
                .iter()
                .any(|(name, secrecy)| name == key && *secrecy == Secrecy::Secret);
            if is_secret {
                secret.insert(key.clone(), value.clone());
            } else {
                plain.insert(key.clone(), value.clone());
            }
        }
        (plain, secret)
    }
}
