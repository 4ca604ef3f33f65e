//! certfleet-agent: one per proxy host. Installs the current version of every
//! certificate into nginx, Traefik or Caddy, removes revoked and deleted
//! ones, checks over TLS that the proxy serves what was installed, and
//! reports back to the API.

mod agent;
mod client;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use certfleet_bus::rabbitmq::{DurableEvents, RabbitConfig};
use certfleet_proxy::{CaddyTarget, NginxTarget, Target, TraefikTarget, Webroot};
use clap::{Parser, ValueEnum};
use tokio::sync::{mpsc, watch};

use crate::agent::{Agent, AgentConfig, WebrootSync};
use crate::client::Endpoint;

/// certfleet-agent: installs certificates into a proxy and checks it serves them.
///
/// Runs on each proxy host with a platform agent token (`certfleet token
/// create --role agent`). It learns about new versions,
/// revocations and deletions from its own durable RabbitMQ queue
/// (`--amqp-url`; queue `certfleet.agent.<name>`), and in any case compares
/// what the proxy holds with what it should hold at start and every
/// `--reconcile-every`. After each install it shakes hands with the proxy
/// (`--verify-address`) for every name and reports the result
/// (`certfleet cert show` lists it). Private keys are written mode 0600.
#[derive(Debug, Parser)]
#[command(name = "certfleet-agent", version)]
struct Cli {
    /// The certfleet API (gRPC), e.g. https://certfleet.internal:50051.
    #[arg(long, env = "CERTFLEET_API_URL")]
    api_url: String,
    /// A file holding the platform agent token.
    #[arg(long, env = "CERTFLEET_AGENT_TOKEN_FILE")]
    token_file: PathBuf,
    /// PEM roots to trust for the API's TLS certificate.
    #[arg(long, env = "CERTFLEET_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Client certificate and key for mutual TLS with the API.
    #[arg(long, env = "CERTFLEET_CLIENT_CERT")]
    client_cert: Option<PathBuf>,
    #[arg(long, env = "CERTFLEET_CLIENT_KEY")]
    client_key: Option<PathBuf>,

    /// The proxy to install into.
    #[arg(long, env = "CERTFLEET_AGENT_TARGET", value_enum)]
    target: TargetKind,
    /// This agent's name, unique on the platform (default: <host>/<target>).
    #[arg(long, env = "CERTFLEET_AGENT_NAME")]
    name: Option<String>,
    /// The host name reported with installations (default: this machine's).
    #[arg(long, env = "CERTFLEET_AGENT_HOST")]
    host: Option<String>,
    /// Only certificates of these organizations (slugs; repeatable). Default: all.
    #[arg(
        long = "organization",
        env = "CERTFLEET_AGENT_ORGANIZATIONS",
        value_delimiter = ','
    )]
    organizations: Vec<String>,
    /// Where the proxy serves HTTPS, for the check after each install.
    #[arg(
        long,
        env = "CERTFLEET_AGENT_VERIFY_ADDRESS",
        default_value = "127.0.0.1:443"
    )]
    verify_address: SocketAddr,
    /// Skip the TLS check (the installation is reported unverified).
    #[arg(long)]
    no_verify: bool,
    /// RabbitMQ of the distributed mode (amqp://user:password@host/vhost).
    /// Without it the agent relies on the periodic reconcile alone.
    #[arg(long, env = "CERTFLEET_AMQP_URL")]
    amqp_url: Option<String>,
    /// How often to compare the proxy with what it should hold
    /// (seconds; default 600 with --amqp-url, 30 without).
    #[arg(long, env = "CERTFLEET_AGENT_RECONCILE_SECONDS")]
    reconcile_every: Option<u64>,
    /// Serve HTTP-01 challenges from this document root
    /// (<DIR>/.well-known/acme-challenge/<token>), polled every second.
    #[arg(long, env = "CERTFLEET_AGENT_WEBROOT")]
    webroot: Option<PathBuf>,

    /// nginx: directory for certificates (certs/<id>/) and generated server
    /// blocks (servers/<id>.conf; include servers/*.conf inside http {}).
    #[arg(long, default_value = "/etc/nginx/certfleet")]
    nginx_dir: PathBuf,
    /// nginx: the binary run for `-t` and `-s reload`.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx_bin: PathBuf,
    /// nginx: extra arguments for both commands (repeatable), e.g. -c /etc/nginx/nginx.conf.
    #[arg(long = "nginx-arg", allow_hyphen_values = true)]
    nginx_args: Vec<String>,
    /// nginx: the `listen` lines of generated server blocks (repeatable).
    #[arg(long = "nginx-listen", default_value = "443 ssl")]
    nginx_listen: Vec<String>,
    /// nginx: a file included in every generated server block (locations, proxy_pass).
    #[arg(long)]
    nginx_server_include: Option<PathBuf>,
    /// Traefik: the directory its file provider watches.
    #[arg(long, default_value = "/etc/traefik/dynamic")]
    traefik_dir: PathBuf,
    /// Traefik and Caddy: where certificate and key files are written.
    #[arg(long, default_value = "/var/lib/certfleet-agent/certs")]
    certs_dir: PathBuf,
    /// Caddy: its admin API.
    #[arg(long, default_value = "http://127.0.0.1:2019")]
    caddy_admin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    Nginx,
    Traefik,
    Caddy,
}

