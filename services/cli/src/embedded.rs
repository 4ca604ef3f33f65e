//! The embedded mode: API, responder, issuer, scheduler and outbox relay in one
//! process on one database (SQLite by default), with the in-process bus and a
//! local master key (or an AWS KMS key).

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use certfleet_acme::{AcmeConfig, Issuer, IssuerPool, Scheduler, SchedulerConfig, SelfCheckConfig};
use certfleet_api::ApiState;
use certfleet_bus::{InProcessBus, InProcessJobs, OutboxRelay};
use certfleet_core::{Clock, SystemClock};
use certfleet_store::Store;
use certfleet_vault::{AwsKms, AwsKmsConfig, KeyWrapper, LocalMasterKey, Vault};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::args::LogFormat;

/// Settings of `certfleet dev` / `certfleet server`.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// `dev` creates a master key when there is none; `server` refuses to.
    pub dev: bool,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub master_key_file: PathBuf,
    pub master_key: Option<String>,
    /// Where copies of issued versions go; none without.
    pub archive: Option<certfleet_archive::ArchiveConfig>,
    /// Earlier master keys: blobs under them still open (key rotation).
    pub previous_master_key_files: Vec<PathBuf>,
    /// `--vault-provider aws-kms`: data keys from this KMS key; the master
    /// key settings are then unused.
    pub kms: Option<AwsKmsConfig>,
    pub grpc_listen: SocketAddr,
    /// Certificate and key files of the gRPC API; plaintext without them.
    pub grpc_tls: Option<(PathBuf, PathBuf)>,
    /// PEM CA certificates: with them the API requires a client certificate
    /// signed by one (needs `grpc_tls`).
    pub grpc_tls_client_ca: Option<PathBuf>,
    pub http01_listen: SocketAddr,
    pub self_check_addr: Option<SocketAddr>,
    pub self_check: bool,
    pub self_check_timeout: Duration,
    pub ca_directory: String,
    pub ca_root: Option<PathBuf>,
    /// CAs tried in order after the default one when it keeps failing
    /// (`NAME=URL` or a well-known name), and the roots some need (`NAME=PATH`).
    pub fallback_cas: Vec<String>,
    pub fallback_ca_roots: Vec<String>,
    /// Rate-limit budgets changed from Let's Encrypt's (`KIND=COUNT/WINDOW`).
    pub rate_limits: Vec<String>,
    pub scheduler_interval: Duration,
    pub issuer_concurrency: usize,
    /// DNS-01: resolver, propagation limits and the allowed exec programs.
    pub dns: certfleet_dns::DnsSettings,
}

/// A running embedded certfleet.
#[derive(Debug)]
pub struct Embedded {
    pub grpc_addr: SocketAddr,
    /// Whether the gRPC API speaks TLS.
    pub grpc_tls: bool,
    pub http01_addr: SocketAddr,
    pub admin_token_path: PathBuf,
    /// The admin token, when this start created it.
    pub new_admin_token: Option<String>,
    pub store: Store,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    _lock: std::fs::File,
}

