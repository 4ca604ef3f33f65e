//! The settings of the distributed roles, read once at start-up: an optional
//! TOML file (`--config`), overridden by `CERTFLEET_*` environment variables,
//! overridden by flags; then validated for the role, naming the setting at fault.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use certfleet_acme::SelfCheckConfig;
use certfleet_dns::{DnsPolicy, DnsSettings, LookupConfig};
use serde::Deserialize;

use certfleet_archive::{ArchiveConfig, ArchiveError, S3Access};

use crate::vault::{KmsSettings, MasterKeySource, VaultKeySource, VaultProvider, kms_config};

/// Where new certificates come from when no CA is configured.
const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The distributed roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Issuer,
    Scheduler,
    Responder,
    Notifier,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Issuer => "issuer",
            Role::Scheduler => "scheduler",
            Role::Responder => "responder",
            Role::Notifier => "notifier",
        }
    }

    fn needs_broker(self) -> bool {
        !matches!(self, Role::Responder)
    }

    fn needs_master_key(self) -> bool {
        // The notifier opens channel secrets (SMTP passwords, webhook secrets).
        matches!(self, Role::Api | Role::Issuer | Role::Notifier)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Every setting, each optional: the file's contents, or what the
/// environment and flags give. Keys of the file are the flags' names with `_`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database_url: Option<String>,
    pub database_pool_size: Option<usize>,
    pub amqp_url: Option<String>,
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    /// Earlier master key files, still opened during a key rotation.
    pub previous_master_key_files: Option<Vec<PathBuf>>,
    /// `local` (the master key) or `aws-kms`.
    pub vault_provider: Option<VaultProvider>,
    pub kms_key_id: Option<String>,
    pub kms_region: Option<String>,
    pub kms_endpoint_url: Option<String>,
    pub kms_access_key_id: Option<String>,
    pub kms_secret_access_key: Option<String>,
    pub kms_session_token: Option<String>,
    pub ca_directory: Option<String>,
    pub ca_root: Option<PathBuf>,
    /// CAs tried in order after the default one (`NAME=URL` or a well-known name).
    pub fallback_cas: Option<Vec<String>>,
    /// `NAME=PATH`: extra roots of fallback CAs.
    pub fallback_ca_roots: Option<Vec<String>>,
    /// `KIND=COUNT/WINDOW`: rate-limit budgets changed from Let's Encrypt's.
    pub rate_limits: Option<Vec<String>>,
    pub grpc_listen: Option<SocketAddr>,
    pub grpc_tls_cert: Option<PathBuf>,
    pub grpc_tls_key: Option<PathBuf>,
    pub grpc_tls_client_ca: Option<PathBuf>,
    pub http01_listen: Option<SocketAddr>,
    pub health_listen: Option<SocketAddr>,
    pub issuer_concurrency: Option<usize>,
    /// Seconds.
    pub scheduler_interval: Option<u64>,
    pub http01_self_check: Option<bool>,
    pub http01_self_check_addr: Option<SocketAddr>,
    /// Seconds.
    pub http01_self_check_timeout: Option<u64>,
    /// An IP address with an optional port (53 by default).
    pub dns_resolver: Option<String>,
    /// Seconds.
    pub dns_propagation_timeout: Option<u64>,
    /// Seconds.
    pub dns_propagation_interval: Option<u64>,
    pub dns_exec_programs: Option<Vec<PathBuf>>,
    /// A folder or `s3://BUCKET/PREFIX` (the issuer's copies).
    pub archive_location: Option<String>,
    pub archive_s3_region: Option<String>,
    pub archive_s3_endpoint_url: Option<String>,
    pub archive_s3_path_style: Option<bool>,
    pub archive_s3_access_key_id: Option<String>,
    pub archive_s3_secret_access_key: Option<String>,
    pub archive_s3_session_token: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
}

macro_rules! override_fields {
    ($base:ident, $over:ident, $($field:ident),+) => {
        Settings { $($field: $over.$field.or($base.$field)),+ }
    };
}

