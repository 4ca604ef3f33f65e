//! A throwaway Caddy with its admin API and one HTTPS server on free
//! loopback ports; certificates come only from what tests load through the
//! admin API (automatic HTTPS is off).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::Child;

use crate::bind::daemon::{StartFailure, find_program};
use crate::free_port;
use crate::process::{child_command, curl, log_tail, spawn_logged, write_file};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;
const LOG_TAIL_LINES: usize = 30;

/// A running `caddy run`, killed on drop; its directory is removed on drop.
#[derive(Debug)]
pub struct Caddy {
    // The child first: it is dropped (killed) before the directory goes.
    caddy: Child,
    state_dir: tempfile::TempDir,
    program: PathBuf,
    admin_port: u16,
    https_port: u16,
}

impl Caddy {
    /// Starts Caddy and waits (up to 20 s) until the admin API answers and
    /// the HTTPS server listens.
    pub async fn start() -> anyhow::Result<Caddy> {
        let program = find_program("caddy")?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&program).await {
                Ok(caddy) => return Ok(caddy),
                Err(StartFailure::PortTaken(error)) => last_error = Some(error),
                Err(StartFailure::Fatal(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("caddy did not start")))
    }

    async fn start_once(program: &Path) -> Result<Caddy, StartFailure> {
        let state_dir = tempfile::Builder::new()
            .prefix("certfleet-caddy-")
            .tempdir()
            .context("creating the caddy state directory")?;
        let dir = state_dir.path();
        let admin_port = free_port();
        let https_port = free_port();
        let config = serde_json::json!({
            "admin": {
                "listen": format!("127.0.0.1:{admin_port}"),
                "config": { "persist": false },
            },
            "storage": { "module": "file_system", "root": dir.join("data") },
            "apps": {
                "http": {
                    "servers": {
                        "x": {
                            "listen": [format!("127.0.0.1:{https_port}")],
                            "automatic_https": { "disable": true },
                            "tls_connection_policies": [{}],
                            "routes": [{
                                "handle": [{
                                    "handler": "static_response",
                                    "body": "certfleet testkit caddy",
                                }],
                            }],
                        },
                    },
                },
            },
        });
        write_file(&dir.join("caddy.json"), &config.to_string())?;
        let caddy = spawn(program, dir)?;
        let mut running = Caddy {
            caddy,
            state_dir,
            program: program.to_owned(),
            admin_port,
            https_port,
        };
        running.wait_until_ready().await?;
        Ok(running)
    }

    async fn wait_until_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        let config_url = format!("{}/config/", self.admin_url());
        loop {
            if let Some(status) = self.caddy.try_wait().context("polling caddy")? {
                let logs = self.logs();
                let error = anyhow::anyhow!("caddy exited during start-up ({status})\n{logs}");
                return Err(if logs.contains("address already in use") {
                    StartFailure::PortTaken(error)
                } else {
                    StartFailure::Fatal(error)
                });
            }
            if tokio::net::TcpStream::connect(self.https_address())
                .await
                .is_ok()
                && let Ok(response) = curl(None, &[], &config_url).await
                && response.status == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Fatal(anyhow::anyhow!(
                    "caddy did not answer {config_url} within {} s\n{}",
                    START_TIMEOUT.as_secs(),
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The admin API, e.g. `http://127.0.0.1:PORT`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Where the HTTPS server listens.
    pub fn https_address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.https_port))
    }

    /// Stops Caddy (to test an unreachable admin API); the directory stays
    /// until the value is dropped.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.caddy.kill().await.context("killing caddy")
    }

    /// Starts Caddy again (after [`kill`](Self::kill)) with its first
    /// configuration on the same ports: what it was given through the admin
    /// API since is gone, as after a real restart without a saved config.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.caddy.kill().await;
        self.caddy = spawn(&self.program, self.state_dir.path())?;
        self.wait_until_ready()
            .await
            .map_err(|failure| match failure {
                StartFailure::PortTaken(error) | StartFailure::Fatal(error) => error,
            })
    }

    /// The directory holding the configuration, storage and `caddy.log`.
    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// The last lines of Caddy's log, for test failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- caddy.log\n{}",
            log_tail(&self.state_dir.path().join("caddy.log"), LOG_TAIL_LINES)
        )
    }
}

/// `caddy run` with `<dir>/caddy.json`, its home and storage in `dir`.
fn spawn(program: &Path, dir: &Path) -> anyhow::Result<Child> {
    let mut command = child_command(program, false);
    command
        .arg("run")
        .arg("--config")
        .arg(dir.join("caddy.json"))
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    spawn_logged(command, dir, "caddy")
}
