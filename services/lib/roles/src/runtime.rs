//! What every role does around its work: logging, the stop signal, the
//! database (waiting for the schema), the master key, the broker settings,
//! the health check and a last outbox drain.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::routing::get;
use certfleet_bus::OutboxRelay;
use certfleet_bus::rabbitmq::RabbitConfig;
use certfleet_store::Store;
use certfleet_vault::Vault;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::{LogFormat, RoleConfig};

/// How long a role waits for PostgreSQL (and, but for the api, the schema) at start.
const DATABASE_WAIT: Duration = Duration::from_secs(60);
/// How long a role waits for RabbitMQ at start before it gives up.
const BROKER_WAIT: Duration = Duration::from_secs(120);
/// How long the last outbox drain may take at shutdown.
const LAST_DRAIN: Duration = Duration::from_secs(5);

pub fn init_tracing(config: &RoleConfig) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("log (CERTFLEET_LOG): invalid filter {:?}", config.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

/// A flag that turns true on the first SIGTERM or SIGINT.
pub fn stop_on_signal() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping");
        let _ = stop.send(true);
        // Keep the sender (and so the flag) alive until the process ends.
        std::future::pending::<()>().await;
    });
    Ok(stopping)
}

/// Completes once the stop flag is set (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Connects to RabbitMQ, waiting with growing pauses (0.5 s doubling to 10 s,
/// each failure logged) while the broker is down, up to two minutes: a broker
/// that starts after the role delays it instead of stopping it.
pub async fn connect_broker<T, F, Fut>(what: &'static str, mut connect: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, certfleet_bus::BusError>>,
{
    let deadline = tokio::time::Instant::now() + BROKER_WAIT;
    let mut pause = Duration::from_millis(500);
    loop {
        match connect().await {
            Ok(connected) => return Ok(connected),
            Err(error) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(%error, what, retry_in_ms = pause.as_millis() as u64, "rabbitmq not reachable yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "amqp_url: {what}: rabbitmq not reachable for {} s",
                        BROKER_WAIT.as_secs()
                    )
                });
            }
        }
    }
}

/// Connects to PostgreSQL. The api migrates; the other roles wait until the
/// schema is there (an api starting next to them creates it).
pub async fn open_store(config: &RoleConfig, migrate: bool) -> anyhow::Result<Store> {
    let deadline = tokio::time::Instant::now() + DATABASE_WAIT;
    loop {
        let attempt = async {
            let store =
                Store::connect_with_pool(&config.database_url, config.database_pool_size).await?;
            if migrate {
                let applied = store.migrate().await?;
                if !applied.is_empty() {
                    tracing::info!(?applied, "database migrated");
                }
            } else {
                // Any query on a migrated table: fails until the schema exists.
                store.has_organizations().await?;
            }
            Ok::<_, certfleet_store::StoreError>(store)
        };
        match attempt.await {
            Ok(store) => return Ok(store),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "database not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    if migrate {
                        "database_url: cannot reach or migrate the database".to_owned()
                    } else {
                        format!(
                            "database_url: no usable certfleet schema after {} s (start a certfleet-api first: it migrates)",
                            DATABASE_WAIT.as_secs()
                        )
                    }
                });
            }
        }
    }
}

pub async fn open_vault(config: &RoleConfig) -> anyhow::Result<Vault> {
    let Some(source) = &config.vault_key else {
        bail!(
            "no master key: set CERTFLEET_MASTER_KEY or CERTFLEET_MASTER_KEY_FILE (or vault_provider = aws-kms)"
        );
    };
    let previous =
        certfleet_vault::LocalMasterKey::load_previous(&config.previous_master_key_files)
            .await
            .context("previous_master_key_files (CERTFLEET_PREVIOUS_MASTER_KEY_FILES)")?;
    Ok(crate::vault::open_vault_key(source)
        .await?
        .with_previous(previous))
}

pub fn rabbit_config(config: &RoleConfig) -> anyhow::Result<RabbitConfig> {
    let Some(url) = &config.amqp_url else {
        bail!("amqp_url is not set");
    };
    Ok(RabbitConfig::new(url.clone()).with_connection_name(config.instance_id.clone()))
}

