//! A throwaway PowerDNS Authoritative 4.7 for DNS-01 tests: a gsqlite3
//! backend in a temporary directory, its HTTP API on, the zones created
//! through that API; the Rust twin of `deploy/local/pdns.sh`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use crate::bind::daemon::{StartFailure, find_program, random_base64};
use crate::free_port;
use crate::process::{child_command, curl, log_tail, spawn_logged, write_file};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;
const LOG_TAIL_LINES: usize = 30;
const SCHEMA: &str = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";

/// A running `pdns_server`, killed on drop; its directory is removed on drop.
/// Its caches are off, so a query sees an API change at once.
#[derive(Debug)]
pub struct PowerDns {
    // The child first: it is dropped (killed) before the directory goes.
    pdns: Child,
    state_dir: tempfile::TempDir,
    dns_port: u16,
    api_port: u16,
    api_key: String,
}

impl PowerDns {
    /// Starts PowerDNS and creates `zones` (kind Native, NS `ns1.<zone>.`),
    /// waiting (up to 20 s) until the API and DNS answer.
    pub async fn start(zones: &[&str]) -> anyhow::Result<PowerDns> {
        let program = find_program("pdns_server")?;
        let sqlite = find_program("sqlite3")?;
        if !Path::new(SCHEMA).is_file() {
            bail!("{SCHEMA} is missing; run deploy/local/install-deps.sh (pdns-backend-sqlite3)");
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match PowerDns::start_once(&program, &sqlite).await {
                Ok(pdns) => {
                    for zone in zones {
                        pdns.create_zone(zone).await?;
                    }
                    return Ok(pdns);
                }
                Err(StartFailure::PortTaken(error)) => last_error = Some(error),
                Err(StartFailure::Fatal(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("pdns_server did not start")))
    }

    async fn start_once(program: &Path, sqlite: &Path) -> Result<PowerDns, StartFailure> {
        let state_dir = tempfile::Builder::new()
            .prefix("certfleet-pdns-")
            .tempdir()
            .context("creating the powerdns state directory")?;
        let dir = state_dir.path();
        let database = dir.join("pdns.sqlite3");
        let schema = Command::new(sqlite)
            .arg(&database)
            .arg(format!(".read {SCHEMA}"))
            .kill_on_drop(true)
            .output()
            .await
            .context("running sqlite3")?;
        if !schema.status.success() {
            return Err(StartFailure::Fatal(anyhow::anyhow!(
                "creating the powerdns database failed: {}",
                String::from_utf8_lossy(&schema.stderr).trim()
            )));
        }
        let dns_port = free_port();
        let api_port = free_port();
        let api_key = random_base64();
        write_file(
            &dir.join("pdns.conf"),
            &pdns_conf(dir, dns_port, api_port, &api_key),
        )?;
        let mut command = child_command(program, false);
        command
            .arg(format!("--config-dir={}", dir.display()))
            .args([
                "--daemon=no",
                "--guardian=no",
                "--disable-syslog",
                "--write-pid=no",
            ]);
        let pdns = spawn_logged(command, dir, "pdns")?;
        let mut running = PowerDns {
            pdns,
            state_dir,
            dns_port,
            api_port,
            api_key,
        };
        running.wait_until_ready().await?;
        Ok(running)
    }

    async fn wait_until_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        let server_url = format!("{}/api/v1/servers/localhost", self.api_url());
        loop {
            if let Some(status) = self.pdns.try_wait().context("polling pdns_server")? {
                let logs = self.logs();
                let error =
                    anyhow::anyhow!("pdns_server exited during start-up ({status})\n{logs}");
                return Err(if logs.contains("already in use") {
                    StartFailure::PortTaken(error)
                } else {
                    StartFailure::Fatal(error)
                });
            }
            // DNS listens before the API does.
            if let Ok(answer) = self.api("GET", &server_url, None).await
                && answer.0 == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Fatal(anyhow::anyhow!(
                    "pdns_server did not answer {server_url} within {} s\n{}",
                    START_TIMEOUT.as_secs(),
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn create_zone(&self, zone: &str) -> anyhow::Result<()> {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        let body = serde_json::json!({
            "name": format!("{zone}."),
            "kind": "Native",
            "nameservers": [format!("ns1.{zone}.")],
            "soa_edit_api": "DEFAULT",
        });
        let url = format!("{}/api/v1/servers/localhost/zones", self.api_url());
        let (status, answer) = self.api("POST", &url, Some(&body)).await?;
        if status != 201 {
            bail!("creating zone {zone} failed ({status}): {answer}");
        }
        Ok(())
    }

    /// One API call with the key; the status and the body as JSON (or text).
    async fn api(
        &self,
        method: &str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let header = format!("X-API-Key: {}", self.api_key);
        let mut args = vec!["-X", method, "-H", &header];
        let body_text = body.map(serde_json::Value::to_string);
        if let Some(body_text) = &body_text {
            args.extend(["-H", "Content-Type: application/json", "--data", body_text]);
        }
        let response = curl(None, &args, url).await?;
        let text = String::from_utf8_lossy(&response.body).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((response.status, json))
    }

    /// DNS, UDP and TCP: `127.0.0.1:PORT`.
    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.dns_port))
    }

    /// The API's base URL, `http://127.0.0.1:PORT` (paths start `/api/v1`).
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The `X-API-Key` the API accepts.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The TXT values at `name`, sorted, as served over DNS.
    pub async fn txt_values(&self, name: &str) -> anyhow::Result<Vec<String>> {
        crate::bind::daemon::txt_values(self.dns_addr(), name).await
    }

    /// Every TXT record in any zone (the zones start with none: at an
    /// `_acme-challenge` name or where its CNAME points), as
    /// `NAME TXT "VALUE"`, read through the API; empty when DNS-01 left
    /// nothing behind.
    pub async fn acme_challenge_records(&self) -> anyhow::Result<Vec<String>> {
        let zones_url = format!("{}/api/v1/servers/localhost/zones", self.api_url());
        let (status, zones) = self.api("GET", &zones_url, None).await?;
        if status != 200 {
            bail!("listing zones failed ({status}): {zones}");
        }
        let mut found = Vec::new();
        for zone in zones.as_array().into_iter().flatten() {
            let id = zone["id"].as_str().context("a zone without an id")?;
            let (status, detail) = self.api("GET", &format!("{zones_url}/{id}"), None).await?;
            if status != 200 {
                bail!("reading zone {id} failed ({status}): {detail}");
            }
            for rrset in detail["rrsets"].as_array().into_iter().flatten() {
                let name = rrset["name"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_end_matches('.');
                if rrset["type"] != "TXT" {
                    continue;
                }
                for record in rrset["records"].as_array().into_iter().flatten() {
                    let content = record["content"].as_str().unwrap_or_default();
                    found.push(format!("{name} TXT {content}"));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Directory holding the config, the database and `pdns.log`.
    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// The last lines of the log, for test failure messages.
    pub fn logs(&self) -> String {
        log_tail(&self.state_dir.path().join("pdns.log"), LOG_TAIL_LINES)
    }
}

fn pdns_conf(dir: &Path, dns_port: u16, api_port: u16, api_key: &str) -> String {
    let dir = dir.display();
    format!(
        "launch=gsqlite3\n\
         gsqlite3-database={dir}/pdns.sqlite3\n\
         local-address=127.0.0.1:{dns_port}\n\
         socket-dir={dir}\n\
         api=yes\n\
         api-key={api_key}\n\
         webserver=yes\n\
         webserver-address=127.0.0.1\n\
         webserver-port={api_port}\n\
         webserver-allow-from=127.0.0.0/8\n\
         cache-ttl=0\n\
         negquery-cache-ttl=0\n\
         query-cache-ttl=0\n\
         security-poll-suffix=\n\
         distributor-threads=1\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_zones_that_answer_over_dns_and_api() -> anyhow::Result<()> {
        let pdns = PowerDns::start(&["example.test", "sub.example.test"]).await?;
        let soa = crate::bind::daemon::dig(pdns.dns_addr(), &["+short", "SOA", "sub.example.test"])
            .await?;
        assert!(soa.contains("sub.example.test."), "{soa}");
        assert!(pdns.acme_challenge_records().await?.is_empty());
        assert!(
            pdns.txt_values("_acme-challenge.example.test")
                .await?
                .is_empty()
        );
        Ok(())
    }
}
