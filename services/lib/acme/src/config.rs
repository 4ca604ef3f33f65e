//! Settings of the issuance engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The CAs in the order they are tried: the default issuer first, then
    /// the fallbacks, used when the one before keeps failing for reasons that
    /// are the CA's (unreachable, 5xx), never the domain's.
    pub issuers: Vec<CaSettings>,
    /// Budgets kept per CA (DESIGN section 6); Let's Encrypt's by default.
    pub rate_limits: RateLimits,
    /// Limit of any single request to the CA.
    pub request_timeout: Duration,
    /// How long to wait for the CA to validate an order or issue a certificate.
    pub order_timeout: Duration,
    pub self_check: SelfCheckConfig,
    /// DNS-01: resolver, propagation timeout and interval, allowed programs.
    pub dns: certfleet_dns::DnsSettings,
}

impl AcmeConfig {
    /// One CA, named [`DEFAULT_ISSUER`] unless its URL is a well-known one.
    pub fn new(directory_url: impl Into<String>) -> AcmeConfig {
        let directory_url = directory_url.into();
        AcmeConfig {
            issuers: vec![CaSettings::new(
                issuer_name_for(&directory_url),
                directory_url,
            )],
            rate_limits: RateLimits::default(),
            request_timeout: Duration::from_secs(30),
            order_timeout: Duration::from_secs(120),
            self_check: SelfCheckConfig::default(),
            dns: certfleet_dns::DnsSettings::default(),
        }
    }

    /// The default issuer: the first CA tried.
    pub fn default_issuer(&self) -> Option<&CaSettings> {
        self.issuers.first()
    }

    /// The configured CA called `name`.
    pub fn issuer(&self, name: &str) -> Option<&CaSettings> {
        self.issuers.iter().find(|issuer| issuer.name == name)
    }

    /// Adds the fallback CAs (`NAME=URL`, a URL or a well-known name), the
    /// roots some of them need (`NAME=PATH`), and budget changes
    /// (`KIND=COUNT/WINDOW`). `fields` name the three settings in errors.
    pub fn configure_issuers(
        &mut self,
        fallbacks: &[String],
        roots: &[String],
        limits: &[String],
        fields: [&str; 3],
    ) -> Result<(), String> {
        let [fallback_field, root_field, limit_field] = fields;
        for value in fallbacks.iter().flat_map(|value| value.split(',')) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let ca = CaSettings::parse(fallback_field, value)?;
            if self.issuer(&ca.name).is_some() {
                return Err(format!(
                    "{fallback_field} {value:?}: the name {} is taken by another CA; name it with NAME=URL",
                    ca.name
                ));
            }
            self.issuers.push(ca);
        }
        for value in roots.iter().flat_map(|value| value.split(',')) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let Some((name, path)) = value.split_once('=') else {
                return Err(format!("{root_field} {value:?}: expected NAME=PATH"));
            };
            let Some(ca) = self.issuers.iter_mut().find(|ca| ca.name == name.trim()) else {
                return Err(format!(
                    "{root_field} {value:?}: no CA is named {:?}",
                    name.trim()
                ));
            };
            ca.ca_root = Some(PathBuf::from(path.trim()));
        }
        for value in limits.iter().flat_map(|value| value.split(',')) {
            let value = value.trim();
            if !value.is_empty() {
                self.rate_limits
                    .set(limit_field, value)
                    .map_err(|error| format!("{error} (in {limit_field} {value:?})"))?;
            }
        }
        Ok(())
    }

    /// Sets the PEM root trusted for the default issuer's HTTPS.
    pub fn with_ca_root(mut self, ca_root: Option<PathBuf>) -> AcmeConfig {
        if let Some(first) = self.issuers.first_mut() {
            first.ca_root = ca_root;
        }
        self
    }
}

/// The name a CA gets when none is given.
pub const DEFAULT_ISSUER: &str = "default";

