//! A real SMTP server for email tests: aiosmtpd on a free loopback port, with
//! a handler that stores every message it accepts as a JSON file.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use tokio::process::Child;

use crate::bind::daemon::StartFailure;
use crate::free_port;
use crate::process::{child_command, log_tail, require_program, spawn_logged, write_file};

const START_TIMEOUT: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 3;
const INSTALL_HINT: &str = "run deploy/local/install-deps.sh";

/// The handler aiosmtpd loads (`-c certfleet_sink.Sink DIR`): one JSON file
/// per message, written under a temporary name and renamed, so a reader never
/// sees half a file.
const HANDLER: &str = r#"
import email, email.policy, json, os, time

class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    @classmethod
    def from_cli(cls, parser, directory):
        return cls(directory)

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        try:
            part = message.get_body(preferencelist=("plain",))
            text = part.get_content() if part is not None else ""
        except Exception as error:
            text = "<unreadable body: %s>" % error
        record = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "raw": raw.decode("utf-8", "replace"),
            "headers": [[name, str(value)] for name, value in message.items()],
            "text": text,
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
        }
        self.count += 1
        name = "%020d-%06d" % (time.time_ns(), self.count)
        partial = os.path.join(self.directory, name + ".part")
        with open(partial, "w", encoding="utf-8") as file:
            json.dump(record, file)
        os.replace(partial, os.path.join(self.directory, name + ".json"))
        return "250 Message accepted for delivery"
"#;

/// How the sink protects its port.
#[derive(Debug, Clone)]
pub enum SmtpTls {
    /// Plain SMTP; no STARTTLS offered.
    None,
    /// STARTTLS offered and required before `MAIL`.
    StartTls { cert_pem: String, key_pem: String },
    /// TLS from the first byte (SMTPS).
    Implicit { cert_pem: String, key_pem: String },
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// Envelope sender (`MAIL FROM`).
    pub from: String,
    /// Envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent.
    pub raw: String,
    /// Headers, unfolded and decoded (RFC 2047) by Python's `email` package.
    pub headers: Vec<(String, String)>,
    /// The decoded text/plain body.
    pub text: String,
    /// Whether the session was encrypted (STARTTLS or SMTPS).
    pub tls: bool,
}

impl ReceivedMail {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn subject(&self) -> Option<&str> {
        self.header("Subject")
    }

    fn from_json(value: &serde_json::Value) -> Option<ReceivedMail> {
        let strings = |key: &str| -> Option<Vec<String>> {
            value
                .get(key)?
                .as_array()?
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect()
        };
        let headers = value
            .get("headers")?
            .as_array()?
            .iter()
            .map(|pair| {
                Some((
                    pair.get(0)?.as_str()?.to_owned(),
                    pair.get(1)?.as_str()?.to_owned(),
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ReceivedMail {
            from: value.get("from")?.as_str()?.to_owned(),
            to: strings("to")?,
            raw: value.get("raw")?.as_str()?.to_owned(),
            headers,
            text: value.get("text")?.as_str()?.to_owned(),
            tls: value.get("tls")?.as_bool()?,
        })
    }
}

/// A running aiosmtpd; killed on drop. It can be stopped and started again
/// on the same port to test an unreachable relay.
#[derive(Debug)]
pub struct SmtpSink {
    // The child first: it is killed before the directory goes.
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    tls_args: Vec<String>,
    python: PathBuf,
}

impl SmtpSink {
    /// Starts aiosmtpd and waits (up to 15 s) until it accepts connections.
    pub async fn start(tls: SmtpTls) -> anyhow::Result<SmtpSink> {
        let python = require_program("python3")?;
        let dir = tempfile::Builder::new()
            .prefix("certfleet-smtp-")
            .tempdir()
            .context("creating the smtp sink directory")?;
        let path = dir.path();
        std::fs::create_dir(path.join("mail")).context("creating the mail directory")?;
        write_file(&path.join("certfleet_sink.py"), HANDLER)?;
        let tls_args = match &tls {
            SmtpTls::None => Vec::new(),
            SmtpTls::StartTls { cert_pem, key_pem } | SmtpTls::Implicit { cert_pem, key_pem } => {
                write_file(&path.join("cert.pem"), cert_pem)?;
                write_file(&path.join("key.pem"), key_pem)?;
                let (cert_flag, key_flag) = if matches!(tls, SmtpTls::StartTls { .. }) {
                    ("--tlscert", "--tlskey")
                } else {
                    ("--smtpscert", "--smtpskey")
                };
                vec![
                    cert_flag.to_owned(),
                    path.join("cert.pem").display().to_string(),
                    key_flag.to_owned(),
                    path.join("key.pem").display().to_string(),
                ]
            }
        };
        let mut sink = SmtpSink {
            child: None,
            dir,
            port: 0,
            tls_args,
            python,
        };
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            sink.port = free_port();
            match sink.spawn().await {
                Ok(()) => return Ok(sink),
                Err(StartFailure::PortTaken(error)) => last_error = Some(error),
                Err(StartFailure::Fatal(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("aiosmtpd did not start")))
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message accepted so far, oldest first (including those from
    /// before a restart).
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let Ok(entries) = std::fs::read_dir(self.mail_dir()) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "json")
            })
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|path| std::fs::read(path).ok())
            .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter_map(|value| ReceivedMail::from_json(&value))
            .collect()
    }

    /// Waits until at least `count` messages arrived; fails after `timeout`
    /// with the server's log.
    pub async fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedMail>> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return Ok(messages);
            }
            if Instant::now() >= deadline {
                bail!(
                    "aiosmtpd received {} of {count} messages within {} s\n{}",
                    messages.len(),
                    timeout.as_secs_f32(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server; the port is free until [`start_again`](Self::start_again).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("killing aiosmtpd")?;
        }
        Ok(())
    }

    /// Starts the server again on the same port, keeping received messages.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn().await {
                Ok(()) => return Ok(()),
                // The old socket may linger for a moment.
                Err(StartFailure::PortTaken(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(StartFailure::PortTaken(error) | StartFailure::Fatal(error)) => {
                    return Err(error);
                }
            }
        }
    }

    /// The last lines of aiosmtpd's output.
    pub fn logs(&self) -> String {
        format!(
            "--- aiosmtpd.log\n{}",
            log_tail(&self.dir.path().join("aiosmtpd.log"), 30)
        )
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    async fn spawn(&mut self) -> Result<(), StartFailure> {
        let path = self.dir.path();
        let mut command = child_command(&self.python, false);
        command
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.tls_args)
            .args(["-c", "certfleet_sink.Sink"])
            .arg(self.mail_dir())
            .env("PYTHONPATH", path)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let mut child = spawn_logged(command, path, "aiosmtpd")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("polling aiosmtpd")? {
                let logs = self.logs();
                if logs.contains("No module named aiosmtpd") {
                    return Err(StartFailure::Fatal(anyhow!(
                        "the python module aiosmtpd is missing; {INSTALL_HINT}\n{logs}"
                    )));
                }
                let lowered = logs.to_lowercase();
                if lowered.contains("address already in use") || lowered.contains("errno 98") {
                    return Err(StartFailure::PortTaken(anyhow!(
                        "aiosmtpd: address already in use\n{logs}"
                    )));
                }
                return Err(StartFailure::Fatal(anyhow!(
                    "aiosmtpd exited during start-up ({status})\n{logs}"
                )));
            }
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                .await
                .is_ok()
            {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Fatal(anyhow!(
                    "aiosmtpd did not listen on 127.0.0.1:{} within {} s\n{}",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
