//! Command-line and environment settings, read once at start-up. Every setting
//! is a flag with a `CERTFLEET_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use certfleet_dns::{DnsPolicy, DnsSettings, LookupConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::dns::DnsCommand;
use crate::embedded::EmbeddedConfig;

/// TLS certificates from ACME CAs for every domain of every organization.
///
/// `certfleet dev` runs everything in one process on SQLite. `migrate`,
/// `vault`, `renew-due`, `backup` and `restore` work on the database
/// directly; the other commands talk to a running certfleet over gRPC.
#[derive(Debug, Parser)]
#[command(name = "certfleet", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Log format of `dev` and `server`.
    #[arg(
        long,
        global = true,
        env = "CERTFLEET_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Log filter of `dev` and `server`: a level (`debug`) or per-module
    /// directives (`info,certfleet_acme=debug`).
    #[arg(long, global = true, env = "CERTFLEET_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the vault's wrapping key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VaultProvider {
    /// The local master key.
    Local,
    /// An AWS KMS key.
    AwsKms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// How client commands reach certfleet.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// gRPC endpoint of certfleet.
    #[arg(
        long,
        global = true,
        env = "CERTFLEET_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// PEM CA certificate to trust for an `https://` endpoint, besides the system's roots.
    #[arg(long, global = true, env = "CERTFLEET_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate sent to an `https://` endpoint that requires one
    /// (mutual TLS); with --client-key.
    #[arg(long, global = true, env = "CERTFLEET_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, env = "CERTFLEET_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
    /// Bearer token (an organization token, or the admin token for `org` and
    /// `token`; an agent token may run `org list`).
    #[arg(long, global = true, env = "CERTFLEET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, global = true, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process on SQLite, for a laptop or a single host.
    /// Creates the data dir, a master key and an admin token on first start.
    Dev(ServerArgs),
    /// Like `dev`, for production: requires an existing master key.
    Server(ServerArgs),
    /// Apply database migrations and exit.
    Migrate(MigrateArgs),
    /// Organizations (needs the admin token).
    #[command(subcommand)]
    Org(OrgCommand),
    /// API tokens (needs the admin token).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Certificates of the token's organization.
    #[command(subcommand)]
    Cert(CertCommand),
    /// DNS providers of the token's organization: where certfleet writes the
    /// TXT records of DNS-01 challenges (needed for wildcard names).
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Notification channels of the token's organization: email and
    /// webhooks told when certificates are about to expire or fail to renew.
    #[command(subcommand)]
    Notify(crate::notify::NotifyCommand),
    /// The audit log: who changed what and downloaded which key, from where
    /// (needs the admin token).
    Audit(crate::audit::AuditArgs),
    /// The key that wraps stored private keys: rotate it (`vault rewrap`).
    /// Works on the database directly, like `migrate`.
    #[command(subcommand)]
    Vault(crate::vault::VaultCommand),
    /// The certificates due for renewal now, and why; without --dry-run,
    /// queue their renewals at once (the scheduler does the same on its
    /// next pass).
    ///
    /// Lists one line per certificate: id, primary name and the reason
    /// (renewal time passed, or expired). These are exactly the certificates
    /// the scheduler renews: valid or expired, auto-renewing, not deleted,
    /// whose renewal time has come. Works on the database directly (the
    /// SQLite file in --data-dir or --database-url), like `migrate`; the
    /// running certfleet sends the queued jobs.
    RenewDue(crate::renew::RenewDueArgs),
    /// The archive of issued certificates: check that it can rebuild the
    /// database (`backup verify`). Works on the database directly.
    #[command(subcommand)]
    Backup(crate::backup::BackupCommand),
    /// Rebuild a database from the archive after losing it: organizations,
    /// certificates and every version with its sealed private key.
    ///
    /// Reads every copy in --from, checks its files and opens its key with
    /// the vault key (the master key or KMS key of the lost installation),
    /// and writes each certificate with its versions in one transaction. A
    /// copy that is incomplete, altered or whose key does not match is
    /// named and skipped; the rest is restored (exit status 1 then).
    /// Refuses a database that already holds organizations unless --merge.
    /// Not in the archive, so not restored: API tokens, DNS providers and
    /// ACME accounts (a new account is registered on the next order).
    Restore(crate::backup::RestoreArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Folder for the SQLite database, the master key, the admin token and the lock.
    #[arg(long, env = "CERTFLEET_DATA_DIR", default_value = "./certfleet-data")]
    pub data_dir: PathBuf,
    /// Database URL; defaults to SQLite in the data dir. `postgres://…` for PostgreSQL.
    #[arg(long, env = "CERTFLEET_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Address of the gRPC API.
    #[arg(long, env = "CERTFLEET_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    /// PEM certificate (chain) of the gRPC API; with --grpc-tls-key the API
    /// speaks TLS only. Without them it is plaintext: keep it on loopback.
    #[arg(long, env = "CERTFLEET_GRPC_TLS_CERT", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// PEM private key of the gRPC API's certificate.
    #[arg(long, env = "CERTFLEET_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): the API then requires a client certificate
    /// signed by one (mutual TLS, on top of the bearer token). Needs
    /// --grpc-tls-cert and --grpc-tls-key.
    #[arg(long, env = "CERTFLEET_GRPC_TLS_CLIENT_CA", requires_all = ["grpc_tls_cert", "grpc_tls_key"])]
    pub grpc_tls_client_ca: Option<PathBuf>,
    /// Address of the HTTP-01 responder; the CA connects to port 80 of each name,
    /// so production needs port 80 routed here. Default: 127.0.0.1:5002 for `dev`
    /// (Pebble's default), 0.0.0.0:80 for `server`.
    #[arg(long, env = "CERTFLEET_HTTP01_LISTEN")]
    pub http01_listen: Option<SocketAddr>,
    /// Self-check connects here instead of the name's own address on port 80.
    #[arg(long, env = "CERTFLEET_HTTP01_SELF_CHECK_ADDR")]
    pub http01_self_check_addr: Option<SocketAddr>,
    /// Skip the self-check of challenge URLs before the CA is asked to validate.
    #[arg(
        long,
        env = "CERTFLEET_HTTP01_NO_SELF_CHECK",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub http01_no_self_check: bool,
    /// Seconds the self-check keeps trying before the attempt fails (and is retried later).
    #[arg(
        long,
        env = "CERTFLEET_HTTP01_SELF_CHECK_TIMEOUT",
        default_value_t = 30
    )]
    pub http01_self_check_timeout: u64,
    /// ACME directory URL. Default: Pebble's local directory for `dev`, Let's Encrypt for `server`.
    #[arg(long, env = "CERTFLEET_CA_DIRECTORY")]
    pub ca_directory: Option<String>,
    /// Extra PEM root to trust for the CA's HTTPS (a private or test CA), besides the system's roots.
    #[arg(long, env = "CERTFLEET_CA_ROOT")]
    pub ca_root: Option<PathBuf>,
    /// A CA to try, in the order given, when the one before keeps failing for
    /// reasons that are the CA's (unreachable, 5xx): NAME=URL, or one of
    /// letsencrypt, letsencrypt-staging, zerossl, google, google-staging.
    /// Repeat the flag (or separate with commas) for several.
    #[arg(long, env = "CERTFLEET_FALLBACK_CA", value_delimiter = ',')]
    pub fallback_ca: Vec<String>,
    /// NAME=PATH: an extra PEM root to trust for a fallback CA's HTTPS.
    #[arg(long, env = "CERTFLEET_FALLBACK_CA_ROOT", value_delimiter = ',')]
    pub fallback_ca_root: Vec<String>,
    /// Change a rate-limit budget, kept per CA: KIND=COUNT/WINDOW (window in
    /// s, m, h or d), KIND=off, or off for all (a CA without limits, such as
    /// a local Pebble). Kinds and Let's Encrypt's defaults:
    /// orders-per-account=300/3h, certificates-per-domain=50/7d,
    /// certificates-per-name-set=5/7d, failed-authorizations-per-name=5/1h.
    #[arg(long, env = "CERTFLEET_RATE_LIMIT", value_delimiter = ',')]
    pub rate_limit: Vec<String>,
    #[command(flatten)]
    pub keys: crate::vault::VaultKeyArgs,
    #[command(flatten)]
    pub archive: crate::archive::ArchiveArgs,
    /// Seconds between scheduler passes (renewals, lost work).
    #[arg(long, env = "CERTFLEET_SCHEDULER_INTERVAL", default_value_t = 30)]
    pub scheduler_interval: u64,
    /// Orders worked on at the same time.
    #[arg(long, env = "CERTFLEET_ISSUER_CONCURRENCY", default_value_t = 16)]
    pub issuer_concurrency: usize,
    /// DNS-01: recursive resolver for finding zones, CNAMEs and name servers,
    /// an IP address with an optional port (192.0.2.53, [2001:db8::53]:5353).
    /// Default: the first nameserver of /etc/resolv.conf.
    #[arg(long, env = "CERTFLEET_DNS_RESOLVER", value_parser = parse_resolver)]
    pub dns_resolver: Option<SocketAddr>,
    /// DNS-01: seconds to wait for a challenge record to reach every
    /// authoritative name server before the attempt fails (and is retried).
    #[arg(
        long,
        env = "CERTFLEET_DNS_PROPAGATION_TIMEOUT",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub dns_propagation_timeout: u64,
    /// DNS-01: seconds between two checks of the name servers that did not
    /// have the record yet.
    #[arg(
        long,
        env = "CERTFLEET_DNS_PROPAGATION_INTERVAL",
        default_value_t = 2,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub dns_propagation_interval: u64,
    /// DNS-01: absolute paths of the programs `exec` DNS providers may run,
    /// comma-separated (or the flag repeated). Default: none, so `exec`
    /// providers are refused: an organization must not choose what runs here.
    #[arg(
        long,
        env = "CERTFLEET_DNS_EXEC_PROGRAMS",
        value_delimiter = ',',
        value_parser = parse_absolute_path
    )]
    pub dns_exec_programs: Vec<PathBuf>,
}