/// Well-known ACME directories, by the names operators use for them.
pub const WELL_KNOWN_ISSUERS: [(&str, &str); 5] = [
    (
        "letsencrypt",
        "https://acme-v02.api.letsencrypt.org/directory",
    ),
    (
        "letsencrypt-staging",
        "https://acme-staging-v02.api.letsencrypt.org/directory",
    ),
    ("zerossl", "https://acme.zerossl.com/v2/DV90"),
    ("google", "https://dv.acme-v02.api.pki.goog/directory"),
    (
        "google-staging",
        "https://dv.acme-v02.test-api.pki.goog/directory",
    ),
];

/// The well-known name of `directory_url`, else [`DEFAULT_ISSUER`].
pub fn issuer_name_for(directory_url: &str) -> String {
    WELL_KNOWN_ISSUERS
        .iter()
        .find(|(_, url)| *url == directory_url)
        .map_or(DEFAULT_ISSUER, |(name, _)| name)
        .to_owned()
}

/// One CA: its name in configuration and on certificates, its directory, and
/// the root to trust for its HTTPS when it is a private or test CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSettings {
    pub name: String,
    pub directory_url: String,
    pub ca_root: Option<PathBuf>,
}

impl CaSettings {
    pub fn new(name: impl Into<String>, directory_url: impl Into<String>) -> CaSettings {
        CaSettings {
            name: name.into(),
            directory_url: directory_url.into(),
            ca_root: None,
        }
    }

    /// `NAME=URL`, `URL` (named after a well-known URL or its host), or a
    /// well-known name (`letsencrypt`, `letsencrypt-staging`, `zerossl`,
    /// `google`, `google-staging`); `field` names the setting in errors.
    pub fn parse(field: &str, value: &str) -> Result<CaSettings, String> {
        let fail = |reason: &str| Err(format!("{field} {value:?}: {reason}"));
        let (name, url) = match value.split_once('=') {
            Some((name, url)) => (name.trim().to_owned(), url.trim().to_owned()),
            None => match WELL_KNOWN_ISSUERS.iter().find(|(name, _)| *name == value) {
                Some((name, url)) => ((*name).to_owned(), (*url).to_owned()),
                None => {
                    let host = value
                        .strip_prefix("https://")
                        .and_then(|rest| rest.split(['/', ':']).next())
                        .unwrap_or_default();
                    let name = match issuer_name_for(value).as_str() {
                        DEFAULT_ISSUER => host.to_owned(),
                        known => known.to_owned(),
                    };
                    (name, value.to_owned())
                }
            },
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return fail("the name must be letters, digits, '-', '_' or '.'");
        }
        certfleet_core::validate_directory_url("the directory URL", &url)
            .map_err(|error| format!("{field} {value:?}: {error}"))?;
        Ok(CaSettings::new(name, url))
    }

    /// Whether `url` (an order's) belongs to this CA: same scheme, host and port.
    pub fn owns(&self, url: &str) -> bool {
        origin(url).is_some_and(|origin| Some(origin) == self::origin(&self.directory_url))
    }
}

fn origin(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    Some(&url[..8 + end])
}

/// Rate-limit budgets (DESIGN section 6), kept for each CA separately.
/// Renewals inside the CA's ARI window are exempt from all; other renewals
/// from the first two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// New orders per account (organization and CA).
    pub orders_per_account: Budget,
    /// New certificates per registered domain (public-suffix list).
    pub certificates_per_domain: Budget,
    /// New certificates per exact set of names.
    pub certificates_per_name_set: Budget,
    /// Failed authorizations per name per account.
    pub failed_authorizations_per_name: Budget,
}

/// At most `limit` within `window`; a limit of 0 turns the budget off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub window: Duration,
}

impl Budget {
    pub const fn new(limit: u32, window: Duration) -> Budget {
        Budget { limit, window }
    }