impl Settings {
    /// `self` with every setting `over` gives replaced.
    pub fn overridden_by(self, over: Settings) -> Settings {
        let base = self;
        override_fields!(
            base,
            over,
            database_url,
            database_pool_size,
            amqp_url,
            master_key,
            master_key_file,
            previous_master_key_files,
            vault_provider,
            kms_key_id,
            kms_region,
            kms_endpoint_url,
            kms_access_key_id,
            kms_secret_access_key,
            kms_session_token,
            ca_directory,
            ca_root,
            fallback_cas,
            fallback_ca_roots,
            rate_limits,
            grpc_listen,
            grpc_tls_cert,
            grpc_tls_key,
            grpc_tls_client_ca,
            http01_listen,
            health_listen,
            issuer_concurrency,
            scheduler_interval,
            http01_self_check,
            http01_self_check_addr,
            http01_self_check_timeout,
            dns_resolver,
            dns_propagation_timeout,
            dns_propagation_interval,
            dns_exec_programs,
            archive_location,
            archive_s3_region,
            archive_s3_endpoint_url,
            archive_s3_path_style,
            archive_s3_access_key_id,
            archive_s3_secret_access_key,
            archive_s3_session_token,
            log,
            log_format
        )
    }

    /// Reads a TOML file of settings.
    pub fn from_file(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing the config file {}", path.display()))
    }
}

/// The validated settings of one role process.
#[derive(Clone)]
pub struct RoleConfig {
    pub role: Role,
    /// `<role>-<hostname>-<uuid>`: names this process in leases and outbox
    /// claims; a new one per start.
    pub instance_id: String,
    pub database_url: String,
    pub database_pool_size: usize,
    /// Set for every role but the responder.
    pub amqp_url: Option<String>,
    /// The key wrapping sealed secrets; set for the api and the issuer.
    pub vault_key: Option<VaultKeySource>,
    /// Earlier master key files whose blobs still open (key rotation).
    pub previous_master_key_files: Vec<PathBuf>,
    pub ca_directory: String,
    pub ca_root: Option<PathBuf>,
    pub fallback_cas: Vec<String>,
    pub fallback_ca_roots: Vec<String>,
    pub rate_limits: Vec<String>,
    pub grpc_listen: SocketAddr,
    pub grpc_tls: Option<(PathBuf, PathBuf)>,
    /// PEM CA certificates of the clients; set only with `grpc_tls`.
    pub grpc_tls_client_ca: Option<PathBuf>,
    pub http01_listen: SocketAddr,
    pub health_listen: Option<SocketAddr>,
    pub issuer_concurrency: u16,
    pub scheduler_interval: Duration,
    pub self_check: SelfCheckConfig,
    /// DNS-01 for the api (checking and testing providers) and the issuer.
    pub dns: DnsSettings,
    /// Where the issuer writes copies of issued versions; none without.
    pub archive: Option<ArchiveConfig>,
    pub log: String,
    pub log_format: LogFormat,
}

impl std::fmt::Debug for RoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleConfig")
            .field("role", &self.role)
            .field("instance_id", &self.instance_id)
            .field("vault_key", &self.vault_key)
            .field("ca_directory", &self.ca_directory)
            .field("grpc_listen", &self.grpc_listen)
            .field("http01_listen", &self.http01_listen)
            .field("health_listen", &self.health_listen)
            .field("issuer_concurrency", &self.issuer_concurrency)
            .field("scheduler_interval", &self.scheduler_interval)
            .field("dns", &self.dns)
            .finish_non_exhaustive()
    }
}

