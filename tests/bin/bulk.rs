//! `certfleet-bulk`: the load generator of `deploy/local/bench-bulk.sh`.
//!
//! Requests many certificates from a running distributed certfleet over gRPC
//! and measures, for each one, the time from sending its `CreateCertificate`
//! to the arrival of its `certificate.issued` event on RabbitMQ:
//!
//! 1. binds an exclusive, auto-delete queue of its own to the
//!    `certfleet.events` exchange (routing keys `certificate.issued` and
//!    `certificate.failed`) on the stack's vhost, before anything is sent;
//! 2. sends `--count` requests for the names of `--names` (`{i}` becomes
//!    1..=count), at most `--concurrency` in flight, noting when each was sent;
//! 3. takes a certificate as valid when its `issued` event arrives (events are
//!    deduplicated by their id and matched by certificate id), and as failed
//!    when its request failed or a `failed` event with reason `final` arrives;
//! 4. writes one TSV line per certificate to `--tsv` and a summary to stdout
//!    (and, as `key<TAB>value` lines, to `--summary`).
//!
//! Progress goes to stderr every `--progress` seconds. Exits 1 when a
//! certificate did not become valid within `--timeout` seconds, naming it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use certfleet_cli::client::Bearer;
use certfleet_proto::v1::certificate_service_client::CertificateServiceClient;
use certfleet_proto::v1::organization_service_client::OrganizationServiceClient;
use certfleet_proto::v1::{
    self as pb, CertificateEvent, CreateApiTokenRequest, CreateCertificateRequest,
    CreateOrganizationRequest, GetCertificateRequest,
};
use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Channel;

const USAGE: &str = "\
usage: certfleet-bulk --endpoint URL --amqp-url URL --tsv FILE
                      (--token-file FILE | --admin-token-file FILE --org SLUG)
                      [--count 1000] [--concurrency 64] [--names bulk-{i}.certfleet.test]
                      [--timeout 600] [--progress 5] [--summary FILE]

Requests --count certificates from certfleet at --endpoint (gRPC), at most
--concurrency in flight, and times each from its request to its
certificate.issued event on the certfleet.events exchange of --amqp-url.
The organization's write token is read from --token-file; with
--admin-token-file and --org instead, the organization (unless it exists)
and a write token are created with the admin token.";

/// The routing keys the event queue is bound with.
const ROUTING_KEYS: [&str; 2] = ["certificate.issued", "certificate.failed"];

struct Options {
    endpoint: String,
    amqp_url: String,
    token_file: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    org: Option<String>,
    count: usize,
    concurrency: usize,
    names: String,
    timeout: Duration,
    progress: Duration,
    tsv: PathBuf,
    summary: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut values: HashMap<String, String> = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let (key, value) = match arg.split_once('=') {
            Some((key, value)) if key.starts_with("--") => (key.to_owned(), value.to_owned()),
            _ if arg.starts_with("--") => {
                let value = args
                    .next()
                    .ok_or_else(|| anyhow!("{arg} needs a value\n\n{USAGE}"))?;
                (arg, value)
            }
            _ => bail!("unexpected argument {arg:?}\n\n{USAGE}"),
        };
        const KNOWN: [&str; 12] = [
            "--endpoint",
            "--amqp-url",
            "--token-file",
            "--admin-token-file",
            "--org",
            "--count",
            "--concurrency",
            "--names",
            "--timeout",
            "--progress",
            "--tsv",
            "--summary",
        ];
        if !KNOWN.contains(&key.as_str()) {
            bail!("unknown option {key}\n\n{USAGE}");
        }
        values.insert(key, value);
    }
    let mut take = |key: &str| values.remove(key);
    let required = |value: Option<String>, key: &str| {
        value.ok_or_else(|| anyhow!("{key} is required\n\n{USAGE}"))
    };
    let number = |value: Option<String>, key: &str, default: u64| -> anyhow::Result<u64> {
        match value {
            None => Ok(default),
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|number| *number > 0)
                .ok_or_else(|| anyhow!("{key} must be a positive integer, not {text:?}")),
        }
    };
    let options = Options {
        endpoint: required(take("--endpoint"), "--endpoint")?,
        amqp_url: required(take("--amqp-url"), "--amqp-url")?,
        token_file: take("--token-file").map(PathBuf::from),
        admin_token_file: take("--admin-token-file").map(PathBuf::from),
        org: take("--org"),
        count: usize::try_from(number(take("--count"), "--count", 1000)?)?,
        concurrency: usize::try_from(number(take("--concurrency"), "--concurrency", 64)?)?,
        names: take("--names").unwrap_or_else(|| "bulk-{i}.certfleet.test".to_owned()),
        timeout: Duration::from_secs(number(take("--timeout"), "--timeout", 600)?),
        progress: Duration::from_secs(number(take("--progress"), "--progress", 5)?),
        tsv: PathBuf::from(required(take("--tsv"), "--tsv")?),
        summary: take("--summary").map(PathBuf::from),
    };
    if !options.names.contains("{i}") {
        bail!(
            "--names must contain {{i}} (the certificate's number), not {:?}",
            options.names
        );
    }
    if options.admin_token_file.is_some() != options.org.is_some() {
        bail!("--admin-token-file and --org go together");
    }
    Ok(options)
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token)
}