    /// `COUNT/WINDOW`, the window as `30s`, `90m`, `3h` or `7d`; `off` turns
    /// it off. `field` names the setting in errors.
    pub fn parse(field: &str, value: &str) -> Result<Budget, String> {
        let fail = || {
            Err(format!(
                "{field} {value:?}: expected COUNT/WINDOW such as 50/7d or 300/3h (s, m, h, d), or off"
            ))
        };
        if value == "off" {
            return Ok(Budget::new(0, Duration::from_secs(1)));
        }
        let Some((count, window)) = value.split_once('/') else {
            return fail();
        };
        let Ok(limit) = count.trim().parse::<u32>() else {
            return fail();
        };
        let Ok(seconds) = certfleet_core::parse_span(window).map(u64::try_from) else {
            return fail();
        };
        match seconds {
            Ok(seconds) => Ok(Budget::new(limit, Duration::from_secs(seconds))),
            Err(_) => fail(),
        }
    }
}

impl Default for RateLimits {
    /// Let's Encrypt's published limits.
    fn default() -> Self {
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        RateLimits {
            orders_per_account: Budget::new(300, Duration::from_secs(3 * HOUR)),
            certificates_per_domain: Budget::new(50, Duration::from_secs(7 * DAY)),
            certificates_per_name_set: Budget::new(5, Duration::from_secs(7 * DAY)),
            failed_authorizations_per_name: Budget::new(5, Duration::from_secs(HOUR)),
        }
    }
}

impl RateLimits {
    /// Sets one budget from `KIND=COUNT/WINDOW` (kinds: orders-per-account,
    /// certificates-per-domain, certificates-per-name-set,
    /// failed-authorizations-per-name), or turns all off with `off`.
    pub fn set(&mut self, field: &str, value: &str) -> Result<(), String> {
        if value.trim() == "off" {
            // A CA without limits of its own (a private CA, a test CA).
            let off = Budget::new(0, Duration::from_secs(1));
            *self = RateLimits {
                orders_per_account: off,
                certificates_per_domain: off,
                certificates_per_name_set: off,
                failed_authorizations_per_name: off,
            };
            return Ok(());
        }
        let Some((kind, budget)) = value.split_once('=') else {
            return Err(format!(
                "{field} {value:?}: expected KIND=COUNT/WINDOW, e.g. certificates-per-domain=50/7d"
            ));
        };
        let budget = Budget::parse(field, budget)?;
        match kind.trim() {
            "orders-per-account" => self.orders_per_account = budget,
            "certificates-per-domain" => self.certificates_per_domain = budget,
            "certificates-per-name-set" => self.certificates_per_name_set = budget,
            "failed-authorizations-per-name" => self.failed_authorizations_per_name = budget,
            other => {
                return Err(format!(
                    "{field} {value:?}: unknown budget {other:?}; one of orders-per-account, certificates-per-domain, certificates-per-name-set, failed-authorizations-per-name"
                ));
            }
        }
        Ok(())
    }
}

/// The check of our own challenge URL before the CA is told to look.
#[derive(Debug, Clone)]
pub struct SelfCheckConfig {
    pub enabled: bool,
    /// Connect here instead of the name's own address on port 80 (a load
    /// balancer, NAT, or a local test CA's HTTP-01 port); the Host header still
    /// carries the name.
    pub connect_addr: Option<SocketAddr>,
    /// How long to keep trying before the attempt fails (retryable).
    pub timeout: Duration,
}