impl RoleConfig {
    /// The settings of `file` (when given) overridden by `given` (environment
    /// and flags), validated for `role`.
    pub fn load(role: Role, file: Option<&Path>, given: Settings) -> anyhow::Result<RoleConfig> {
        let from_file = match file {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        RoleConfig::validate(role, from_file.overridden_by(given))
    }

    /// Checks `settings` for `role` and fills in the defaults.
    pub fn validate(role: Role, settings: Settings) -> anyhow::Result<RoleConfig> {
        // Only the issuer writes copies.
        let archive = match role {
            Role::Issuer => archive_config(&settings)?,
            _ => None,
        };
        let Some(database_url) = settings.database_url else {
            bail!(
                "database_url is not set: give --database-url, CERTFLEET_DATABASE_URL or database_url in the config file (postgres://user:password@host/database)"
            );
        };
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            bail!(
                "database_url (CERTFLEET_DATABASE_URL) must be a PostgreSQL URL (postgres://…): the distributed roles share one database; SQLite is only for `certfleet dev` and `certfleet server`"
            );
        }
        let database_pool_size = settings
            .database_pool_size
            .unwrap_or(certfleet_store::DEFAULT_POOL_SIZE);
        if database_pool_size == 0 {
            bail!("database_pool_size (CERTFLEET_DATABASE_POOL_SIZE) must be at least 1");
        }
        let amqp_url = match settings.amqp_url {
            Some(url) if url.starts_with("amqp://") => Some(url),
            // This build has no TLS for AMQP: refusing beats connecting in clear text.
            Some(url) if url.starts_with("amqps://") => bail!(
                "amqp_url (CERTFLEET_AMQP_URL): amqps:// is not supported by this build; use amqp:// on a trusted network or a TLS tunnel to the broker"
            ),
            Some(_) => bail!(
                "amqp_url (CERTFLEET_AMQP_URL) must be an AMQP URL: amqp://user:password@host:5672/vhost"
            ),
            None if role.needs_broker() => bail!(
                "amqp_url is not set: the {} needs RabbitMQ; give --amqp-url, CERTFLEET_AMQP_URL or amqp_url in the config file",
                role.name()
            ),
            None => None,
        };
        let vault_key = match settings.vault_provider.unwrap_or_default() {
            // Only the roles that seal need (and check) the KMS settings.
            VaultProvider::AwsKms if role.needs_master_key() => {
                Some(VaultKeySource::AwsKms(kms_config(KmsSettings {
                    key_id: settings.kms_key_id,
                    region: settings.kms_region,
                    endpoint_url: settings.kms_endpoint_url,
                    access_key_id: settings.kms_access_key_id,
                    secret_access_key: settings.kms_secret_access_key,
                    session_token: settings.kms_session_token,
                })?))
            }
            VaultProvider::AwsKms => None,
            VaultProvider::Local => match (settings.master_key, settings.master_key_file) {
                (Some(key), _) if !key.trim().is_empty() => {
                    Some(VaultKeySource::Local(MasterKeySource::Inline(key)))
                }
                (_, Some(path)) => Some(VaultKeySource::Local(MasterKeySource::File(path))),
                _ if role.needs_master_key() => bail!(
                    "no master key: the {} needs CERTFLEET_MASTER_KEY (base64) or CERTFLEET_MASTER_KEY_FILE (or vault_provider = aws-kms with the kms_* settings); the distributed roles never generate one (create it once, e.g. with `certfleet dev`, and give the same key to every api and issuer)",
                    role.name()
                ),
                _ => None,
            },
        };
        let ca_directory = settings
            .ca_directory
            .unwrap_or_else(|| LETS_ENCRYPT.to_owned());
        if !(ca_directory.starts_with("https://") || ca_directory.starts_with("http://")) {
            bail!("ca_directory (CERTFLEET_CA_DIRECTORY) must be an http(s) URL: {ca_directory}");
        }
        let grpc_tls = match (settings.grpc_tls_cert, settings.grpc_tls_key) {
            (Some(certificate), Some(key)) => Some((certificate, key)),
            (None, None) => None,
            _ => bail!(
                "grpc_tls_cert and grpc_tls_key (CERTFLEET_GRPC_TLS_CERT, CERTFLEET_GRPC_TLS_KEY) go together"
            ),
        };
        if grpc_tls.is_none()
            && let Some(client_ca) = &settings.grpc_tls_client_ca
        {
            bail!(
                "grpc_tls_client_ca (CERTFLEET_GRPC_TLS_CLIENT_CA) {} needs grpc_tls_cert and grpc_tls_key: client certificates are only checked over TLS",
                client_ca.display()
            );
        }
        let concurrency = settings.issuer_concurrency.unwrap_or(32);
        let issuer_concurrency = u16::try_from(concurrency)
            .ok()
            .filter(|concurrency| *concurrency > 0)
            .with_context(|| {
                format!("issuer_concurrency (CERTFLEET_ISSUER_CONCURRENCY) must be between 1 and 65535, not {concurrency}")
            })?;
        let interval = settings.scheduler_interval.unwrap_or(30);
        if interval == 0 {
            bail!("scheduler_interval (CERTFLEET_SCHEDULER_INTERVAL) must be at least 1 second");
        }
        let self_check_timeout = settings.http01_self_check_timeout.unwrap_or(30);
        if self_check_timeout == 0 {
            bail!(
                "http01_self_check_timeout (CERTFLEET_HTTP01_SELF_CHECK_TIMEOUT) must be at least 1 second"
            );
        }
        let dns = dns_settings(
            settings.dns_resolver.as_deref(),
            settings.dns_propagation_timeout,
            settings.dns_propagation_interval,
            settings.dns_exec_programs.unwrap_or_default(),
        )?;
        let log = settings.log.unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log)
            .with_context(|| format!("log (CERTFLEET_LOG): invalid filter {log:?}"))?;
        Ok(RoleConfig {
            role,
            instance_id: instance_id(role),
            database_url,
            database_pool_size,
            amqp_url,
            vault_key,
            previous_master_key_files: settings.previous_master_key_files.unwrap_or_default(),
            ca_directory,
            ca_root: settings.ca_root,
            fallback_cas: settings.fallback_cas.unwrap_or_default(),
            fallback_ca_roots: settings.fallback_ca_roots.unwrap_or_default(),
            rate_limits: settings.rate_limits.unwrap_or_default(),
            grpc_listen: settings
                .grpc_listen
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 50051))),
            grpc_tls,
            grpc_tls_client_ca: settings.grpc_tls_client_ca,
            http01_listen: settings
                .http01_listen
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 80))),
            health_listen: settings.health_listen,
            issuer_concurrency,
            scheduler_interval: Duration::from_secs(interval),
            self_check: SelfCheckConfig {
                enabled: settings.http01_self_check.unwrap_or(true),
                connect_addr: settings.http01_self_check_addr,
                timeout: Duration::from_secs(self_check_timeout),
            },
            dns,
            archive,
            log,
            log_format: settings.log_format.unwrap_or_default(),
        })
    }
}