/// The organization token: from a file, or a new write token of a new (or
/// existing) organization made with the admin token.
async fn organization_token(options: &Options, channel: &Channel) -> anyhow::Result<String> {
    if let Some(path) = &options.token_file {
        return read_token(path);
    }
    if let (Some(path), Some(slug)) = (&options.admin_token_file, &options.org) {
        let admin = certfleet_cli::client::bearer(&read_token(path)?)?;
        let mut organizations = OrganizationServiceClient::with_interceptor(channel.clone(), admin);
        match organizations
            .create_organization(CreateOrganizationRequest {
                slug: slug.clone(),
                name: format!("Bulk benchmark {slug}"),
                contact_email: format!("ops@{slug}.example.com"),
            })
            .await
        {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::AlreadyExists => {}
            Err(status) => bail!("creating the organization {slug}: {}", status.message()),
        }
        let token = organizations
            .create_api_token(CreateApiTokenRequest {
                organization: slug.clone(),
                role: pb::Role::Write as i32,
                description: "certfleet-bulk".to_owned(),
                expires_in_seconds: 0,
            })
            .await
            .map_err(|status| anyhow!("creating a write token of {slug}: {}", status.message()))?
            .into_inner()
            .token;
        return Ok(token);
    }
    bail!("no token: pass --token-file, or --admin-token-file and --org\n\n{USAGE}")
}

/// What the request workers and the event consumer tell the main loop.
enum Report {
    /// A CreateCertificate call returned: the certificate's id, or why not.
    Created {
        index: usize,
        sent: Instant,
        result: Result<String, String>,
    },
    /// A new (not yet seen) event of a certificate arrived.
    Event {
        certificate_id: String,
        arrived: Instant,
        kind: EventKind,
    },
    /// The event consumer stopped: nothing more can be measured.
    ConsumerLost(String),
}

enum EventKind {
    Issued,
    /// A failed attempt; `final` is true when certfleet gives up.
    Failed {
        error: String,
        is_final: bool,
    },
}

/// Connects to the vhost and binds an exclusive, auto-delete, server-named
/// queue to `certfleet.events`. The connection must stay open for the queue.
async fn bind_events(amqp_url: &str) -> anyhow::Result<(Connection, lapin::Consumer)> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to RabbitMQ at {}", redact(amqp_url)))?;
    let channel = connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .context("declaring the event queue")?;
    for key in ROUTING_KEYS {
        channel
            .queue_bind(
                queue.name().clone(),
                "certfleet.events".into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| {
                format!(
                    "binding to the exchange certfleet.events with {key} \
                     (is a certfleet api running on this vhost? it declares the exchange)"
                )
            })?;
    }
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            "certfleet-bulk".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .context("consuming the event queue")?;
    Ok((connection, consumer))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Forwards every new issued or failed event to the main loop.
