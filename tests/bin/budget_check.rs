//! Rate-limit budget check under load: `Store::reserve_budget`, the one
//! transaction the issuer runs per new ACME order (lock row of the CA
//! directory, a COUNT per rule inside its window, an INSERT per spending
//! rule), with the 4 rules of a new single-name certificate (failed
//! authorizations of the name, new orders of the organization, certificates of
//! the registered domain, certificates of the exact name set; the default
//! limits 5 / 300 / 50 / 5 over 1 h / 3 h / 7 d / 7 d).
//!
//! - PostgreSQL: a fresh database, migrated, pre-filled through `psql` with
//!   `BENCH_EVENTS` (100,000) events per CA directory for 4 directories, all
//!   inside every window and spread over many scopes (a quarter per rule
//!   kind: 1,000 organizations and registered domains with 25 events each,
//!   25,000 names with 1 each), then analyzed; then `BENCH_CALLS` (2,000)
//!   checks with C = 1, 4 and 16 concurrent callers against one directory,
//!   and C = 16 spread over the 4 directories;
//! - SQLite (a temporary file, WAL, `synchronous = FULL`, one connection):
//!   the same pre-fill for one directory, then C = 1 and 16.
//!
//! Every check is for a distinct certificate and name
//! (`host-{run}-{i}.d{i % 1000}.example`, organization `org-{i % 1000}`), so
//! no budget fills; denials are counted and shown anyway. Each measurement is
//! preceded by an untimed warm-up of 64 checks at the same concurrency (opens
//! the pool's connections).
//!
//! Run by `deploy/local/bench-budget.sh`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use certfleet_e2e::certfleet_testkit::{TestDatabase, psql};
use certfleet_store::{BudgetRule, Store};