/// Starts every role; returns once all listeners are bound.
pub async fn start(config: EmbeddedConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Embedded> {
    certfleet_acme::install_crypto_provider();
    // The CA settings are checked before anything is written.
    let mut acme = AcmeConfig {
        self_check: SelfCheckConfig {
            enabled: config.self_check,
            connect_addr: config.self_check_addr,
            timeout: config.self_check_timeout,
        },
        dns: config.dns.clone(),
        ..AcmeConfig::new(config.ca_directory.clone()).with_ca_root(config.ca_root.clone())
    };
    acme.configure_issuers(
        &config.fallback_cas,
        &config.fallback_ca_roots,
        &config.rate_limits,
        ["--fallback-ca", "--fallback-ca-root", "--rate-limit"],
    )
    .map_err(anyhow::Error::msg)?;
    create_private_dir(&config.data_dir)?;
    let lock = lock_data_dir(&config.data_dir)?;
    let owner = instance_id(&config.data_dir)?;

    let database_url = config.database_url.clone().unwrap_or_else(|| {
        config
            .data_dir
            .join("certfleet.db")
            .to_string_lossy()
            .into_owned()
    });
    // Settings that can be checked without the database come first, so a bad
    // file stops the start before anything is written.
    let grpc_tls = match (&config.grpc_tls, &config.grpc_tls_client_ca) {
        (Some((certificate, key)), client_ca) => {
            Some(load_grpc_tls(certificate, key, client_ca.as_deref())?)
        }
        (None, Some(client_ca)) => bail!(
            "--grpc-tls-client-ca {} needs --grpc-tls-cert and --grpc-tls-key: client certificates are only checked over TLS",
            client_ca.display()
        ),
        (None, None) => {
            if !config.grpc_listen.ip().is_loopback() {
                tracing::warn!(address = %config.grpc_listen, "the gRPC API is plaintext on a non-loopback address: bearer tokens and private keys cross the network unencrypted; set --grpc-tls-cert and --grpc-tls-key");
            }
            None
        }
    };
    let kms = config.kms.as_ref().map(kms_wrapper).transpose()?;
    let key_missing =
        kms.is_none() && config.master_key.is_none() && !config.master_key_file.exists();
    if key_missing && !config.dev {
        bail!(
            "no master key at {}: set CERTFLEET_MASTER_KEY or CERTFLEET_MASTER_KEY_FILE, or create one with `certfleet dev` (it writes <data-dir>/master.key)",
            config.master_key_file.display()
        );
    }
    let store = Store::connect(&database_url)
        .await
        .context("opening the database")?;
    let applied = store.migrate().await.context("migrating the database")?;
    if !applied.is_empty() {
        tracing::info!(?applied, "database migrated");
    }
    if key_missing && store.has_organizations().await? {
        bail!(
            "the master key {} is missing but the database already holds keys sealed with it: restore the file (or set CERTFLEET_MASTER_KEY); a new key could not open them",
            config.master_key_file.display()
        );
    }
    let wrapper: Arc<dyn KeyWrapper> = match kms {
        Some(kms) => Arc::new(kms),
        None => Arc::new(load_master_key(&config).await?),
    };
    let vault = Vault::new(wrapper)
        .with_previous(crate::vault::previous_keys(&config.previous_master_key_files).await?);

    let admin_token_path = config.data_dir.join("admin-token");
    let new_admin_token = if admin_token_path.exists() {
        None
    } else {
        let token = certfleet_api::create_admin_token(&store, clock.as_ref(), "first start")
            .await
            .context("creating the admin token")?;
        write_secret_file(&admin_token_path, token.as_bytes())?;
        Some(token)
    };

    // A restarted process holds nothing, whatever it held before it stopped.
    let released = store.release_all_leases_of(&owner).await?;
    if released > 0 {
        tracing::info!(
            released,
            "took back certificates left in flight by the previous run"
        );
    }

    let (bus, jobs) = InProcessBus::new();
    let jobs = Box::new(InProcessJobs::new(&bus, jobs));
    let relay = OutboxRelay::new(store.clone(), Arc::new(bus.clone()), Duration::from_secs(1))
        .with_owner(owner.clone());
    let issuer = Issuer::new(
        store.clone(),
        vault.clone(),
        relay.clone(),
        clock.clone(),
        acme,
        owner.clone(),
    );
    let scheduler = Scheduler::new(
        store.clone(),
        relay.clone(),
        clock.clone(),
        SchedulerConfig {
            interval: config.scheduler_interval,
            owner: owner.clone(),
        },
    );
    let backups = match &config.archive {
        Some(archive) => {
            let archive = certfleet_archive::Archive::open(archive)
                .map_err(|error| anyhow::anyhow!("--archive-location: {error}"))?;
            tracing::info!(archive = %archive.describe(), "copies of issued certificates go to the archive");
            Some(certfleet_acme::BackupWorker::new(
                store.clone(),
                archive,
                clock.clone(),
                owner.clone(),
            ))
        }
        None => {
            tracing::warn!(
                "--archive-location none: no copies of issued certificates are kept outside the database"
            );
            None
        }
    };
    let notifier = certfleet_notify::Notifier::new(
        store.clone(),
        vault.clone(),
        clock.clone(),
        certfleet_notify::NotifierConfig {
            poll: config.scheduler_interval.min(Duration::from_secs(1)),
            ..certfleet_notify::NotifierConfig::default()
        },
    );
    // Subscribed before the relay runs, so no event goes by unseen.
    let notifier_events = certfleet_bus::EventSource::subscribe(&bus);
    let api = ApiState {
        store: store.clone(),
        vault,
        relay: relay.clone(),
        events: Arc::new(bus),
        clock,
        directory_url: config.ca_directory.clone(),
        dns: config.dns.clone(),
    };

    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("binding the gRPC address {}", config.grpc_listen))?;
    let http01_listener = tokio::net::TcpListener::bind(config.http01_listen)
        .await
        .with_context(|| format!("binding the HTTP-01 address {}", config.http01_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let grpc_tls_enabled = grpc_tls.is_some();
    let http01_addr = http01_listener.local_addr()?;

    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(relay.run());
    let mut stop_renewal_info = stopping.clone();
    tasks.spawn(
        issuer
            .clone()
            .run_renewal_info_until(config.scheduler_interval, async move {
                let _ = stop_renewal_info.wait_for(|stopped| *stopped).await;
            }),
    );
    tasks.spawn(IssuerPool::run(issuer, jobs, config.issuer_concurrency));
    tasks.spawn(scheduler.run());
    if let Some(backups) = backups {
        let mut stop_backups = stopping.clone();
        let interval = config.scheduler_interval.min(Duration::from_secs(10));
        tasks.spawn(backups.run_until(interval, async move {
            let _ = stop_backups.wait_for(|stopped| *stopped).await;
        }));
    }
    tasks.spawn(notify_events(
        notifier.clone(),
        notifier_events,
        stopping.clone(),
    ));
    tasks.spawn(notifier.run(stopping.clone()));
    let mut stop_responder = stopping.clone();
    let responder_store = store.clone();
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = stop_responder.wait_for(|stopped| *stopped).await;
        };
        if let Err(error) =
            certfleet_responder::serve(responder_store, http01_listener, shutdown).await
        {
            tracing::error!(%error, "http-01 responder stopped");
        }
    });
    let mut stop_api = stopping;
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = stop_api.wait_for(|stopped| *stopped).await;
        };
        if let Err(error) =
            certfleet_api::serve_with_tls(api, grpc_listener, grpc_tls, shutdown).await
        {
            tracing::error!(%error, "grpc api stopped");
        }
    });
    tracing::info!(%grpc_addr, %http01_addr, directory = %config.ca_directory, "certfleet running");
    Ok(Embedded {
        grpc_addr,
        grpc_tls: grpc_tls_enabled,
        http01_addr,
        admin_token_path,
        new_admin_token,
        store,
        stop,
        tasks,
        _lock: lock,
    })
}

