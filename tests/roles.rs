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