impl Default for SelfCheckConfig {
    fn default() -> Self {
        SelfCheckConfig {
            enabled: true,
            connect_addr: None,
            timeout: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_parse_from_names_and_urls() {
        let named = CaSettings::parse("--fallback-ca", "backup=https://ca.test:14000/dir");
        assert_eq!(
            named,
            Ok(CaSettings::new("backup", "https://ca.test:14000/dir"))
        );
        let known = CaSettings::parse("--fallback-ca", "zerossl");
        assert_eq!(
            known,
            Ok(CaSettings::new(
                "zerossl",
                "https://acme.zerossl.com/v2/DV90"
            ))
        );
        let host = CaSettings::parse("--fallback-ca", "https://acme.example.net/dir");
        assert_eq!(host.map(|ca| ca.name), Ok("acme.example.net".to_owned()));
        let bad = CaSettings::parse("--fallback-ca", "x=http://ca/dir");
        assert!(
            bad.is_err_and(|error| error.contains("--fallback-ca") && error.contains("https://"))
        );
        assert!(CaSettings::parse("--fallback-ca", "a b=https://ca/dir").is_err());
        assert_eq!(
            issuer_name_for("https://acme-v02.api.letsencrypt.org/directory"),
            "letsencrypt"
        );
    }

    #[test]
    fn fallbacks_roots_and_budgets_are_configured_together() {
        let mut config = AcmeConfig::new("https://127.0.0.1:14000/dir");
        let fields = ["--fallback-ca", "--fallback-ca-root", "--rate-limit"];
        config
            .configure_issuers(
                &["second=https://127.0.0.1:15000/dir,zerossl".to_owned()],
                &["second=/tmp/root.pem".to_owned()],
                &["certificates-per-domain=3/1h".to_owned()],
                fields,
            )
            .expect("valid settings");
        let names: Vec<&str> = config.issuers.iter().map(|ca| ca.name.as_str()).collect();
        assert_eq!(names, ["default", "second", "zerossl"]);
        assert_eq!(
            config.issuer("second").and_then(|ca| ca.ca_root.clone()),
            Some(PathBuf::from("/tmp/root.pem"))
        );
        assert_eq!(config.rate_limits.certificates_per_domain.limit, 3);
        let taken = config.clone().configure_issuers(
            &["default=https://x/dir".to_owned()],
            &[],
            &[],
            fields,
        );
        assert!(taken.is_err_and(|error| error.contains("taken")));
        let unknown_root =
            config
                .clone()
                .configure_issuers(&[], &["third=/x".to_owned()], &[], fields);
        assert!(unknown_root.is_err_and(|error| error.contains("--fallback-ca-root")));
    }

    #[test]
    fn orders_belong_to_the_ca_of_their_origin() {
        let ca = CaSettings::new("a", "https://127.0.0.1:14000/dir");
        assert!(ca.owns("https://127.0.0.1:14000/my-order/1"));
        assert!(!ca.owns("https://127.0.0.1:14001/my-order/1"));
        assert!(!ca.owns("https://127.0.0.1:140000/x"));
    }

    #[test]
    fn budgets_parse_and_name_the_setting() {
        assert_eq!(
            Budget::parse("b", "50/7d"),
            Ok(Budget::new(50, Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(
            Budget::parse("b", "300/3h"),
            Ok(Budget::new(300, Duration::from_secs(3 * 3600)))
        );
        assert_eq!(Budget::parse("b", "off").map(|budget| budget.limit), Ok(0));
        for bad in ["", "5", "5/", "x/7d", "5/7w", "5/0d", "-1/7d"] {
            let error = Budget::parse("--rate-limit", bad);
            assert!(
                error
                    .as_ref()
                    .is_err_and(|error| error.contains("--rate-limit")),
                "{bad}: {error:?}"
            );
        }
        let mut limits = RateLimits::default();
        assert_eq!(limits.certificates_per_name_set.limit, 5);
        limits
            .set("--rate-limit", "certificates-per-domain=3/1h")
            .expect("a valid budget");
        assert_eq!(limits.certificates_per_domain.limit, 3);
        assert!(limits.set("--rate-limit", "bogus=3/1h").is_err());
        limits.set("--rate-limit", "off").expect("off");
        assert_eq!(limits.orders_per_account.limit, 0);
        assert_eq!(limits.failed_authorizations_per_name.limit, 0);
    }
}