/// The gRPC API's TLS settings, checked now so that a bad file fails the start.
/// With `client_ca`, a client certificate signed by one of its CAs is required.
pub fn load_grpc_tls(
    certificate: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<ServerTlsConfig> {
    let certificate_pem = std::fs::read(certificate)
        .with_context(|| format!("reading grpc_tls_cert {}", certificate.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading grpc_tls_key {}", key.display()))?;
    let config = ServerTlsConfig::new().identity(Identity::from_pem(certificate_pem, key_pem));
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .with_context(|| {
            format!(
                "grpc_tls_cert {} / grpc_tls_key {}: not a usable certificate and key",
                certificate.display(),
                key.display()
            )
        })?;
    let Some(client_ca) = client_ca else {
        return Ok(config);
    };
    let client_ca_pem = std::fs::read(client_ca)
        .with_context(|| format!("reading grpc_tls_client_ca {}", client_ca.display()))?;
    // Without a CA certificate in the file the verifier cannot be built.
    let config = config
        .client_ca_root(Certificate::from_pem(client_ca_pem))
        .client_auth_optional(false);
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .with_context(|| {
            format!(
                "grpc_tls_client_ca {}: no usable PEM CA certificate",
                client_ca.display()
            )
        })?;
    tracing::info!(client_ca = %client_ca.display(), "the gRPC API requires client certificates");
    Ok(config)
}

/// Serves `GET /healthz` → 200 "ok" until `stop`; nothing when no address is set.
pub async fn serve_health(
    address: Option<SocketAddr>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding health_listen {address}"))?;
    let router = axum::Router::new().route("/healthz", get(|| async { "ok" }));
    tracing::info!(%address, "health check listening");
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped(stop))
            .await
        {
            tracing::warn!(%error, "health check stopped");
        }
    })))
}

/// Stops the relay's loop and publishes what is left in the outbox, briefly;
/// anything not published now is published by another relay.
pub async fn finish_relay(relay: &OutboxRelay, task: JoinHandle<()>) {
    task.abort();
    let _ = task.await;
    match tokio::time::timeout(LAST_DRAIN, relay.drain()).await {
        Ok(Ok(published)) if published > 0 => {
            tracing::info!(published, "outbox drained at shutdown");
        }
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "last outbox drain failed; another relay publishes the rest")
        }
        Err(_) => tracing::warn!("last outbox drain timed out; another relay publishes the rest"),
    }
}

#[cfg(test)]
mod broker_wait_tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use certfleet_bus::BusError;

    #[tokio::test]
    async fn a_broker_that_comes_up_late_is_waited_for() {
        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let connected = super::connect_broker("test", || {
            let attempt = tries.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt < 2 {
                    Err(BusError::Unavailable("not yet".to_owned()))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(connected.ok(), Some(2));
        // 0.5 s, then 1 s of pauses.
        assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod grpc_tls_tests {
    use super::*;

    /// A self-signed certificate and its key, written to `directory`.
    fn write_identity(directory: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let certificate_path = directory.join("api.pem");
        let key_path = directory.join("api-key.pem");
        std::fs::write(&certificate_path, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (certificate_path, key_path)
    }

    #[test]
    fn a_bad_client_ca_file_is_named_with_the_setting() {
        certfleet_acme::install_crypto_provider();
        let directory = tempfile::tempdir().unwrap();
        let (certificate, key) = write_identity(directory.path());
        assert!(load_grpc_tls(&certificate, &key, None).is_ok());
        // Its own certificate serves as a CA file here.
        assert!(load_grpc_tls(&certificate, &key, Some(&certificate)).is_ok());

        let missing = directory.path().join("missing-ca.pem");
        let error = format!(
            "{:#}",
            load_grpc_tls(&certificate, &key, Some(&missing)).unwrap_err()
        );
        assert!(error.starts_with("reading grpc_tls_client_ca "), "{error}");
        assert!(error.contains("missing-ca.pem"), "{error}");

        let not_pem = directory.path().join("ca.txt");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let error = format!(
            "{:#}",
            load_grpc_tls(&certificate, &key, Some(&not_pem)).unwrap_err()
        );
        assert!(error.starts_with("grpc_tls_client_ca "), "{error}");
        assert!(
            error.contains("ca.txt: no usable PEM CA certificate"),
            "{error}"
        );
        // The key is not the CA: a key file given by mistake names no key material.
        let error = format!(
            "{:#}",
            load_grpc_tls(&certificate, &key, Some(&key)).unwrap_err()
        );
        assert!(
            error.contains("api-key.pem: no usable PEM CA certificate"),
            "{error}"
        );
        assert!(!error.contains("PRIVATE KEY"), "{error}");
    }
}