/// The archive settings, checked without I/O; errors name the setting.
fn archive_config(settings: &Settings) -> anyhow::Result<Option<ArchiveConfig>> {
    let Some(location) = settings
        .archive_location
        .as_deref()
        .map(str::trim)
        .filter(|location| !location.is_empty() && !location.eq_ignore_ascii_case("none"))
    else {
        return Ok(None);
    };
    let access = S3Access {
        region: settings
            .archive_s3_region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_owned()),
        endpoint_url: settings
            .archive_s3_endpoint_url
            .clone()
            .filter(|url| !url.trim().is_empty()),
        path_style: settings.archive_s3_path_style.unwrap_or(false),
        access_key_id: settings
            .archive_s3_access_key_id
            .clone()
            .unwrap_or_default(),
        secret_access_key: settings
            .archive_s3_secret_access_key
            .clone()
            .unwrap_or_default()
            .into(),
        session_token: settings
            .archive_s3_session_token
            .clone()
            .filter(|token| !token.is_empty())
            .map(Into::into),
    };
    match ArchiveConfig::from_location(location, Some(&access)) {
        Ok(config) => Ok(Some(config)),
        Err(ArchiveError::Setting { setting, message }) => bail!(
            "{setting} (CERTFLEET_{}): {message}",
            setting.to_ascii_uppercase()
        ),
        Err(other) => Err(other.into()),
    }
}