/// Hands every `expiring` and `failed` event of the in-process bus to the
/// notifier, which records what each channel is owed; a write that fails is
/// tried again (the event is held meanwhile).
async fn notify_events(
    notifier: certfleet_notify::Notifier,
    mut events: tokio::sync::broadcast::Receiver<certfleet_proto::v1::CertificateEvent>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let event = match event {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the notifier fell behind the event bus; some events were not notified"
                );
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if certfleet_notify::notice_kind(&event).is_none() {
            continue;
        }
        let mut pause = Duration::from_millis(200);
        while let Err(error) = notifier.accept(&event).await {
            tracing::warn!(event_id = %event.id, %error, "cannot record the notifications of an event yet");
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }
}

impl Embedded {
    /// Stops listening and ends every role. Orders in flight resume on the next start.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // Give the servers a moment to finish calls in flight.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.tasks.len() > 3 {
                if self.tasks.join_next().await.is_none() {
                    break;
                }
            }
        })
        .await;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// `certfleet dev|server`: starts, prints where it listens, runs until SIGINT/SIGTERM.
pub async fn run_cli(
    config: EmbeddedConfig,
    log_format: LogFormat,
    log_filter: &str,
) -> anyhow::Result<ExitCode> {
    init_tracing(log_format, log_filter)?;
    let embedded = start(config, Arc::new(SystemClock)).await?;
    println!("certfleet is running");
    let scheme = if embedded.grpc_tls { "https" } else { "http" };
    println!("  gRPC API:           {scheme}://{}", embedded.grpc_addr);
    println!("  HTTP-01 responder:  http://{}", embedded.http01_addr);
    if let Some(token) = &embedded.new_admin_token {
        println!(
            "  admin token (shown once; also in {}):\n    {token}",
            embedded.admin_token_path.display()
        );
    } else {
        println!(
            "  admin token:        in {}",
            embedded.admin_token_path.display()
        );
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    embedded.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for ctrl-c")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

fn init_tracing(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter {filter:?} (CERTFLEET_LOG)"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Already set (e.g. tests that embed certfleet): keep the existing one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

/// The gRPC API's TLS settings, checked now so that a bad file fails the start.
/// With `client_ca`, a client certificate signed by one of its CAs is required.
fn load_grpc_tls(
    certificate: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<ServerTlsConfig> {
    let certificate_pem = std::fs::read(certificate)
        .with_context(|| format!("reading --grpc-tls-cert {}", certificate.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading --grpc-tls-key {}", key.display()))?;
    let config = ServerTlsConfig::new().identity(Identity::from_pem(certificate_pem, key_pem));
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .with_context(|| {
            format!(
                "--grpc-tls-cert {} / --grpc-tls-key {}: not a usable certificate and key",
                certificate.display(),
                key.display()
            )
        })?;
    let Some(client_ca) = client_ca else {
        return Ok(config);
    };
    let client_ca_pem = std::fs::read(client_ca)
        .with_context(|| format!("reading --grpc-tls-client-ca {}", client_ca.display()))?;
    // Without a CA certificate in the file the verifier cannot be built.
    let config = config
        .client_ca_root(Certificate::from_pem(client_ca_pem))
        .client_auth_optional(false);
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .with_context(|| {
            format!(
                "--grpc-tls-client-ca {}: no usable PEM CA certificate",
                client_ca.display()
            )
        })?;
    tracing::info!(client_ca = %client_ca.display(), "the gRPC API requires client certificates");
    Ok(config)
}

/// The KMS wrapper of the settings (see [`crate::vault::kms_wrapper`]).
fn kms_wrapper(config: &AwsKmsConfig) -> anyhow::Result<AwsKms> {
    let kms = crate::vault::kms_wrapper(config, None)?;
    tracing::info!(key_id = %config.key_id, region = %config.region, "vault keys wrapped by aws kms");
    Ok(kms)
}

async fn load_master_key(config: &EmbeddedConfig) -> anyhow::Result<LocalMasterKey> {
    if let Some(encoded) = &config.master_key {
        return LocalMasterKey::from_base64(encoded).context("CERTFLEET_MASTER_KEY");
    }
    let path = &config.master_key_file;
    if config.dev {
        let (key, generated) = LocalMasterKey::load_or_generate(path)
            .await
            .with_context(|| format!("master key {}", path.display()))?;
        if generated {
            tracing::warn!(path = %path.display(), "generated a new master key: back it up; without it no stored private key can be read");
        }
        return Ok(key);
    }
    LocalMasterKey::load_file(path)
        .await
        .with_context(|| format!("master key {}", path.display()))
}

fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating the data dir {}", path.display()))
}

/// One process per data dir: a second one would take the leases of the first.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("certfleet.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another certfleet is already running on the data dir {}",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// A stable name for this installation in leases, kept in the data dir.
fn instance_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    let id = format!("embedded-{}", uuid::Uuid::new_v4());
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Writes a secret to a new file readable by the owner only; never replaces one.
pub(crate) fn write_secret_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Command};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn server_config(args: &[&str]) -> EmbeddedConfig {
        let line = ["certfleet", "server"]
            .into_iter()
            .chain(args.iter().copied());
        let Command::Server(server) = Cli::try_parse_from(line).unwrap().command else {
            panic!("not the server command");
        };
        server.into_config(false).unwrap()
    }

    #[test]
    fn the_local_master_key_is_the_default() {
        assert!(server_config(&[]).kms.is_none());
        assert!(server_config(&["--vault-provider", "local"]).kms.is_none());
        assert!(Cli::try_parse_from(["certfleet", "server", "--vault-provider", "vault"]).is_err());
    }

    #[test]
    fn the_client_ca_needs_the_tls_certificate_and_key() {
        let error = Cli::try_parse_from([
            "certfleet",
            "server",
            "--grpc-tls-client-ca",
            "clients-ca.pem",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("--grpc-tls-cert") && error.contains("--grpc-tls-key"),
            "{error}"
        );
        let config = server_config(&[
            "--grpc-tls-cert",
            "api.pem",
            "--grpc-tls-key",
            "api-key.pem",
            "--grpc-tls-client-ca",
            "clients-ca.pem",
        ]);
        assert_eq!(
            config.grpc_tls_client_ca.as_deref(),
            Some(Path::new("clients-ca.pem"))
        );
    }

    #[test]
    fn aws_kms_settings_are_checked_by_flag_name() {
        let kms = [
            "--vault-provider",
            "aws-kms",
            "--kms-key-id",
            "alias/certfleet",
        ];
        let credentials = [
            "--kms-access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
            "--kms-secret-access-key",
            SECRET,
        ];
        let config = server_config(&[&kms[..], &credentials[..]].concat());
        let aws = config.kms.as_ref().unwrap();
        assert_eq!(aws.region, "us-east-1");
        assert_eq!(aws.endpoint_url, None);
        let wrapper = kms_wrapper(aws).unwrap();
        assert_eq!(wrapper.key_id(), "aws-kms:alias/certfleet");
        assert!(!format!("{config:?}").contains(SECRET));

        let config = server_config(&["--vault-provider", "aws-kms"]);
        let error = kms_wrapper(config.kms.as_ref().unwrap()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--kms-key-id (CERTFLEET_KMS_KEY_ID): is required"),
            "{error}"
        );
        let bad_secret = [
            "--kms-access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
            "--kms-secret-access-key",
            "shown nowhere",
        ];
        let config = server_config(&[&kms[..], &bad_secret[..]].concat());
        let error = kms_wrapper(config.kms.as_ref().unwrap()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("--kms-secret-access-key (CERTFLEET_KMS_SECRET_ACCESS_KEY)"),
            "{text}"
        );
        assert!(!text.contains("shown nowhere"), "{text}");
    }
}
