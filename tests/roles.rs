//! Processes of the distributed mode (`certfleet-api`, `certfleet-issuer`,
//! `certfleet-scheduler`, `certfleet-responder`) for the end-to-end tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// A binary of the distributed mode (`certfleet-api`, `certfleet-issuer`, …)
/// next to the test executable, or in the directory `CERTFLEET_BIN_DIR`.
pub fn role_binary(name: &str) -> PathBuf {
    let directory = match std::env::var_os("CERTFLEET_BIN_DIR") {
        Some(directory) => PathBuf::from(directory),
        None => std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .to_owned(),
    };
    let binary = directory.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build the binaries with `cargo build --workspace` (deploy/local/test.sh does)",
        binary.display()
    );
    binary
}

/// A child process logging to a file; killed (and reaped) on drop.
pub struct LoggedChild {
    child: std::process::Child,
    pub log_path: PathBuf,
}

impl LoggedChild {
    /// Starts `command` with stdout and stderr going to `log_path`.
    pub fn spawn(
        mut command: std::process::Command,
        log_path: PathBuf,
        what: &str,
    ) -> anyhow::Result<LoggedChild> {
        let log = std::fs::File::create(&log_path)?;
        let child = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(LoggedChild { child, log_path })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One process of the distributed mode, logging to a file; killed on drop.
pub struct RoleProcess {
    process: LoggedChild,
    pub name: String,
}

impl std::ops::Deref for RoleProcess {
    type Target = LoggedChild;
    fn deref(&self) -> &LoggedChild {
        &self.process
    }
}

impl std::ops::DerefMut for RoleProcess {
    fn deref_mut(&mut self) -> &mut LoggedChild {
        &mut self.process
    }
}

impl RoleProcess {
    /// Starts `binary` with `args` and `env`, logging to `<log_dir>/<name>.log`.
    pub fn spawn(
        binary: &str,
        name: &str,
        args: &[String],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<RoleProcess> {
        let mut command = std::process::Command::new(role_binary(binary));
        command
            .args(args)
            .envs(env.iter().map(|(key, value)| (key, value)));
        Ok(RoleProcess {
            process: LoggedChild::spawn(command, log_dir.join(format!("{name}.log")), binary)?,
            name: name.to_owned(),
        })
    }

    /// Waits until `GET /healthz` on `address` answers 200 "ok".
    pub async fn wait_healthy(&mut self, address: SocketAddr) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
                let mut answer = String::new();
                if stream
                    .write_all(b"GET /healthz HTTP/1.0\r\nHost: health\r\n\r\n")
                    .await
                    .is_ok()
                    && stream.read_to_string(&mut answer).await.is_ok()
                    && answer.starts_with("HTTP/1.0 200")
                    && answer.ends_with("ok")
                {
                    return Ok(());
                }
            }
            if let Some(status) = self.exited()? {
                bail!("{} exited with {status}: {}", self.name, self.log());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} is not healthy on {address}: {}", self.name, self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The shared parts of a distributed deployment for one test: its own
/// PostgreSQL database and RabbitMQ vhost (dropped with it), a master key, the
/// CA settings, a log directory, and the admin token made by
/// `certfleet-api --create-admin-token` (the way an operator gets the first one).
pub struct RoleStack {
    pub database: certfleet_testkit::TestDatabase,
    pub vhost: certfleet_testkit::TestVhost,
    /// `CERTFLEET_*` settings every process gets.
    pub env: Vec<(String, String)>,
    pub admin_token: String,
    pub logs: tempfile::TempDir,
}

impl RoleStack {
    pub async fn create(pebble: &certfleet_testkit::Pebble) -> anyhow::Result<RoleStack> {
        let database = certfleet_testkit::TestDatabase::create().await?;
        let vhost = certfleet_testkit::TestVhost::create().await?;
        let logs = tempfile::tempdir()?;
        let key = std::process::Command::new("openssl")
            .args(["rand", "-base64", "32"])
            .output()
            .context("running openssl rand")?;
        if !key.status.success() {
            bail!("openssl rand failed");
        }
        let env: Vec<(String, String)> = [
            ("CERTFLEET_DATABASE_URL", database.url()),
            ("CERTFLEET_AMQP_URL", vhost.amqp_url()),
            (
                "CERTFLEET_MASTER_KEY",
                String::from_utf8(key.stdout)?.trim().to_owned(),
            ),
            ("CERTFLEET_CA_DIRECTORY", pebble.directory_url()),
            (
                "CERTFLEET_CA_ROOT",
                pebble.listener_ca_path().to_string_lossy().into_owned(),
            ),
            ("CERTFLEET_LOG", "info".to_owned()),
            // Pebble has no rate limits; a test that wants budgets sets its own.
            ("CERTFLEET_RATE_LIMIT", "off".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let bootstrap = std::process::Command::new(role_binary("certfleet-api"))
            .arg("--create-admin-token")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .output()
            .context("running certfleet-api --create-admin-token")?;
        if !bootstrap.status.success() {
            bail!(
                "certfleet-api --create-admin-token: {}",
                String::from_utf8_lossy(&bootstrap.stderr)
            );
        }
        let admin_token = String::from_utf8(bootstrap.stdout)?.trim().to_owned();
        Ok(RoleStack {
            database,
            vhost,
            env,
            admin_token,
            logs,
        })
    }

    /// Drops the database and the vhost (they are also dropped when the stack
    /// is, without reporting errors).
    pub async fn remove(self) -> anyhow::Result<()> {
        self.database.drop_database().await?;
        self.vhost.delete().await
    }

    /// Starts `binary` as `name` with `args` plus a `--health-listen` on a free
    /// port; returns it with that address.
    pub fn spawn(
        &self,
        binary: &str,
        name: &str,
        mut args: Vec<String>,
    ) -> anyhow::Result<(RoleProcess, SocketAddr)> {
        let health = SocketAddr::from(([127, 0, 0, 1], certfleet_testkit::free_port()));
        args.extend(["--health-listen".to_owned(), health.to_string()]);
        let process = RoleProcess::spawn(binary, name, &args, &self.env, self.logs.path())?;
        Ok((process, health))
    }
}

impl RoleStack {
    /// An api listening for gRPC on a free port (not yet healthy): the
    /// process, with its health address, and the gRPC address.
    pub fn spawn_api(&self) -> anyhow::Result<((RoleProcess, SocketAddr), SocketAddr)> {
        let grpc = SocketAddr::from(([127, 0, 0, 1], certfleet_testkit::free_port()));
        let api = self.spawn(
            "certfleet-api",
            "api",
            vec!["--grpc-listen".to_owned(), grpc.to_string()],
        )?;
        Ok((api, grpc))
    }

    /// An api on a free port, a responder on Pebble's HTTP-01 port and an
    /// issuer self-checking there, all healthy; returns them with the api's
    /// gRPC address.
    pub async fn spawn_api_responder_issuer(
        &self,
        pebble: &certfleet_testkit::Pebble,
    ) -> anyhow::Result<(Vec<(RoleProcess, SocketAddr)>, SocketAddr)> {
        let (api, grpc) = self.spawn_api()?;
        let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
        let mut processes = vec![
            api,
            self.spawn(
                "certfleet-responder",
                "responder",
                vec!["--http01-listen".to_owned(), http01.to_string()],
            )?,
            self.spawn(
                "certfleet-issuer",
                "issuer",
                vec!["--http01-self-check-addr".to_owned(), http01.to_string()],
            )?,
        ];
        wait_all_healthy(&mut processes).await?;
        Ok((processes, grpc))
    }
}

/// Every process's log, each under its name.
pub fn all_logs(processes: &[(RoleProcess, SocketAddr)]) -> String {
    processes
        .iter()
        .map(|(process, _)| format!("--- {}\n{}", process.name, process.log()))
        .collect()
}

/// Waits until every process answers its health check.
pub async fn wait_all_healthy(processes: &mut [(RoleProcess, SocketAddr)]) -> anyhow::Result<()> {
    for (process, health) in processes {
        process.wait_healthy(*health).await?;
    }
    Ok(())
}

/// Stops every process with SIGTERM; an error names each one that did not
/// exit 0, with its log.
pub fn terminate_all(processes: &mut [(RoleProcess, SocketAddr)]) -> anyhow::Result<()> {
    let mut failed = String::new();
    for (process, _) in processes {
        let status = process.terminate();
        if !status.success() {
            failed.push_str(&format!(
                "{} exited with {status}: {}\n",
                process.name,
                process.log()
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{failed}")
    }
}

/// Declares a queue bound to `certfleet.events` for every certificate event,
/// the way a consumer of events does (docs/EVENTS.md): `name` durable, or,
/// when `name` is empty, a server-named exclusive one. Returns its name.
pub async fn bind_events_queue(channel: &lapin::Channel, name: &str) -> anyhow::Result<String> {
    let queue = channel
        .queue_declare(
            name.into(),
            lapin::options::QueueDeclareOptions {
                durable: !name.is_empty(),
                exclusive: name.is_empty(),
                ..lapin::options::QueueDeclareOptions::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    let name = queue.name().as_str().to_owned();
    channel
        .queue_bind(
            name.as_str().into(),
            "certfleet.events".into(),
            "certificate.#".into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    Ok(name)
}
