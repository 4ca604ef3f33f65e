//! A throwaway Pebble ACME CA, resolving through its own pebble-challtestsrv,
//! on free loopback ports; the Rust twin of `deploy/local/pebble.sh`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::Child;

use crate::free_port;
use crate::listener::ListenerCertificates;
use crate::process::{child_command, curl, log_tail, require_program, spawn_logged, write_file};

mod management;

const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;
const LOG_TAIL_LINES: usize = 30;

/// How to run Pebble.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Port Pebble connects to on 127.0.0.1 for HTTP-01 (config `httpPort`);
    /// 0 picks a free one, read it back with [`Pebble::http01_port`].
    pub http01_port: u16,
    /// Percentage of good nonces Pebble rejects as `badNonce`
    /// (`PEBBLE_WFE_NONCEREJECT`). Pebble's own default is 5; ours is 0.
    pub nonce_reject_percent: u8,
    /// Percentage of orders that reuse a valid authorization
    /// (`PEBBLE_AUTHZREUSE`). Pebble's own default is 50; ours is 0.
    pub authz_reuse_percent: u8,
    /// Skip the random 0–15 s sleep before each validation (`PEBBLE_VA_NOSLEEP`).
    pub va_nosleep: bool,
    /// Resolve through this DNS server (`-dnsserver`) instead of the
    /// challenge test server: DNS-01 tests point Pebble at BIND or PowerDNS.
    pub dns_server: Option<SocketAddr>,
    /// Accept every challenge without looking (`PEBBLE_VA_ALWAYS_VALID`), for
    /// DNS providers no local DNS server serves.
    pub va_always_valid: bool,
    /// External Account Binding keys as `(key id, base64url HMAC key)`; when
    /// not empty, Pebble requires a binding on every new account
    /// (`externalAccountBindingRequired`, `externalAccountMACKeys`).
    pub eab_keys: Vec<(String, String)>,
    /// How long the certificates Pebble issues are valid
    /// (`certificateValidityPeriod`); `None`: Pebble's default, about five
    /// years.
    pub certificate_validity: Option<std::time::Duration>,
}

impl Default for PebbleOptions {
    fn default() -> Self {
        Self {
            http01_port: 0,
            nonce_reject_percent: 0,
            authz_reuse_percent: 0,
            va_nosleep: true,
            dns_server: None,
            va_always_valid: false,
            eab_keys: Vec::new(),
            certificate_validity: None,
        }
    }
}

/// A running Pebble and pebble-challtestsrv; both are killed on drop.
///
/// The challenge test server only answers DNS (A queries get 127.0.0.1, AAAA
/// queries nothing); HTTP-01 goes to whatever listens on
/// [`http01_port`](Self::http01_port).
#[derive(Debug)]
pub struct Pebble {
    // Children first: they are dropped (killed) before the directory goes.
    pebble: Child,
    challtestsrv: Child,
    state_dir: tempfile::TempDir,
    ports: Ports,
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    listen: u16,
    management: u16,
    http01: u16,
    tls_alpn01: u16,
    dns: u16,
    challtestsrv_management: u16,
}

impl Ports {
    fn pick(http01_port: u16) -> Self {
        Self {
            listen: free_port(),
            management: free_port(),
            http01: if http01_port == 0 {
                free_port()
            } else {
                http01_port
            },
            tls_alpn01: free_port(),
            dns: free_port(),
            challtestsrv_management: free_port(),
        }
    }
}

/// Why one start attempt failed; a port taken by someone else is retried.
enum StartFailure {
    PortTaken(anyhow::Error),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for StartFailure {
    fn from(error: anyhow::Error) -> Self {
        Self::Fatal(error)
    }
}

impl Pebble {
    /// Starts Pebble and pebble-challtestsrv and waits (up to 20 s) until the
    /// ACME directory answers over HTTPS.
    pub async fn start(options: PebbleOptions) -> anyhow::Result<Pebble> {
        if options.nonce_reject_percent > 100 || options.authz_reuse_percent > 100 {
            bail!("pebble percentages must be at most 100");
        }
        let pebble_program = require_program("pebble")?;
        let challtestsrv_program = require_program("pebble-challtestsrv")?;
        let certificates = ListenerCertificates::generate()?;

        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let attempt = Self::start_once(
                &options,
                &pebble_program,
                &challtestsrv_program,
                &certificates,
            );
            match attempt.await {
                Ok(pebble) => return Ok(pebble),
                Err(StartFailure::PortTaken(error)) => last_error = Some(error),
                Err(StartFailure::Fatal(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("pebble did not start")))
    }

    async fn start_once(
        options: &PebbleOptions,
        pebble_program: &Path,
        challtestsrv_program: &Path,
        certificates: &ListenerCertificates,
    ) -> Result<Pebble, StartFailure> {
        let state_dir = tempfile::Builder::new()
            .prefix("certfleet-pebble-")
            .tempdir()
            .context("creating the pebble state directory")?;
        let dir = state_dir.path();
        write_file(&dir.join("ca.pem"), &certificates.ca_pem)?;
        write_file(&dir.join("listener.pem"), &certificates.certificate_pem)?;
        write_file(&dir.join("listener-key.pem"), &certificates.private_key_pem)?;

        let ports = Ports::pick(options.http01_port);
        let eab_keys: serde_json::Map<String, serde_json::Value> = options
            .eab_keys
            .iter()
            .map(|(key_id, hmac)| (key_id.clone(), serde_json::Value::from(hmac.clone())))
            .collect();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{}", ports.listen),
                "managementListenAddress": format!("127.0.0.1:{}", ports.management),
                "certificate": dir.join("listener.pem"),
                "privateKey": dir.join("listener-key.pem"),
                "httpPort": ports.http01,
                "tlsPort": ports.tls_alpn01,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": !eab_keys.is_empty(),
                "externalAccountMACKeys": eab_keys,
            }
        });
        let mut config = config;
        if let Some(validity) = options.certificate_validity {
            config["pebble"]["certificateValidityPeriod"] =
                serde_json::Value::from(validity.as_secs().max(1));
        }
        let config_path = dir.join("pebble-config.json");
        write_file(&config_path, &config.to_string())?;