async fn consume_events(mut consumer: lapin::Consumer, reports: mpsc::UnboundedSender<Report>) {
    let mut seen = HashSet::new();
    while let Some(delivery) = consumer.next().await {
        let arrived = Instant::now();
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(error) => {
                let _ = reports.send(Report::ConsumerLost(error.to_string()));
                return;
            }
        };
        let event = match CertificateEvent::decode(delivery.data.as_slice()) {
            Ok(event) => event,
            Err(error) => {
                eprintln!("bulk: an event body does not decode ({error}); skipped");
                continue;
            }
        };
        if !seen.insert(event.id.clone()) {
            continue;
        }
        let kind = if event.r#type == pb::EventType::Issued as i32 {
            EventKind::Issued
        } else if event.r#type == pb::EventType::Failed as i32 {
            EventKind::Failed {
                error: event.error.clone(),
                is_final: event.reason == "final",
            }
        } else {
            continue;
        };
        let report = Report::Event {
            certificate_id: event.certificate_id,
            arrived,
            kind,
        };
        if reports.send(report).is_err() {
            return;
        }
    }
    let _ = reports.send(Report::ConsumerLost(
        "the event consumer ended (connection closed?)".to_owned(),
    ));
}

/// One request worker: takes the next certificate number until none is left.
async fn request_worker(
    mut client: CertificateServiceClient<
        tonic::service::interceptor::InterceptedService<Channel, Bearer>,
    >,
    names: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    reports: mpsc::UnboundedSender<Report>,
) {
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(name) = names.get(index) else {
            return;
        };
        let request = CreateCertificateRequest {
            names: vec![name.clone()],
            key_type: pb::KeyType::EcdsaP256 as i32,
            challenge_type: pb::ChallengeType::Http01 as i32,
            auto_renew: Some(true),
            renew_before_expiry_seconds: 0,
            dns_provider: String::new(),
            profile: String::new(),
        };
        let sent = Instant::now();
        let result = client
            .create_certificate(request)
            .await
            .map(|response| response.into_inner().id)
            .map_err(|status| {
                format!(
                    "CreateCertificate: {:?}: {}",
                    status.code(),
                    status.message()
                )
            });
        if reports
            .send(Report::Created {
                index,
                sent,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Where one certificate stands.
#[derive(Default)]
struct Entry {
    sent: Option<Instant>,
    id: Option<String>,
    valid: Option<Instant>,
    /// Why it did not become valid (final).
    failed: Option<String>,
    /// Failed attempts certfleet retries.
    retries: u32,
}

impl Entry {
    fn settled(&self) -> bool {
        self.valid.is_some() || self.failed.is_some()
    }
}

/// Events that arrived before the CreateCertificate answer that names their certificate.
#[derive(Default)]
struct Early {
    issued: Option<Instant>,
    failed: Option<String>,
    retries: u32,
}

fn apply_event(entry: &mut Entry, arrived: Instant, kind: EventKind) {
    match kind {
        EventKind::Issued => {
            if entry.valid.is_none() {
                entry.valid = Some(arrived);
            }
        }
        EventKind::Failed { error, is_final } => {
            if is_final {
                if entry.valid.is_none() {
                    entry.failed = Some(format!("failed: {error}"));
                }
            } else {
                entry.retries += 1;
            }
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], fraction: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn seconds(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

fn status_name(status: i32) -> String {
    pb::CertificateStatus::try_from(status)
        .map(|status| status.as_str_name().to_owned())
        .unwrap_or_else(|_| status.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(error) => {
            eprintln!("certfleet-bulk: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Ok(true) when every certificate became valid.
async fn run() -> anyhow::Result<bool> {
    let options = parse_args()?;
    let channel = Channel::from_shared(options.endpoint.clone())
        .map_err(|error| anyhow!("invalid --endpoint {:?}: {error}", options.endpoint))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach certfleet at {}", options.endpoint))?;
    let token = organization_token(&options, &channel).await?;
    let client = CertificateServiceClient::with_interceptor(
        channel.clone(),
        certfleet_cli::client::bearer(&token)?,
    );

    // The queue is bound before the first request: no event can be missed.
    let (connection, consumer) = bind_events(&options.amqp_url).await?;
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let consumer_task = tokio::spawn(consume_events(consumer, reports_tx.clone()));

    let names: Arc<Vec<String>> = Arc::new(
        (1..=options.count)
            .map(|number| options.names.replace("{i}", &number.to_string()))
            .collect(),
    );
    let mut entries: Vec<Entry> = (0..options.count).map(|_| Entry::default()).collect();
    let mut by_id: HashMap<String, usize> = HashMap::with_capacity(options.count);
    let mut early: HashMap<String, Early> = HashMap::new();

    eprintln!(
        "bulk: requesting {} certificates ({} … {}), {} in flight at most",
        options.count,
        names.first().map_or("", String::as_str),
        names.last().map_or("", String::as_str),
        options.concurrency
    );
    let started = Instant::now();
    let deadline = started + options.timeout;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency.min(options.count) {
        workers.spawn(request_worker(
            client.clone(),
            names.clone(),
            next.clone(),
            reports_tx.clone(),
        ));
    }
    drop(reports_tx);

    let mut settled = 0_usize;
    let mut answered = 0_usize;
    let mut all_sent_at = None;
    let mut valid_count = 0_usize;
    let mut last_progress = (started, 0_usize);
    let mut ticker = tokio::time::interval_at(started + options.progress, options.progress);
    let mut timed_out = false;
    while settled < options.count {
        let report = tokio::select! {
            report = reports.recv() => report,
            _ = ticker.tick() => {
                let now = Instant::now();
                let recent = (valid_count - last_progress.1) as f64 / seconds(last_progress.0, now);
                eprintln!(
                    "bulk: {:>6.1} s: {answered} requested, {valid_count} valid, {} failed, {} remaining; \
                     {:.1} valid/s overall, {recent:.1}/s in the last {} s",
                    seconds(started, now),
                    settled - valid_count,
                    options.count - settled,
                    valid_count as f64 / seconds(started, now),
                    options.progress.as_secs()
                );
                last_progress = (now, valid_count);
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        };
        let Some(report) = report else {
            bail!("the request workers and the event consumer all stopped");
        };
        match report {
            Report::Created {
                index,
                sent,
                result,
            } => {
                answered += 1;
                if answered == options.count {
                    all_sent_at = Some(Instant::now());
                }
                let Some(entry) = entries.get_mut(index) else {
                    continue;
                };
                entry.sent = Some(sent);
                match result {
                    Ok(id) => {
                        if let Some(early) = early.remove(&id) {
                            entry.retries += early.retries;
                            if let Some(arrived) = early.issued {
                                entry.valid = Some(arrived);
                            } else if let Some(error) = early.failed {
                                entry.failed = Some(error);
                            }
                        }
                        entry.id = Some(id.clone());
                        by_id.insert(id, index);
                    }
                    Err(error) => entry.failed = Some(error),
                }
                if entry.settled() {
                    settled += 1;
                    if entry.valid.is_some() {
                        valid_count += 1;
                    }
                }
            }
            Report::Event {
                certificate_id,
                arrived,
                kind,
            } => match by_id
                .get(&certificate_id)
                .and_then(|index| entries.get_mut(*index))
            {
                Some(entry) => {
                    let was_settled = entry.settled();
                    apply_event(entry, arrived, kind);
                    if !was_settled && entry.settled() {
                        settled += 1;
                        if entry.valid.is_some() {
                            valid_count += 1;
                        }
                    }
                }
                None => {
                    let early = early.entry(certificate_id).or_default();
                    match kind {
                        EventKind::Issued => early.issued = early.issued.or(Some(arrived)),
                        EventKind::Failed { error, is_final } => {
                            if is_final {
                                early.failed = Some(format!("failed: {error}"));
                            } else {
                                early.retries += 1;
                            }
                        }
                    }
                }
            },
            Report::ConsumerLost(error) => bail!("lost the event queue: {error}"),
        }
    }
    let finished = Instant::now();
    workers.abort_all();
    consumer_task.abort();
    let _ = connection.close(200, "done".into()).await;

    // Certificates that did not settle: ask certfleet where they stand.
    if timed_out {
        eprintln!(
            "bulk: timed out after {} s with {} certificates not valid",
            options.timeout.as_secs(),
            options.count - valid_count
        );
        let mut check = client.clone();
        for entry in entries.iter_mut().filter(|entry| !entry.settled()) {
            let Some(id) = entry.id.clone() else {
                entry.failed = Some("no answer to CreateCertificate".to_owned());
                continue;
            };
            let status = tokio::time::timeout(
                Duration::from_secs(5),
                check.get_certificate(GetCertificateRequest {
                    id,
                    ..Default::default()
                }),
            )
            .await;
            entry.failed = Some(match status {
                Ok(Ok(certificate)) => {
                    let certificate = certificate.into_inner();
                    format!(
                        "timed out: no issued event; status {}, {} attempts{}",
                        status_name(certificate.status),
                        certificate.attempts,
                        if certificate.last_error.is_empty() {
                            String::new()
                        } else {
                            format!(", last error: {}", certificate.last_error)
                        }
                    )
                }
                Ok(Err(status)) => format!("timed out: GetCertificate: {}", status.message()),
                Err(_) => "timed out: GetCertificate did not answer".to_owned(),
            });
        }
    }

    // Per certificate, times relative to the first request sent.
    let first_sent = entries
        .iter()
        .filter_map(|entry| entry.sent)
        .min()
        .unwrap_or(started);
    let mut tsv =
        String::from("name\tid\trequest_start_s\tvalid_s\tlatency_s\tok\tretries\terror\n");
    let mut latencies = Vec::with_capacity(options.count);
    let mut last_valid = None;
    let mut not_valid = Vec::new();
    for (name, entry) in names.iter().zip(&entries) {
        let start = entry.sent.map(|sent| seconds(first_sent, sent));
        let valid = entry.valid.map(|valid| seconds(first_sent, valid));
        let latency = match (entry.sent, entry.valid) {
            (Some(sent), Some(valid)) => Some(seconds(sent, valid)),
            _ => None,
        };
        if let Some(latency) = latency {
            latencies.push(latency);
            last_valid = last_valid.max(entry.valid);
        } else {
            not_valid.push((name, entry.failed.clone().unwrap_or_default()));
        }
        let cell =
            |value: Option<f64>| value.map_or_else(String::new, |value| format!("{value:.4}"));
        let _ = writeln!(
            tsv,
            "{name}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            entry.id.as_deref().unwrap_or(""),
            cell(start),
            cell(valid),
            cell(latency),
            u8::from(latency.is_some()),
            entry.retries,
            entry
                .failed
                .as_deref()
                .unwrap_or("")
                .replace(['\t', '\n'], " ")
        );
    }
    std::fs::write(&options.tsv, tsv)
        .with_context(|| format!("writing {}", options.tsv.display()))?;

    latencies.sort_by(f64::total_cmp);
    let valid = latencies.len();
    let failed = options.count - valid;
    let wall = seconds(first_sent, last_valid.unwrap_or(finished));
    let rate = if wall > 0.0 { valid as f64 / wall } else { 0.0 };
    let requests = all_sent_at.map(|at| seconds(first_sent, at));
    let retries: u32 = entries.iter().map(|entry| entry.retries).sum();
    let format =
        |value: Option<f64>| value.map_or_else(|| "nan".to_owned(), |value| format!("{value:.4}"));
    let summary = [
        ("certificates", options.count.to_string()),
        ("valid", valid.to_string()),
        ("failed", failed.to_string()),
        ("retried_attempts", retries.to_string()),
        ("wall_s", format!("{wall:.4}")),
        ("certs_per_s", format!("{rate:.4}")),
        ("p50_s", format(percentile(&latencies, 0.50))),
        ("p99_s", format(percentile(&latencies, 0.99))),
        ("max_s", format(latencies.last().copied())),
        ("requests_s", format(requests)),
        ("concurrency", options.concurrency.to_string()),
    ];
    let mut summary_text = String::new();
    for (key, value) in &summary {
        let _ = writeln!(summary_text, "{key}\t{value}");
    }
    if let Some(path) = &options.summary {
        std::fs::write(path, &summary_text)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{valid} of {} certificates valid in {wall:.2} s (first request to last issued event): \
         {rate:.1} certificates/s; request→valid p50 {} s, p99 {} s, max {} s; \
         all {} requests answered after {} s; {retries} failed attempts retried",
        options.count,
        format(percentile(&latencies, 0.50)),
        format(percentile(&latencies, 0.99)),
        format(latencies.last().copied()),
        options.count,
        format(requests),
    );
    if !not_valid.is_empty() {
        eprintln!(
            "bulk: {} certificates did not become valid:",
            not_valid.len()
        );
        for (name, why) in not_valid.iter().take(50) {
            eprintln!("  {name}: {why}");
        }
        if not_valid.len() > 50 {
            eprintln!(
                "  … and {} more (all in {})",
                not_valid.len() - 50,
                options.tsv.display()
            );
        }
        return Ok(false);
    }
    Ok(true)
}
