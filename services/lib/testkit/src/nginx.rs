//! A throwaway nginx serving HTTPS on a free loopback port, whose
//! configuration includes `<certfleet_dir>/servers/*.conf` the way an
//! operator's `http {}` block would for certfleet's nginx target; or one
//! serving a directory over plain HTTP, as a webroot for HTTP-01 answers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::Child;

use crate::bind::daemon::{StartFailure, find_program, runs_as_root};
use crate::free_port;
use crate::listener::ListenerCertificates;
use crate::process::{child_command, log_tail, spawn_logged, write_file};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;
const LOG_TAIL_LINES: usize = 30;

/// A running nginx master (`daemon off`), killed on drop with its workers;
/// its prefix directory is removed on drop.
///
/// A default server on [`address`](Self::address) answers every name that
/// no generated server block claims, with a throwaway `localhost`
/// certificate.
#[derive(Debug)]
pub struct Nginx {
    // The child first: it is dropped (killed) before the directory goes.
    nginx: Child,
    prefix: tempfile::TempDir,
    program: PathBuf,
    port: u16,
}

impl Nginx {
    /// Starts nginx and waits (up to 20 s) until it accepts connections.
    pub async fn start() -> anyhow::Result<Nginx> {
        Self::start_site(&Site::Https).await
    }

    /// Starts nginx serving the directory `root` as static files over plain
    /// HTTP on `127.0.0.1:port` (a webroot for HTTP-01 answers at
    /// `<root>/.well-known/acme-challenge/<token>`), logging every request to
    /// `<prefix>/access.log`; waits (up to 20 s) until it accepts connections.
    ///
    /// [`address`](Self::address) is then that plain HTTP address, and
    /// [`certfleet_dir`](Self::certfleet_dir) is not included anywhere.
    pub async fn start_webroot(port: u16, root: &Path) -> anyhow::Result<Nginx> {
        Self::start_site(&Site::Webroot { port, root }).await
    }

    async fn start_site(site: &Site<'_>) -> anyhow::Result<Nginx> {
        let program = find_program("nginx")?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&program, site).await {
                Ok(nginx) => return Ok(nginx),
                Err(StartFailure::PortTaken(error)) => last_error = Some(error),
                Err(StartFailure::Fatal(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nginx did not start")))
    }

    async fn start_once(program: &Path, site: &Site<'_>) -> Result<Nginx, StartFailure> {
        let prefix = tempfile::Builder::new()
            .prefix("certfleet-nginx-")
            .tempdir()
            .context("creating the nginx prefix directory")?;
        let dir = prefix.path();
        let certificates = ListenerCertificates::generate()?;
        write_file(&dir.join("default.pem"), &certificates.certificate_pem)?;
        write_file(&dir.join("default-key.pem"), &certificates.private_key_pem)?;
        std::fs::create_dir_all(dir.join("certfleet/servers"))
            .context("creating the servers directory")?;
        std::fs::create_dir_all(dir.join("temp")).context("creating the temp directory")?;
        let as_root = runs_as_root(dir);
        let (port, conf) = match site {
            Site::Https => {
                let port = free_port();
                (port, nginx_conf(dir, port, as_root))
            }
            Site::Webroot { port, root } => (*port, webroot_conf(dir, *port, root, as_root)),
        };
        write_file(&dir.join("nginx.conf"), &conf)?;
        let mut command = child_command(program, false);
        command.args(args(dir));
        let nginx = spawn_logged(command, dir, "nginx")?;
        let mut running = Nginx {
            nginx,
            prefix,
            program: program.to_owned(),
            port,
        };
        running.wait_until_ready().await?;
        Ok(running)
    }

    async fn wait_until_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.nginx.try_wait().context("polling nginx")? {
                let logs = self.logs();
                let error = anyhow::anyhow!("nginx exited during start-up ({status})\n{logs}");
                return Err(if logs.contains("Address already in use") {
                    StartFailure::PortTaken(error)
                } else {
                    StartFailure::Fatal(error)
                });
            }
            if tokio::net::TcpStream::connect(self.address()).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Fatal(anyhow::anyhow!(
                    "nginx did not listen on {} within {} s\n{}",
                    self.address(),
                    START_TIMEOUT.as_secs(),
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where nginx serves HTTPS.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// A `listen` parameter for generated server blocks on [`address`](Self::address).
    pub fn listen(&self) -> String {
        format!("127.0.0.1:{} ssl", self.port)
    }

    /// The nginx binary.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Arguments that select this instance, for `nginx ARGS -t` and
    /// `nginx ARGS -s reload`.
    pub fn args(&self) -> Vec<String> {
        args(self.prefix.path())
    }

    /// The directory whose `servers/*.conf` the configuration includes.
    pub fn certfleet_dir(&self) -> PathBuf {
        self.prefix.path().join("certfleet")
    }

    /// The prefix directory (configuration, pid file, `nginx.log`).
    pub fn prefix(&self) -> &Path {
        self.prefix.path()
    }

    /// The last lines of nginx's log, for test failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- nginx.log\n{}",
            log_tail(&self.prefix.path().join("nginx.log"), LOG_TAIL_LINES)
        )
    }
}

/// What a started nginx serves.
enum Site<'a> {
    /// HTTPS with a default server and `certfleet/servers/*.conf` included.
    Https,
    /// Static files of `root` over plain HTTP on `127.0.0.1:port`.
    Webroot { port: u16, root: &'a Path },
}

fn args(dir: &Path) -> Vec<String> {
    vec![
        "-p".to_owned(),
        format!("{}/", dir.display()),
        "-c".to_owned(),
        dir.join("nginx.conf").display().to_string(),
        "-e".to_owned(),
        "stderr".to_owned(),
    ]
}

fn nginx_conf(dir: &Path, port: u16, as_root: bool) -> String {
    let dir_text = dir.display();
    conf(
        dir,
        as_root,
        &format!(
            r#"    access_log off;
    server {{
        listen 127.0.0.1:{port} ssl default_server;
        server_name _;
        ssl_certificate {dir_text}/default.pem;
        ssl_certificate_key {dir_text}/default-key.pem;
        return 404;
    }}
    include {dir_text}/certfleet/servers/*.conf;
"#
        ),
    )
}

fn webroot_conf(dir: &Path, port: u16, root: &Path, as_root: bool) -> String {
    let (dir_text, root) = (dir.display(), root.display());
    conf(
        dir,
        as_root,
        &format!(
            r#"    access_log {dir_text}/access.log;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name _;
        root {root};
        location / {{
            try_files $uri =404;
        }}
    }}
"#
        ),
    )
}

/// The main configuration around `http`, the inside of its `http {}` block:
/// everything (pid file, temporary files) stays in the prefix `dir`.
fn conf(dir: &Path, as_root: bool, http: &str) -> String {
    let dir = dir.display();
    // As root the workers would otherwise switch to nobody, who cannot enter
    // the private prefix directory.
    let user = if as_root { "user root;\n" } else { "" };
    format!(
        r#"{user}worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 128; }}
http {{
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
{http}}}
"#
    )
}
