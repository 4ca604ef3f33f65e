//! A throwaway BIND 9 for DNS-01 tests: authoritative for the given zones,
//! taking TSIG-signed dynamic updates of TXT records, on a free loopback port;
//! the Rust twin of `deploy/local/bind.sh`.

pub(crate) mod daemon;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::Child;

use self::daemon::{StartFailure, dig, find_program, random_base64, runs_as_root, txt_values};
use crate::free_port;
use crate::process::{child_command, log_tail, spawn_logged, write_file};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;
const LOG_TAIL_LINES: usize = 30;
const UPDATE_KEY: &str = "certfleet-update";
const DENIED_KEY: &str = "certfleet-denied";

/// A zone to serve: SOA, NS `ns1.<zone>.` with A 127.0.0.1, and any extra
/// records.
#[derive(Debug, Clone)]
pub struct BindZone {
    name: String,
    extra_records: Vec<String>,
    updatable: bool,
}

impl BindZone {
    /// A zone the update key may change TXT records in (anywhere in the zone).
    pub fn new(name: &str) -> BindZone {
        BindZone {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            extra_records: Vec::new(),
            updatable: true,
        }
    }

    /// Adds a record in zone-file syntax, with absolute names, e.g.
    /// `_acme-challenge.cname.example.test. CNAME _acme-challenge.x.delegated.test.`.
    pub fn record(mut self, line: &str) -> BindZone {
        self.extra_records.push(line.to_owned());
        self
    }

    /// No key may update this zone: every update is answered REFUSED.
    pub fn read_only(mut self) -> BindZone {
        self.updatable = false;
        self
    }