/// `192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or `[2001:db8::53]:53`.
fn parse_resolver(value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    value
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            value
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .ok_or_else(|| {
            "not an IP address with an optional port (192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53)"
                .to_owned()
        })
}

fn parse_absolute_path(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err("not an absolute path".to_owned())
    }
}

impl ServerArgs {
    /// The settings, checked where a bad value would otherwise surface late.
    pub fn into_config(self, dev: bool) -> anyhow::Result<EmbeddedConfig> {
        let default_directory = if dev {
            "https://127.0.0.1:14000/dir"
        } else {
            "https://acme-v02.api.letsencrypt.org/directory"
        };
        let default_http01: SocketAddr = if dev {
            SocketAddr::from(([127, 0, 0, 1], 5002))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 80))
        };
        let archive = self.archive.config(Some(&self.data_dir.join("backups")))?;
        Ok(EmbeddedConfig {
            dev,
            archive,
            database_url: self.database_url,
            master_key_file: self
                .keys
                .master_key_file
                .clone()
                .unwrap_or_else(|| self.data_dir.join("master.key")),
            master_key: self.keys.master_key.clone(),
            previous_master_key_files: self.keys.previous_master_key_file.clone(),
            kms: self.keys.kms(),
            data_dir: self.data_dir,
            grpc_listen: self.grpc_listen,
            grpc_tls: self.grpc_tls_cert.zip(self.grpc_tls_key),
            grpc_tls_client_ca: self.grpc_tls_client_ca,
            http01_listen: self.http01_listen.unwrap_or(default_http01),
            self_check_addr: self.http01_self_check_addr,
            self_check: !self.http01_no_self_check,
            self_check_timeout: Duration::from_secs(self.http01_self_check_timeout),
            ca_directory: self
                .ca_directory
                .unwrap_or_else(|| default_directory.to_owned()),
            ca_root: self.ca_root,
            fallback_cas: self.fallback_ca,
            fallback_ca_roots: self.fallback_ca_root,
            rate_limits: self.rate_limit,
            scheduler_interval: Duration::from_secs(self.scheduler_interval.max(1)),
            issuer_concurrency: self.issuer_concurrency.max(1),
            dns: dns_settings(
                self.dns_resolver,
                self.dns_propagation_timeout,
                self.dns_propagation_interval,
                self.dns_exec_programs,
            ),
        })
    }
}