/// The DNS-01 settings, checked: the resolver an IP address with an optional
/// port (the system's when unset), both durations at least 1 second, every
/// exec program an absolute path.
fn dns_settings(
    resolver: Option<&str>,
    propagation_timeout: Option<u64>,
    propagation_interval: Option<u64>,
    exec_programs: Vec<PathBuf>,
) -> anyhow::Result<DnsSettings> {
    let resolver = match resolver {
        Some(value) => parse_resolver(value).with_context(|| {
            format!("dns_resolver (CERTFLEET_DNS_RESOLVER) must be an IP address with an optional port (192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53), not {value:?}")
        })?,
        None => certfleet_dns::lookup::system_resolver(),
    };
    let mut lookup = LookupConfig::new(resolver);
    let timeout = propagation_timeout.unwrap_or(lookup.propagation_timeout.as_secs());
    if timeout == 0 {
        bail!(
            "dns_propagation_timeout (CERTFLEET_DNS_PROPAGATION_TIMEOUT) must be at least 1 second"
        );
    }
    let interval = propagation_interval.unwrap_or(lookup.propagation_interval.as_secs());
    if interval == 0 {
        bail!(
            "dns_propagation_interval (CERTFLEET_DNS_PROPAGATION_INTERVAL) must be at least 1 second"
        );
    }
    lookup.propagation_timeout = Duration::from_secs(timeout);
    lookup.propagation_interval = Duration::from_secs(interval);
    if let Some(relative) = exec_programs.iter().find(|path| !path.is_absolute()) {
        bail!(
            "dns_exec_programs (CERTFLEET_DNS_EXEC_PROGRAMS): {:?} is not an absolute path",
            relative.display().to_string()
        );
    }
    Ok(DnsSettings {
        policy: DnsPolicy { exec_programs },
        lookup,
    })
}