    fn zone_file(&self) -> String {
        let zone = &self.name;
        let mut text = format!(
            "$TTL 60\n\
             {zone}. IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n\
             {zone}. IN NS ns1.{zone}.\n\
             ns1.{zone}. IN A 127.0.0.1\n"
        );
        for line in &self.extra_records {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// A running `named`, killed on drop; its directory is removed on drop.
///
/// Two TSIG keys (hmac-sha256) are defined: the update key, which may change
/// TXT records in every updatable zone, and the denied key, which the server
/// knows but lets change nothing (its updates are REFUSED). A local root zone
/// makes names outside the test zones NXDOMAIN at once; recursion is on for
/// 127.0.0.1 so a CNAME into another test zone is followed.
#[derive(Debug)]
pub struct Bind {
    // The child first: it is dropped (killed) before the directory goes.
    named: Child,
    state_dir: tempfile::TempDir,
    port: u16,
    zones: Vec<String>,
    update_secret: String,
    denied_secret: String,
    /// TXT records the zones started with (extra records).
    initial_txt: Vec<String>,
}

impl Bind {
    /// Starts BIND serving updatable `zones`, waiting (up to 20 s) until it
    /// answers for them.
    pub async fn start(zones: &[&str]) -> anyhow::Result<Bind> {
        Bind::start_zones(zones.iter().map(|zone| BindZone::new(zone)).collect()).await
    }

    /// Starts BIND serving `zones` as described.
    pub async fn start_zones(zones: Vec<BindZone>) -> anyhow::Result<Bind> {
        if zones.is_empty() {
            bail!("bind needs at least one zone");
        }
        let named = find_program("named")?;
        find_program("dig")?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Bind::start_once(&named, &zones).await {
                Ok(bind) => return Ok(bind),
                Err(StartFailure::PortTaken(error)) => last_error = Some(error),
                Err(StartFailure::Fatal(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("named did not start")))
    }

    async fn start_once(named: &Path, zones: &[BindZone]) -> Result<Bind, StartFailure> {
        let state_dir = tempfile::Builder::new()
            .prefix("certfleet-bind-")
            .tempdir()
            .context("creating the bind state directory")?;
        let dir = state_dir.path();
        let port = free_port();
        let update_secret = random_base64();
        let denied_secret = random_base64();
        let config = named_conf(dir, port, zones, &update_secret, &denied_secret);
        write_file(&dir.join("named.conf"), &config)?;
        write_file(&dir.join("root.zone"), ROOT_ZONE)?;
        for zone in zones {
            write_file(&dir.join(format!("{}.zone", zone.name)), &zone.zone_file())?;
        }
        let as_nobody = runs_as_root(dir);
        if as_nobody {
            // named writes its journals next to the zone files.
            give_to_nobody(dir)?;
        }
        let mut command = child_command(named, as_nobody);
        command
            .args(["-g", "-n", "1", "-c"])
            .arg(dir.join("named.conf"));
        let child = spawn_logged(command, dir, "named")?;
        let mut bind = Bind {
            named: child,
            state_dir,
            port,
            zones: zones.iter().map(|zone| zone.name.clone()).collect(),
            update_secret,
            denied_secret,
            initial_txt: Vec::new(),
        };
        bind.wait_until_ready().await?;
        bind.initial_txt = bind.txt_records().await?;
        Ok(bind)
    }

    async fn wait_until_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        let first_zone = self.zones.first().cloned().unwrap_or_default();
        loop {
            let exited = self.named.try_wait().context("polling named")?;
            let log = std::fs::read_to_string(self.state_dir.path().join("named.log"))
                .unwrap_or_default();
            // Someone else has the port (UDP or TCP): named gives up on the
            // interface and exits, or keeps running deaf. Retry elsewhere.
            let port_taken = ["address in use", "interface ignored", "unable to listen"]
                .iter()
                .any(|sign| log.contains(sign));
            if port_taken {
                let _ = self.named.kill().await;
                return Err(StartFailure::PortTaken(anyhow::anyhow!(
                    "named could not listen on port {}\n{}",
                    self.port,
                    self.logs()
                )));
            }
            if let Some(status) = exited {
                return Err(StartFailure::Fatal(anyhow::anyhow!(
                    "named exited during start-up ({status})\n{}",
                    self.logs()
                )));
            }
            if log.contains("running")
                && let Ok(answer) = dig(self.addr(), &["+short", "SOA", &first_zone]).await
                && !answer.trim().is_empty()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Fatal(anyhow::anyhow!(
                    "named did not answer for {first_zone} within {} s\n{}",
                    START_TIMEOUT.as_secs(),
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where it listens, UDP and TCP: `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The name of the key that may update TXT records.
    pub fn tsig_key_name(&self) -> &str {
        UPDATE_KEY
    }

    /// The update key's secret, base64.
    pub fn tsig_secret_base64(&self) -> &str {
        &self.update_secret
    }

    /// The name of a key the server knows but lets update nothing.
    pub fn denied_key_name(&self) -> &str {
        DENIED_KEY
    }

    /// The denied key's secret, base64.
    pub fn denied_secret_base64(&self) -> &str {
        &self.denied_secret
    }

    /// The TXT values at `name`, sorted (several strings of one value joined).
    pub async fn txt_values(&self, name: &str) -> anyhow::Result<Vec<String>> {
        txt_values(self.addr(), name).await
    }

    /// Every TXT record added since the start, in any zone (at an
    /// `_acme-challenge` name or where its CNAME points), as
    /// `NAME TXT "VALUE"`; empty when DNS-01 left nothing behind.
    pub async fn acme_challenge_records(&self) -> anyhow::Result<Vec<String>> {
        let mut added = self.txt_records().await?;
        added.retain(|record| !self.initial_txt.contains(record));
        Ok(added)
    }

    /// Every TXT record in every zone (by zone transfer), sorted.
    async fn txt_records(&self) -> anyhow::Result<Vec<String>> {
        let mut found = Vec::new();
        for zone in &self.zones {
            let transfer = dig(
                self.addr(),
                &["+nocmd", "+nostats", "+nocomments", "+onesoa", "AXFR", zone],
            )
            .await
            .with_context(|| format!("transferring {zone}"))?;
            if transfer.contains("Transfer failed") {
                bail!("transfer of {zone} failed: {transfer}");
            }
            for line in transfer.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let [name, _ttl, _class, "TXT", value @ ..] = fields.as_slice() {
                    let value = value.join(" ");
                    found.push(format!("{} TXT {value}", name.trim_end_matches('.')));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Directory holding the config, zones, journals and `named.log`.
    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// The last lines of the log, for test failure messages.
    pub fn logs(&self) -> String {
        log_tail(&self.state_dir.path().join("named.log"), LOG_TAIL_LINES)
    }
}

const ROOT_ZONE: &str = "$TTL 60\n\
    . IN SOA a.root.test. hostmaster.root.test. 1 3600 600 86400 60\n\
    . IN NS a.root.test.\n\
    a.root.test. IN A 127.0.0.1\n";

fn named_conf(
    dir: &Path,
    port: u16,
    zones: &[BindZone],
    update_secret: &str,
    denied_secret: &str,
) -> String {
    let dir = dir.display();
    let mut text = format!(
        r#"options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-recursion {{ 127.0.0.1; }};
    allow-transfer {{ 127.0.0.1; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{UPDATE_KEY}" {{ algorithm hmac-sha256; secret "{update_secret}"; }};
key "{DENIED_KEY}" {{ algorithm hmac-sha256; secret "{denied_secret}"; }};
zone "." {{ type primary; file "root.zone"; }};
"#
    );
    for zone in zones {
        let policy = if zone.updatable {
            format!("update-policy {{ grant {UPDATE_KEY} zonesub TXT; }};")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "zone \"{name}\" {{ type primary; file \"{name}.zone\"; {policy} }};\n",
            name = zone.name
        ));
    }
    text
}

/// Hands `dir` and its files to nobody:nogroup (65534 on Debian).
fn give_to_nobody(dir: &Path) -> anyhow::Result<()> {
    const NOBODY: u32 = 65_534;
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry.context("listing the state directory")?.path();
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY))
            .with_context(|| format!("handing {} to nobody", path.display()))?;
    }
    std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY))
        .with_context(|| format!("handing {} to nobody", dir.display()))
}

#[cfg(test)]
mod tests;