/// The DNS-01 settings of the embedded mode; the values passed the parsers above.
fn dns_settings(
    resolver: Option<SocketAddr>,
    propagation_timeout: u64,
    propagation_interval: u64,
    exec_programs: Vec<PathBuf>,
) -> DnsSettings {
    let mut lookup =
        LookupConfig::new(resolver.unwrap_or_else(certfleet_dns::lookup::system_resolver));
    lookup.propagation_timeout = Duration::from_secs(propagation_timeout.max(1));
    lookup.propagation_interval = Duration::from_secs(propagation_interval.max(1));
    DnsSettings {
        policy: DnsPolicy { exec_programs },
        lookup,
    }
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Database URL (`postgres://…`, or a SQLite path / `sqlite://PATH`).
    #[arg(
        long,
        env = "CERTFLEET_DATABASE_URL",
        default_value = "./certfleet-data/certfleet.db"
    )]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization (a tenant).
    Create {
        /// Short identifier: lower-case letters, digits and '-'.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Contact email, registered with the CA.
        #[arg(long)]
        email: String,
    },
    /// List the organizations, by slug (the admin token or an agent token).
    List,
    /// External Account Binding credentials at CAs that require them
    /// (needs the admin token).
    #[command(subcommand)]
    Eab(crate::eab::EabCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// See certificates.
    Read,
    /// See, request, renew, revoke and delete certificates.
    Write,
    /// See certificates and download their private keys.
    Bundle,
    /// A platform token for proxy agents, given without `--org`: see the
    /// certificates of every organization and download their private keys;
    /// change nothing.
    Agent,
}