const DEFAULT_CALLS: usize = 2_000;
const DEFAULT_EVENTS: u64 = 100_000;
/// Organizations, registered domains: the callers' names and the pre-fill
/// are spread over this many of each.
const SPREAD: u64 = 1_000;
const WARM_UP: usize = 64;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Pre-filled events are at most this old: inside every window (the
/// shortest is 1 h).
const PREFILL_AGE_MS: i64 = 50 * 60_000;
/// Rules of one pre-fill transaction on SQLite.
const SQLITE_PREFILL_BATCH: u64 = 1_000;

const FAILED_AUTHORIZATION: &str = "failed-authorization";
const NEW_ORDER: &str = "new-order";
const REGISTERED_DOMAIN: &str = "registered-domain";
const EXACT_SET: &str = "exact-set";

fn directory(index: usize) -> String {
    if index == 0 {
        "https://acme-v02.api.letsencrypt.org/directory".to_owned()
    } else {
        format!("https://ca-{index}.bench.test/directory")
    }
}

fn now_ms() -> anyhow::Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

/// The rules the issuer checks for a new certificate for `name` alone
/// (as `budget_rules` in services/lib/acme/src/issuer/renewal.rs builds them).
fn rules(organization: &str, name: &str, domain: &str) -> Vec<BudgetRule> {
    let rule = |kind: &str, scope: String, limit: u32, window_ms: i64, spend: bool| BudgetRule {
        kind: kind.to_owned(),
        scope,
        limit,
        window_ms,
        spend,
        label: format!("{kind} at the bench CA: {limit}"),
    };
    vec![
        rule(
            FAILED_AUTHORIZATION,
            format!("{organization}/{name}"),
            5,
            HOUR_MS,
            false,
        ),
        rule(NEW_ORDER, organization.to_owned(), 300, 3 * HOUR_MS, true),
        rule(REGISTERED_DOMAIN, domain.to_owned(), 50, 7 * DAY_MS, true),
        rule(EXACT_SET, name.to_owned(), 5, 7 * DAY_MS, true),
    ]
}

/// The kind and scope of pre-filled event `k` (a quarter per kind).
fn prefill_event(k: u64) -> (&'static str, String) {
    // (k / 4), not k: with k % 4 picking the kind, k % 1000 would put each
    // kind's events on a quarter of the groups only.
    let group = (k / 4) % SPREAD;
    match k % 4 {
        0 => (
            FAILED_AUTHORIZATION,
            format!("org-{group}/failed-{k}.d{group}.example"),
        ),
        1 => (NEW_ORDER, format!("org-{group}")),
        2 => (REGISTERED_DOMAIN, format!("d{group}.example")),
        _ => (EXACT_SET, format!("old-{k}.d{group}.example")),
    }
}

/// The same events as [`prefill_event`], as SQL, for `directories`.
async fn prefill_postgres(
    url: &str,
    events: u64,
    directories: usize,
    now: i64,
) -> anyhow::Result<()> {
    for index in 0..directories {
        let directory = directory(index);
        psql(
            url,
            &format!(
                "INSERT INTO rate_limit_events (id, directory_url, kind, scope, certificate_id, at) \
                 SELECT md5('{index}-' || k)::uuid::text, '{directory}', \
                     CASE k % 4 WHEN 0 THEN '{FAILED_AUTHORIZATION}' WHEN 1 THEN '{NEW_ORDER}' \
                         WHEN 2 THEN '{REGISTERED_DOMAIN}' ELSE '{EXACT_SET}' END, \
                     CASE k % 4 \
                         WHEN 0 THEN 'org-' || (k / 4 % {SPREAD}) || '/failed-' || k || '.d' || (k / 4 % {SPREAD}) || '.example' \
                         WHEN 1 THEN 'org-' || (k / 4 % {SPREAD}) \
                         WHEN 2 THEN 'd' || (k / 4 % {SPREAD}) || '.example' \
                         ELSE 'old-' || k || '.d' || (k / 4 % {SPREAD}) || '.example' END, \
                     'old-certificate-' || k, \
                     {now} - (k * 7919 % {PREFILL_AGE_MS}) \
                 FROM generate_series(0::bigint, {last}::bigint) AS k",
                last = events - 1,
            ),
        )
        .await
        .with_context(|| format!("pre-filling {directory}"))?;
    }
    psql(url, "ANALYZE").await.context("analyzing")?;
    Ok(())
}

/// The same events as [`prefill_event`] for directory 0, through the store
/// (a `reserve_budget` of 1,000 spending rules with huge limits per
/// transaction; the SQLite store has no other way in).
async fn prefill_through_store(store: &Store, events: u64, now: i64) -> anyhow::Result<()> {
    let directory = directory(0);
    let mut start = 0;
    while start < events {
        let end = (start + SQLITE_PREFILL_BATCH).min(events);
        let batch: Vec<BudgetRule> = (start..end)
            .map(|k| {
                let (kind, scope) = prefill_event(k);
                BudgetRule {
                    kind: kind.to_owned(),
                    scope,
                    limit: u32::MAX,
                    window_ms: 7 * DAY_MS,
                    spend: true,
                    label: "pre-fill".to_owned(),
                }
            })
            .collect();
        let at = now - i64::try_from(start * 7919)? % PREFILL_AGE_MS;
        if let Err(denied) = store
            .reserve_budget(&directory, &format!("old-certificate-{start}"), &batch, at)
            .await?
        {
            bail!("the pre-fill was denied: {denied:?}");
        }
        start = end;
    }
    Ok(())
}

/// One measured configuration.
struct Measurement {
    backend: &'static str,
    concurrency: usize,
    directories: usize,
    calls: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    denied: usize,
}

/// `calls` checks by `concurrency` tasks, task `t` against directory
/// `t % directories`; check `i` is for `host-{run}-{i}.d{i % 1000}.example`.
async fn run(
    store: &Store,
    run_id: &str,
    concurrency: usize,
    directories: usize,
    calls: usize,
) -> anyhow::Result<(Duration, Vec<Duration>, usize)> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let store = store.clone();
        let run_id = run_id.to_owned();
        let directory = directory(task % directories);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(calls / concurrency + 1);
            let mut denied = 0;
            for i in (task..calls).step_by(concurrency) {
                let group = i as u64 % SPREAD;
                let organization = format!("org-{group}");
                let domain = format!("d{group}.example");
                let name = format!("host-{run_id}-{i}.{domain}");
                let rules = rules(&organization, &name, &domain);
                let certificate_id = format!("certificate-{run_id}-{i}");
                let call = Instant::now();
                let outcome = store
                    .reserve_budget(&directory, &certificate_id, &rules, now_ms()?)
                    .await?;
                latencies.push(call.elapsed());
                if outcome.is_err() {
                    denied += 1;
                }
            }
            anyhow::Ok((latencies, denied))
        }));
    }
    let mut latencies = Vec::with_capacity(calls);
    let mut denied = 0;
    for task in tasks {
        let (mut task_latencies, task_denied) = task.await??;
        latencies.append(&mut task_latencies);
        denied += task_denied;
    }
    Ok((started.elapsed(), latencies, denied))
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().unwrap_or_default()
}