        let mut challtestsrv = child_command(challtestsrv_program, false);
        challtestsrv
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{}", ports.dns)])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args([
                "-management",
                &format!("127.0.0.1:{}", ports.challtestsrv_management),
            ]);
        let challtestsrv = spawn_logged(challtestsrv, dir, "challtestsrv")?;

        let mut pebble = child_command(pebble_program, false);
        pebble
            .arg("-config")
            .arg(&config_path)
            .args([
                "-dnsserver",
                &options.dns_server.map_or_else(
                    || format!("127.0.0.1:{}", ports.dns),
                    |server| server.to_string(),
                ),
            ])
            .env(
                "PEBBLE_WFE_NONCEREJECT",
                options.nonce_reject_percent.to_string(),
            )
            .env("PEBBLE_AUTHZREUSE", options.authz_reuse_percent.to_string());
        if options.va_always_valid {
            pebble.env("PEBBLE_VA_ALWAYS_VALID", "1");
        } else {
            pebble.env_remove("PEBBLE_VA_ALWAYS_VALID");
        }
        if options.va_nosleep {
            pebble.env("PEBBLE_VA_NOSLEEP", "1");
        } else {
            pebble.env_remove("PEBBLE_VA_NOSLEEP");
        }
        let pebble = spawn_logged(pebble, dir, "pebble")?;

        let mut running = Pebble {
            pebble,
            challtestsrv,
            state_dir,
            ports,
        };
        running.wait_until_ready().await?;
        Ok(running)
    }

    async fn wait_until_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        let directory_url = self.directory_url();
        let ca_path = self.listener_ca_path();
        loop {
            let pebble_exit = self.pebble.try_wait().context("polling pebble")?;
            let challtestsrv_exit = self
                .challtestsrv
                .try_wait()
                .context("polling pebble-challtestsrv")?;
            let exited = [("pebble", pebble_exit), ("challtestsrv", challtestsrv_exit)]
                .into_iter()
                .find_map(|(name, status)| status.map(|status| (name, status)));
            if let Some((name, status)) = exited {
                let logs = self.logs();
                let port_taken = logs.contains("address already in use");
                let error = anyhow::anyhow!("{name} exited during start-up ({status})\n{logs}");
                return Err(if port_taken {
                    StartFailure::PortTaken(error)
                } else {
                    StartFailure::Fatal(error)
                });
            }
            if port_open(self.ports.listen).await
                && port_open(self.ports.challtestsrv_management).await
                && let Ok(response) = curl(Some(&ca_path), &[], &directory_url).await
                && response.status == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Fatal(anyhow::anyhow!(
                    "pebble did not serve {directory_url} within {} s\n{}",
                    START_TIMEOUT.as_secs(),
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ACME directory, e.g. `https://127.0.0.1:PORT/dir`.
    /// Stops the CA (to test what happens when it is unreachable); the state
    /// directory stays until the value is dropped.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.pebble.kill().await?;
        Ok(())
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.ports.listen)
    }

    /// PEM file of the CA that signed Pebble's HTTPS listener certificate
    /// (for `localhost` and `127.0.0.1`): the extra root an ACME client
    /// needs to talk to Pebble. Not the CA that issues ACME certificates;
    /// see [`root_pem`](Self::root_pem) for that.
    pub fn listener_ca_path(&self) -> PathBuf {
        self.state_dir.path().join("ca.pem")
    }

    /// Port on 127.0.0.1 that Pebble connects to for HTTP-01 validation.
    pub fn http01_port(&self) -> u16 {
        self.ports.http01
    }

    /// Port on 127.0.0.1 that Pebble connects to for TLS-ALPN-01 validation.
    pub fn tls_alpn01_port(&self) -> u16 {
        self.ports.tls_alpn01
    }

    /// Pebble's management interface, e.g. `https://127.0.0.1:PORT`.
    pub fn management_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.management)
    }

    /// The DNS server (pebble-challtestsrv) Pebble resolves through.
    pub fn dns_server(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.dns))
    }

    /// pebble-challtestsrv's management API, e.g. `http://127.0.0.1:PORT`.
    pub fn challtestsrv_management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.challtestsrv_management)
    }

    /// Whether Pebble still answers a request that reads its store. Pebble 2.4
    /// can deadlock under concurrent new orders (a lock-order inversion in its
    /// in-memory store); it then still serves `/dir` and nonces, but nothing
    /// else, for good. Blocks up to 5 s (runs `curl`).
    pub fn answers_store_reads(&self) -> bool {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "5", "--cacert"])
            .arg(self.listener_ca_path())
            .arg(format!(
                "{}/cert-status-by-serial/00",
                self.management_url()
            ))
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Directory holding the config, certificates and logs (`pebble.log`,
    /// `challtestsrv.log`); removed on drop.
    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// The last lines of both logs, for test failure messages.
    pub fn logs(&self) -> String {
        let dir = self.state_dir.path();
        format!(
            "--- pebble.log\n{}\n--- challtestsrv.log\n{}",
            log_tail(&dir.join("pebble.log"), LOG_TAIL_LINES),
            log_tail(&dir.join("challtestsrv.log"), LOG_TAIL_LINES)
        )
    }
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .is_ok()
}