/// API tokens of organizations, and the platform agent tokens. Every `token`
/// command needs the platform admin token (`--token` or `CERTFLEET_TOKEN`), the
/// one `certfleet dev` prints on first start.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for an organization, or a platform agent token
    /// (`--role agent`, no `--org`); the secret is shown once.
    ///
    /// The token (`cf1.<id>.<secret>`) is printed once and cannot be shown
    /// again: store it at once. A lost token is revoked (`token revoke`) and
    /// replaced by a new one.
    Create {
        /// Slug of the organization the token belongs to (as given to `org
        /// create`); required for read, write and bundle, refused for agent.
        #[arg(long, value_name = "SLUG")]
        org: Option<String>,
        /// What the token may do.
        #[arg(long)]
        role: RoleArg,
        /// Free text shown by `token list`, e.g. who or what uses the token.
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime of the token, a number with a unit: `90d` (days), `12h`
        /// (hours), `30m` (minutes) or `3600s` (seconds); at most 3650 days.
        /// Without it the token never expires. An expired token is refused
        /// like an unknown one.
        #[arg(long, value_name = "DURATION", value_parser = crate::tokens::parse_lifetime)]
        expires_in: Option<i64>,
    },
    /// List the tokens of an organization, or without `--org` the platform
    /// agent tokens; secrets never shown.
    ///
    /// Shows each token's id, role, state (active, expired or revoked),
    /// creation, last use (recorded at most once a minute), expiry and
    /// description. Revoked and expired tokens stay listed.
    List {
        /// Slug of the organization whose tokens are listed; without it, the
        /// agent tokens are.
        #[arg(long, value_name = "SLUG")]
        org: Option<String>,
    },
    /// Revoke a token of an organization; calls with it fail at once.
    ///
    /// Revoking a token twice is harmless. The id is the `token id` printed by
    /// `token create` and listed by `token list` (the part between `cf1.` and
    /// the second `.` of the token itself). There is no undo: create a new
    /// token instead.
    Revoke {
        /// Id of the token to revoke.
        id: String,
        /// Slug of the organization the token belongs to; a token of another
        /// organization is not found. Left out for an agent token.
        #[arg(long, value_name = "SLUG")]
        org: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyTypeArg {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    #[value(name = "rsa-2048")]
    Rsa2048,
    #[value(name = "rsa-3072")]
    Rsa3072,
    #[value(name = "rsa-4096")]
    Rsa4096,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChallengeArg {
    /// The CA fetches a file from port 80 of each name, answered by certfleet's responder.
    #[value(name = "http-01")]
    Http01,
    /// The CA looks up a TXT record of each name, written by a DNS provider
    /// (`certfleet dns add`); the only way to get wildcard names.
    #[value(name = "dns-01")]
    Dns01,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReasonArg {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Pending,
    Issuing,
    Valid,
    Renewing,
    Expired,
    Revoked,
    Failed,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Request a certificate for one or more names (the first is the primary name).
    ///
    /// With HTTP-01 (the default) port 80 of every name must reach certfleet's
    /// responder. With `--challenge dns-01 --dns PROVIDER` the proof is a TXT
    /// record written by one of the organization's DNS providers instead;
    /// wildcard names (`*.example.com`) need it.
    Request {
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long, default_value = "ecdsa-p256")]
        key_type: KeyTypeArg,
        /// How the CA checks control of the names. Default: http-01, or
        /// dns-01 when --dns is given.
        #[arg(long)]
        challenge: Option<ChallengeArg>,
        /// The DNS provider (name or id, see `certfleet dns list`) that writes
        /// the DNS-01 records; required with --challenge dns-01.
        #[arg(long, value_name = "PROVIDER", required_if_eq("challenge", "dns-01"))]
        dns: Option<String>,
        /// Do not renew automatically.
        #[arg(long)]
        no_auto_renew: bool,
        /// Renew at least this many days before expiry.
        #[arg(long)]
        renew_before_days: Option<u32>,
        /// An ACME profile the CA offers (e.g. tlsserver, shortlived); the
        /// request fails naming the CA's profiles when it has no such one.
        #[arg(long)]
        profile: Option<String>,
        /// Show progress until the certificate is valid (exit 0) or failed
        /// (exit 1); exit 3 when --timeout passes first.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// List certificates.
    List {
        #[arg(long)]
        status: Option<StatusArg>,
        /// Only certificates with a name containing this text.
        #[arg(long)]
        name: Option<String>,
        /// Only certificates expiring within this many days.
        #[arg(long)]
        expiring_within_days: Option<u32>,
        /// Rows per page (all pages are fetched).
        #[arg(long, default_value_t = 100)]
        page_size: u32,
    },
    /// Show one certificate.
    Show { id: String },
    /// Renew now.
    Renew {
        id: String,
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Revoke the current version at the CA.
    Revoke {
        id: String,
        #[arg(long)]
        reason: ReasonArg,
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Stop managing a certificate (it is not revoked).
    Delete { id: String },
    /// Write cert.pem, chain.pem and fullchain.pem (mode 0644) and privkey.pem
    /// (mode 0600) of the current version into a folder (created 0700).
    Download {
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
}