impl TargetKind {
    fn name(self) -> &'static str {
        match self {
            TargetKind::Nginx => "nginx",
            TargetKind::Traefik => "traefik",
            TargetKind::Caddy => "caddy",
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn target(cli: &Cli) -> Arc<dyn Target> {
    match cli.target {
        TargetKind::Nginx => Arc::new(
            NginxTarget::new(&cli.nginx_dir, &cli.nginx_bin)
                .with_nginx_args(cli.nginx_args.clone())
                .with_listen(cli.nginx_listen.clone())
                .with_server_include(cli.nginx_server_include.clone()),
        ),
        TargetKind::Traefik => Arc::new(TraefikTarget::new(&cli.traefik_dir, &cli.certs_dir)),
        TargetKind::Caddy => Arc::new(CaddyTarget::new(&cli.caddy_admin, &cli.certs_dir)),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&cli.token_file)
        .with_context(|| format!("reading --token-file {}", cli.token_file.display()))?;
    if token.trim().is_empty() {
        bail!("--token-file {} is empty", cli.token_file.display());
    }
    let endpoint = Endpoint {
        url: cli.api_url.clone(),
        ca_cert: cli.ca_cert.clone(),
        client_cert: cli.client_cert.clone(),
        client_key: cli.client_key.clone(),
    };
    let (certificates, organizations) = client::clients(&endpoint, &token)?;
    drop(token);
    let host = cli.host.clone().unwrap_or_else(this_host);
    let name = cli
        .name
        .clone()
        .unwrap_or_else(|| format!("{host}/{}", cli.target.name()));
    let config = AgentConfig {
        name: name.clone(),
        host,
        verify_address: (!cli.no_verify).then_some(cli.verify_address),
        organizations: cli.organizations.clone(),
    };
    let webroot = cli
        .webroot
        .clone()
        .map(|dir| WebrootSync::new(Webroot { dir }, certificates.clone()));
    let mut agent = Agent::new(config, target(&cli), certificates, organizations);
    let reconcile_every = Duration::from_secs(
        cli.reconcile_every
            .unwrap_or(if cli.amqp_url.is_some() { 600 } else { 30 })
            .max(1),
    );

    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });

    // Events go through a channel into the one loop that touches the proxy;
    // the queue consumer acks an event once the loop has handled it.
    let (events_tx, mut events_rx) = mpsc::channel::<(
        certfleet_proto::v1::CertificateEvent,
        tokio::sync::oneshot::Sender<Result<(), String>>,
    )>(16);
    let consumer = match &cli.amqp_url {
        Some(url) => {
            let queue = DurableEvents::new(
                RabbitConfig::new(url.clone())
                    .with_connection_name(format!("certfleet-agent {name}")),
                format!("certfleet.agent.{name}"),
                &[
                    "certificate.issued",
                    "certificate.renewed",
                    "certificate.revoked",
                    "certificate.deleted",
                ],
            );
            // Bound before the first reconcile, so nothing falls in between.
            // A broker that is away is not fatal: the consumer keeps trying,
            // and the periodic reconcile catches up on what it missed.
            if let Err(error) = queue.declare().await {
                tracing::warn!(queue = queue.queue(), %error, "cannot bind the event queue yet; events are missed until RabbitMQ answers, the reconcile catches up");
            }
            let stop = stop.clone();
            Some(tokio::spawn(queue.run(
                move |event| {
                    let events_tx = events_tx.clone();
                    async move {
                        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                        events_tx
                            .send((event, done_tx))
                            .await
                            .map_err(|_| "the agent is stopping".to_owned())?;
                        done_rx
                            .await
                            .map_err(|_| "the agent is stopping".to_owned())?
                    }
                },
                stop,
            )))
        }
        None => {
            drop(events_tx);
            None
        }
    };

    let webroot_task = webroot.map(|mut webroot| {
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
                if let Err(error) = webroot.sync().await {
                    tracing::warn!(%error, "webroot not updated");
                }
            }
        })
    });
    tracing::info!(agent = %name, target = cli.target.name(), reconcile_seconds = reconcile_every.as_secs(), "certfleet-agent running");
    let mut reconcile = tokio::time::interval(reconcile_every);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            _ = stopping.wait_for(|stopped| *stopped) => break,
            _ = reconcile.tick() => {
                if let Err(error) = agent.reconcile().await {
                    tracing::warn!(%error, "reconcile failed; tried again at the next one");
                }
            }
            _ = tick.tick() => agent.retry_due().await,
            Some((event, done)) = events_rx.recv() => {
                let _ = done.send(agent.handle_event(event).await);
            }
        }
    }
    if let Some(consumer) = consumer {
        let _ = consumer.await;
    }
    if let Some(webroot) = webroot_task {
        let _ = webroot.await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