async fn measure(
    store: &Store,
    backend: &'static str,
    concurrency: usize,
    directories: usize,
    calls: usize,
) -> anyhow::Result<Measurement> {
    let label = format!("{backend}-c{concurrency}-d{directories}");
    run(
        store,
        &format!("{label}-warm"),
        concurrency,
        directories,
        WARM_UP,
    )
    .await?;
    let (elapsed, mut latencies, denied) =
        run(store, &label, concurrency, directories, calls).await?;
    latencies.sort();
    let measurement = Measurement {
        backend,
        concurrency,
        directories,
        calls,
        elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        denied,
    };
    println!(
        "{backend}: C = {concurrency}, {directories} director{}: {:.0} checks/s, p50 {:.2} ms, p99 {:.2} ms",
        if directories == 1 { "y" } else { "ies" },
        calls as f64 / elapsed.as_secs_f64(),
        milliseconds(measurement.p50),
        milliseconds(measurement.p99),
    );
    Ok(measurement)
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: {value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

async fn postgres(calls: usize, events: u64) -> anyhow::Result<Vec<Measurement>> {
    let database = TestDatabase::create().await?;
    let url = database.url();
    let measured = async {
        let store = Store::connect_with_pool(&url, 16).await?;
        store.migrate().await?;
        let started = Instant::now();
        prefill_postgres(&url, events, 4, now_ms()?).await?;
        println!(
            "postgres: {events} events × 4 directories pre-filled and analyzed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let settings = psql(
            &url,
            "SELECT current_setting('fsync') || ' ' || current_setting('synchronous_commit') \
             || ' ' || current_setting('shared_buffers')",
        )
        .await?;
        println!(
            "postgres: fsync, synchronous_commit, shared_buffers = {}",
            settings.trim()
        );
        let mut results = Vec::new();
        for concurrency in [1, 4, 16] {
            results.push(measure(&store, "postgres", concurrency, 1, calls).await?);
        }
        results.push(measure(&store, "postgres", 16, 4, calls).await?);
        let plan = psql(
            &url,
            &format!(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM rate_limit_events \
                 WHERE directory_url = '{}' AND kind = '{REGISTERED_DOMAIN}' \
                 AND scope = 'd7.example' AND at > {}",
                directory(0),
                now_ms()? - 7 * DAY_MS
            ),
        )
        .await?;
        println!("postgres: a registered-domain count after the runs:\n{plan}");
        anyhow::Ok(results)
    }
    .await;
    let dropped = database.drop_database().await;
    let results = measured?;
    dropped?;
    Ok(results)
}

async fn sqlite(calls: usize, events: u64) -> anyhow::Result<Vec<Measurement>> {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("budget.db");
    let store = Store::connect(&format!("sqlite://{}", path.display())).await?;
    store.migrate().await?;
    let started = Instant::now();
    prefill_through_store(&store, events, now_ms()?).await?;
    println!(
        "sqlite ({}): {events} events pre-filled in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    let mut results = Vec::new();
    for concurrency in [1, 16] {
        results.push(measure(&store, "sqlite", concurrency, 1, calls).await?);
    }
    Ok(results)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let calls: usize = env_number("BENCH_CALLS", DEFAULT_CALLS)?;
    let events: u64 = env_number("BENCH_EVENTS", DEFAULT_EVENTS)?;
    if calls == 0 || events == 0 {
        bail!("BENCH_CALLS and BENCH_EVENTS must be positive");
    }
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "reserve_budget: {calls} checks per configuration, 4 rules each, {events} events per directory before, {cores} cores"
    );
    let mut results = postgres(calls, events).await?;
    results.extend(sqlite(calls, events).await?);

    println!(
        "\n| backend | callers | CA directories | checks | checks/s | p50 | p99 | max | denied |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for result in &results {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            result.backend,
            result.concurrency,
            result.directories,
            result.calls,
            result.calls as f64 / result.elapsed.as_secs_f64(),
            milliseconds(result.p50),
            milliseconds(result.p99),
            milliseconds(result.max),
            result.denied,
        );
    }
    Ok(())
}