/// `192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or `[2001:db8::53]:53`.
fn parse_resolver(value: &str) -> Option<SocketAddr> {
    let value = value.trim();
    value.parse::<SocketAddr>().ok().or_else(|| {
        value
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// `<role>-<hostname>-<uuid>`: unique per process, readable in leases.
fn instance_id(role: Role) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{}-{hostname}-{}", role.name(), uuid::Uuid::new_v4())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn minimal() -> Settings {
        Settings {
            database_url: Some("postgres://certfleet@127.0.0.1/certfleet".to_owned()),
            amqp_url: Some("amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
            master_key_file: Some(PathBuf::from("/etc/certfleet/master.key")),
            ..Settings::default()
        }
    }

    #[test]
    fn defaults_fill_in() {
        let config = RoleConfig::validate(Role::Issuer, minimal()).unwrap();
        assert_eq!(config.issuer_concurrency, 32);
        assert_eq!(config.database_pool_size, 16);
        assert_eq!(config.scheduler_interval, Duration::from_secs(30));
        assert!(config.instance_id.starts_with("issuer-"));
        assert_ne!(config.instance_id, instance_id(Role::Issuer));
    }

    #[test]
    fn the_notifier_needs_the_broker_and_the_master_key() {
        assert!(RoleConfig::validate(Role::Notifier, minimal()).is_ok());
        let error = RoleConfig::validate(
            Role::Notifier,
            Settings {
                amqp_url: None,
                ..minimal()
            },
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("the notifier needs RabbitMQ"),
            "{error}"
        );
        let error = RoleConfig::validate(
            Role::Notifier,
            Settings {
                master_key_file: None,
                ..minimal()
            },
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("no master key: the notifier"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_database_pool_is_refused_by_name() {
        let settings = Settings {
            database_pool_size: Some(0),
            ..minimal()
        };
        let error = RoleConfig::validate(Role::Scheduler, settings).unwrap_err();
        assert!(error.to_string().contains("database_pool_size"), "{error}");
        let settings = Settings {
            database_pool_size: Some(4),
            ..minimal()
        };
        let config = RoleConfig::validate(Role::Scheduler, settings).unwrap();
        assert_eq!(config.database_pool_size, 4);
    }

    #[test]
    fn dns_settings_default_and_are_checked_by_name() {
        let config = RoleConfig::validate(Role::Api, minimal()).unwrap();
        assert_eq!(
            config.dns.lookup.resolver,
            certfleet_dns::lookup::system_resolver()
        );
        assert_eq!(
            config.dns.lookup.propagation_timeout,
            Duration::from_secs(120)
        );
        assert_eq!(
            config.dns.lookup.propagation_interval,
            Duration::from_secs(2)
        );
        assert!(config.dns.policy.exec_programs.is_empty());

        let settings = Settings {
            dns_resolver: Some("[2001:db8::53]:5353".to_owned()),
            dns_propagation_timeout: Some(300),
            dns_propagation_interval: Some(5),
            dns_exec_programs: Some(vec![PathBuf::from("/usr/local/bin/dns-hook")]),
            ..minimal()
        };
        let config = RoleConfig::validate(Role::Issuer, settings).unwrap();
        assert_eq!(
            config.dns.lookup.resolver.to_string(),
            "[2001:db8::53]:5353"
        );
        assert_eq!(
            config.dns.lookup.propagation_timeout,
            Duration::from_secs(300)
        );
        assert_eq!(
            config.dns.policy.exec_programs,
            vec![PathBuf::from("/usr/local/bin/dns-hook")]
        );
        let settings = Settings {
            dns_resolver: Some("192.0.2.53".to_owned()),
            ..minimal()
        };
        let config = RoleConfig::validate(Role::Api, settings).unwrap();
        assert_eq!(config.dns.lookup.resolver.to_string(), "192.0.2.53:53");

        let bad = [
            (
                Settings {
                    dns_resolver: Some("dns.example.com".to_owned()),
                    ..minimal()
                },
                "dns_resolver (CERTFLEET_DNS_RESOLVER) must be an IP address with an optional port (192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53), not \"dns.example.com\"",
            ),
            (
                Settings {
                    dns_propagation_timeout: Some(0),
                    ..minimal()
                },
                "dns_propagation_timeout",
            ),
            (
                Settings {
                    dns_propagation_interval: Some(0),
                    ..minimal()
                },
                "dns_propagation_interval",
            ),
            (
                Settings {
                    dns_exec_programs: Some(vec![PathBuf::from("dns-hook")]),
                    ..minimal()
                },
                "dns_exec_programs (CERTFLEET_DNS_EXEC_PROGRAMS): \"dns-hook\" is not an absolute path",
            ),
        ];
        for (settings, expected) in bad {
            let error = format!(
                "{:#}",
                RoleConfig::validate(Role::Issuer, settings).unwrap_err()
            );
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn dns_settings_come_from_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("certfleet.toml");
        std::fs::write(
            &path,
            "dns_resolver = \"127.0.0.1:5353\"\ndns_propagation_timeout = 30\ndns_propagation_interval = 1\ndns_exec_programs = [\"/opt/hooks/a\", \"/opt/hooks/b\"]\n",
        )
        .unwrap();
        let config = RoleConfig::load(Role::Issuer, Some(&path), minimal()).unwrap();
        assert_eq!(config.dns.lookup.resolver.to_string(), "127.0.0.1:5353");
        assert_eq!(
            config.dns.lookup.propagation_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(
            config.dns.lookup.propagation_interval,
            Duration::from_secs(1)
        );
        assert_eq!(config.dns.policy.exec_programs.len(), 2);
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../deploy/systemd/certfleet.toml.example");
        let config = RoleConfig::load(Role::Issuer, Some(&path), minimal()).unwrap();
        assert_eq!(
            config.dns.lookup.propagation_timeout,
            Duration::from_secs(120)
        );
    }

    #[test]
    fn sqlite_is_refused_by_name() {
        let settings = Settings {
            database_url: Some("sqlite:///tmp/certfleet.db".to_owned()),
            ..minimal()
        };
        let error = RoleConfig::validate(Role::Api, settings).unwrap_err();
        assert!(error.to_string().contains("database_url"), "{error}");
    }

    #[test]
    fn the_master_key_is_required_where_keys_are_sealed() {
        let settings = Settings {
            master_key_file: None,
            ..minimal()
        };
        let error = RoleConfig::validate(Role::Issuer, settings.clone()).unwrap_err();
        assert!(
            error.to_string().contains("CERTFLEET_MASTER_KEY"),
            "{error}"
        );
        assert!(RoleConfig::validate(Role::Scheduler, settings).is_ok());
    }

    #[test]
    fn aws_kms_replaces_the_master_key() {
        let kms = Settings {
            master_key_file: None,
            vault_provider: Some(VaultProvider::AwsKms),
            kms_key_id: Some("alias/certfleet".to_owned()),
            kms_access_key_id: Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
            kms_secret_access_key: Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned()),
            ..minimal()
        };
        let config = RoleConfig::validate(Role::Issuer, kms.clone()).unwrap();
        let Some(VaultKeySource::AwsKms(aws)) = &config.vault_key else {
            panic!("not aws-kms: {config:?}");
        };
        assert_eq!(aws.key_id, "alias/certfleet");
        assert_eq!(aws.region, "us-east-1");
        assert_eq!(aws.endpoint_url, None);
        let shown = format!("{config:?}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        // The scheduler seals nothing: no KMS settings needed.
        let scheduler = Settings {
            kms_key_id: None,
            ..kms.clone()
        };
        assert!(
            RoleConfig::validate(Role::Scheduler, scheduler)
                .unwrap()
                .vault_key
                .is_none()
        );

        let bad = [
            (
                Settings {
                    kms_key_id: None,
                    ..kms.clone()
                },
                "kms_key_id (CERTFLEET_KMS_KEY_ID): is required",
            ),
            (
                Settings {
                    kms_region: Some("EU West".to_owned()),
                    ..kms.clone()
                },
                "kms_region (CERTFLEET_KMS_REGION)",
            ),
            (
                Settings {
                    kms_endpoint_url: Some("moto:5000".to_owned()),
                    ..kms.clone()
                },
                "kms_endpoint_url (CERTFLEET_KMS_ENDPOINT_URL)",
            ),
            (
                Settings {
                    kms_access_key_id: None,
                    ..kms.clone()
                },
                "kms_access_key_id (CERTFLEET_KMS_ACCESS_KEY_ID)",
            ),
            (
                Settings {
                    kms_secret_access_key: Some("secret with spaces".to_owned()),
                    ..kms.clone()
                },
                "kms_secret_access_key (CERTFLEET_KMS_SECRET_ACCESS_KEY)",
            ),
        ];
        for (settings, expected) in bad {
            let error = format!(
                "{:#}",
                RoleConfig::validate(Role::Api, settings).unwrap_err()
            );
            assert!(error.contains(expected), "{expected}: {error}");
            assert!(!error.contains("with spaces"), "{error}");
        }
    }

    #[test]
    fn the_vault_settings_come_from_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("certfleet.toml");
        std::fs::write(
            &path,
            "vault_provider = \"aws-kms\"\nkms_key_id = \"alias/certfleet\"\nkms_region = \"eu-west-1\"\nkms_endpoint_url = \"http://127.0.0.1:5000\"\n",
        )
        .unwrap();
        let given = Settings {
            kms_access_key_id: Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
            kms_secret_access_key: Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned()),
            ..minimal()
        };
        let config = RoleConfig::load(Role::Api, Some(&path), given).unwrap();
        let Some(VaultKeySource::AwsKms(aws)) = &config.vault_key else {
            panic!("not aws-kms: {config:?}");
        };
        assert_eq!(aws.region, "eu-west-1");
        assert_eq!(aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));

        std::fs::write(&path, "vault_provider = \"vault\"\n").unwrap();
        let error = RoleConfig::load(Role::Api, Some(&path), minimal()).unwrap_err();
        assert!(format!("{error:#}").contains("vault_provider"), "{error:#}");
    }

    #[test]
    fn the_broker_is_optional_only_for_the_responder() {
        let settings = Settings {
            amqp_url: None,
            ..minimal()
        };
        assert!(RoleConfig::validate(Role::Responder, settings.clone()).is_ok());
        let error = RoleConfig::validate(Role::Scheduler, settings).unwrap_err();
        assert!(error.to_string().contains("amqp_url"), "{error}");
    }

    #[test]
    fn amqps_is_refused_rather_than_sent_in_clear_text() {
        let settings = Settings {
            amqp_url: Some("amqps://guest:guest@broker.example:5671/%2f".to_owned()),
            ..minimal()
        };
        let error = RoleConfig::validate(Role::Issuer, settings).unwrap_err();
        assert!(error.to_string().contains("amqps://"), "{error}");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("certfleet.toml");
        std::fs::write(
            &path,
            "database_url = \"postgres://file/db\"\nissuer_concurrency = 8\nlog_format = \"json\"\n",
        )
        .unwrap();
        let given = Settings {
            database_url: Some("postgres://env/db".to_owned()),
            ..minimal()
        };
        let config = RoleConfig::load(Role::Issuer, Some(&path), given).unwrap();
        assert_eq!(config.database_url, "postgres://env/db");
        assert_eq!(config.issuer_concurrency, 8);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn the_client_ca_needs_the_tls_certificate_and_key() {
        let alone = Settings {
            grpc_tls_client_ca: Some(PathBuf::from("/etc/certfleet/clients-ca.pem")),
            ..minimal()
        };
        let error = RoleConfig::validate(Role::Api, alone.clone()).unwrap_err();
        let text = error.to_string();
        for named in [
            "grpc_tls_client_ca",
            "CERTFLEET_GRPC_TLS_CLIENT_CA",
            "/etc/certfleet/clients-ca.pem",
            "grpc_tls_cert",
            "grpc_tls_key",
        ] {
            assert!(text.contains(named), "{named}: {text}");
        }
        let with_tls = Settings {
            grpc_tls_cert: Some(PathBuf::from("/etc/certfleet/api.pem")),
            grpc_tls_key: Some(PathBuf::from("/etc/certfleet/api-key.pem")),
            ..alone
        };
        let config = RoleConfig::validate(Role::Api, with_tls).unwrap();
        assert_eq!(
            config.grpc_tls_client_ca.as_deref(),
            Some(Path::new("/etc/certfleet/clients-ca.pem"))
        );
    }

    #[test]
    fn the_client_ca_comes_from_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("certfleet.toml");
        std::fs::write(
            &path,
            "grpc_tls_cert = \"/etc/certfleet/api.pem\"\ngrpc_tls_key = \"/etc/certfleet/api-key.pem\"\ngrpc_tls_client_ca = \"/etc/certfleet/clients-ca.pem\"\n",
        )
        .unwrap();
        let config = RoleConfig::load(Role::Api, Some(&path), minimal()).unwrap();
        assert_eq!(
            config.grpc_tls_client_ca.as_deref(),
            Some(Path::new("/etc/certfleet/clients-ca.pem"))
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("certfleet.toml");
        std::fs::write(&path, "databse_url = \"postgres://x/y\"\n").unwrap();
        let error = RoleConfig::load(Role::Api, Some(&path), minimal()).unwrap_err();
        assert!(format!("{error:#}").contains("databse_url"), "{error:#}");
    }
}
