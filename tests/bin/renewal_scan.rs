//! Renewal scan at scale: for each size in `BENCH_SIZES` (100,000 and
//! 1,000,000 certificates by default) a fresh PostgreSQL database is migrated
//! and filled with plain SQL through `psql` (1,000 organizations, valid
//! auto-renewing certificates whose renewal times are spread evenly over 60
//! days, so that exactly 1% are due now), then:
//!
//! - the scheduler's due-set query (`Store::due_for_renewal`) is timed for its
//!   first batch of 500, for the whole due set in one query, and for the whole
//!   due set page by page (`Store::due_renewals_page`, 500 at a time, keyset on
//!   (renewal time, id)); its plan is shown with `EXPLAIN (ANALYZE, BUFFERS)`;
//!   the median of 5 runs each;
//! - the release `certfleet-scheduler` runs against the database (a fresh
//!   RabbitMQ vhost, a pass every second) until every certificate that was due
//!   when it started is `renewing`; its peak and current resident memory
//!   (`VmHWM`, `VmRSS`) are read from `/proc` before it is stopped.
//!
//! Run by `deploy/local/bench-renewal-scan.sh`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use certfleet_e2e::certfleet_testkit::{TestDatabase, TestVhost, psql};
use certfleet_store::Store;

const DEFAULT_SIZES: &str = "100000,1000000";
const ORGANIZATIONS: u64 = 1_000;
const DAY_MS: i64 = 86_400_000;
/// Renewal times are spread evenly over this span...
const SPREAD_MS: i64 = 60 * DAY_MS;
/// ...starting this long before now: the due 1%.
const DUE_WINDOW_MS: i64 = SPREAD_MS / 100;
/// What the scheduler asks for per query.
const BATCH: i64 = 500;
/// Timed runs of each query; the median is reported.
const RUNS: usize = 5;
/// How long the scheduler may take to move the due set to `renewing`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(900);
/// The filter of the scheduler's due-set query as SQL (what diesel sends,
/// values inlined).
const DUE_PREDICATE: &str = "deleted_at IS NULL AND auto_renew = true \
     AND status = ANY('{valid,expired}'::text[])";

/// One size's results.
struct Measurement {
    certificates: u64,
    load: Duration,
    first_batch: Duration,
    full_set: Duration,
    paged: Duration,
    due: usize,
    first_batch_sql_ms: f64,
    full_set_sql_ms: f64,
    uses_index: bool,
    scheduler: SchedulerRun,
}

/// What the scheduler did and used.
struct SchedulerRun {
    drain: Duration,
    passes: usize,
    hwm_kib: u64,
    rss_kib: u64,
}

fn now_ms() -> anyhow::Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Fills the migrated database with `certificates` rows and analyzes it.
async fn load(url: &str, certificates: u64, now: i64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let created = now - 60 * DAY_MS;
    psql(
        url,
        &format!(
            "INSERT INTO organizations (id, slug, name, contact_email, created_at) \
             SELECT 'org-' || o, 'bench-' || o, 'Bench ' || o, 'ops@bench-' || o || '.test', {created} \
             FROM generate_series(0, {last_organization}) AS o",
            last_organization = ORGANIZATIONS - 1
        ),
    )
    .await
    .context("loading organizations")?;
    // (i * 7919) mod N is a permutation of 0..N (7919 is prime, N a power of
    // ten): renewal times land evenly, and exactly the first 1% are due, in
    // an order unrelated to insertion (and so to the table's physical order).
    psql(
        url,
        &format!(
            "INSERT INTO certificates (id, organization_id, primary_name, names, names_key, \
                 wildcard, key_type, challenge_type, directory_url, status, auto_renew, \
                 renew_at, current_version_id, not_after, created_at, updated_at) \
             SELECT md5('certificate-' || i)::uuid::text, 'org-' || (i % {ORGANIZATIONS}), \
                 name, name, name, false, 'ecdsa-p256', 'http-01', \
                 'https://acme-v02.api.letsencrypt.org/directory', 'valid', true, renew_at, \
                 md5('version-' || i)::uuid::text, renew_at + {month}, {created}, {created} \
             FROM (SELECT i, \
                     'host-' || i || '.org-' || (i % {ORGANIZATIONS}) || '.bench.test' AS name, \
                     {first_renewal} + (i * 7919 % {certificates}) * {SPREAD_MS} / {certificates} AS renew_at \
                   FROM generate_series(1::bigint, {certificates}::bigint) AS i) AS generated",
            month = 30 * DAY_MS,
            first_renewal = now - DUE_WINDOW_MS + 1,
        ),
    )
    .await
    .context("loading certificates")?;
    psql(url, "ANALYZE").await.context("analyzing")?;
    Ok(started.elapsed())
}

/// Reads the whole due set 500 at a time; returns how many there were.
async fn page_through(store: &Store, now: i64) -> anyhow::Result<usize> {
    let mut after: Option<(i64, String)> = None;
    let mut count = 0;
    loop {
        let page = store
            .due_renewals_page(
                now,
                after
                    .as_ref()
                    .map(|(renew_at, id)| (*renew_at, id.as_str())),
                BATCH,
            )
            .await?;
        count += page.len();
        let Some(last) = page.last() else {
            return Ok(count);
        };
        if page.len() < usize::try_from(BATCH)? {
            return Ok(count);
        }
        after = Some((
            last.renew_at
                .context("a due certificate without renew_at")?,
            last.id.clone(),
        ));
    }
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of `query`: the plan and its execution time.
async fn explain(url: &str, query: &str) -> anyhow::Result<(String, f64)> {
    let plan = psql(url, &format!("EXPLAIN (ANALYZE, BUFFERS) {query}")).await?;
    let execution_ms = plan
        .lines()
        .find_map(|line| line.trim().strip_prefix("Execution Time: "))
        .and_then(|rest| rest.trim_end_matches(" ms").parse::<f64>().ok())
        .with_context(|| format!("no execution time in the plan:\n{plan}"))?;
    Ok((plan, execution_ms))
}

/// The binary `name` in `CERTFLEET_BIN_DIR`, else next to this one
/// (`target/release`).
fn role_binary(name: &str) -> anyhow::Result<PathBuf> {
    let directory = match std::env::var_os("CERTFLEET_BIN_DIR") {
        Some(directory) => PathBuf::from(directory),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .to_owned(),
    };
    let binary = directory.join(name);
    if !binary.exists() {
        bail!(
            "{} is missing: cargo build --release -p certfleet-scheduler (or set CERTFLEET_BIN_DIR)",
            binary.display()
        );
    }
    Ok(binary)
}

/// `VmHWM` and `VmRSS` of process `pid`, in KiB.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// Valid certificates with a renewal time at or before `cutoff`.
async fn still_due(url: &str, cutoff: i64) -> anyhow::Result<u64> {
    let count = psql(
        url,
        &format!(
            "SELECT count(*) FROM certificates WHERE renew_at <= {cutoff} AND {DUE_PREDICATE}"
        ),
    )
    .await?;
    Ok(count.trim().parse()?)
}

/// Runs the scheduler until everything due at its start is `renewing`.
async fn run_scheduler(url: &str, binary: &Path) -> anyhow::Result<SchedulerRun> {
    let vhost = TestVhost::create().await?;
    let logs = tempfile::tempdir()?;
    let log_path = logs.path().join("scheduler.log");
    let log = std::fs::File::create(&log_path)?;
    let cutoff = now_ms()?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env("CERTFLEET_DATABASE_URL", url)
        .env("CERTFLEET_AMQP_URL", vhost.amqp_url())
        .env("CERTFLEET_SCHEDULER_INTERVAL", "1")
        .env("CERTFLEET_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("the scheduler has no pid")?;
    let drained = async {
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("the scheduler exited ({status})");
            }
            if still_due(url, cutoff).await? == 0 {
                return Ok(started.elapsed());
            }
            if started.elapsed() > DRAIN_TIMEOUT {
                bail!("the due set was not drained within {DRAIN_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    let memory = memory_kib(pid);
    let terminated = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let exited = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let deleted = vhost.delete().await;
    let drain = drained.with_context(|| format!("scheduler log:\n{log_text}"))?;
    let (hwm_kib, rss_kib) = memory?;
    terminated?;
    exited.context("the scheduler did not stop within 30 s of SIGTERM")??;
    deleted?;
    Ok(SchedulerRun {
        drain,
        passes: log_text
            .lines()
            .filter(|line| line.contains("scheduler pass"))
            .count(),
        hwm_kib,
        rss_kib,
    })
}

async fn measure(
    database: &TestDatabase,
    certificates: u64,
    binary: &Path,
    show_plans: bool,
) -> anyhow::Result<Measurement> {
    let url = database.url();
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    let load = load(&url, certificates, now_ms()?).await?;
    println!(
        "{certificates} certificates: loaded in {:.1} s",
        load.as_secs_f64()
    );

    let mut first_batches = Vec::with_capacity(RUNS);
    let mut full_sets = Vec::with_capacity(RUNS);
    let mut paged_sets = Vec::with_capacity(RUNS);
    let mut due = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let batch = store.due_for_renewal(now_ms()?, BATCH).await?;
        first_batches.push(started.elapsed());
        if batch.len() != usize::try_from(BATCH)? {
            bail!("the first batch has {} rows, not {BATCH}", batch.len());
        }
        let started = Instant::now();
        let all = store
            .due_for_renewal(now_ms()?, i64::try_from(certificates)?)
            .await?;
        full_sets.push(started.elapsed());
        due = all.len();
        let started = Instant::now();
        let paged = page_through(&store, now_ms()?).await?;
        paged_sets.push(started.elapsed());
        if paged.abs_diff(due) > 100 {
            bail!("paging found {paged} due, one query {due}");
        }
    }

    let mut first_batch_sql = Vec::with_capacity(RUNS);
    let mut full_set_sql = Vec::with_capacity(RUNS);
    let mut uses_index = true;
    for run in 0..RUNS {
        let query = format!(
            "SELECT * FROM certificates WHERE renew_at <= {} AND {DUE_PREDICATE} \
             ORDER BY renew_at, id",
            now_ms()?
        );
        let (batch_plan, batch_ms) = explain(&url, &format!("{query} LIMIT {BATCH}")).await?;
        let (full_plan, full_ms) = explain(&url, &query).await?;
        uses_index &= batch_plan.contains("certificates_due_renewal")
            && full_plan.contains("certificates_due_renewal");
        if show_plans && run == RUNS - 1 {
            println!("first batch:\n{batch_plan}\nwhole due set:\n{full_plan}");
        }
        first_batch_sql.push(batch_ms);
        full_set_sql.push(full_ms);
    }
    drop(store);

    let scheduler = run_scheduler(&url, binary).await?;
    println!(
        "{certificates} certificates: scheduler drained {due} due in {:.1} s ({} passes), VmHWM {} KiB",
        scheduler.drain.as_secs_f64(),
        scheduler.passes,
        scheduler.hwm_kib
    );
    Ok(Measurement {
        certificates,
        load,
        first_batch: median(first_batches),
        full_set: median(full_sets),
        paged: median(paged_sets),
        due,
        first_batch_sql_ms: median_f64(first_batch_sql),
        full_set_sql_ms: median_f64(full_set_sql),
        uses_index,
        scheduler,
    })
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn mebibytes(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes = std::env::var("BENCH_SIZES").unwrap_or_else(|_| DEFAULT_SIZES.to_owned());
    let sizes = sizes
        .split(',')
        .map(|size| {
            size.trim()
                .replace('_', "")
                .parse::<u64>()
                .with_context(|| format!("BENCH_SIZES: {size:?} is not a number"))
        })
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let binary = role_binary("certfleet-scheduler")?;
    let largest = sizes.iter().copied().max().unwrap_or_default();
    let mut results = Vec::with_capacity(sizes.len());
    for &certificates in &sizes {
        if certificates < 100 * ORGANIZATIONS || certificates % 7919 == 0 {
            bail!(
                "BENCH_SIZES: {certificates} is below {} or a multiple of 7919",
                100 * ORGANIZATIONS
            );
        }
        let database = TestDatabase::create().await?;
        let measured = measure(&database, certificates, &binary, certificates == largest).await;
        let dropped = database.drop_database().await;
        results.push(measured?);
        dropped?;
    }

    println!(
        "\n| certificates | load | due rows | first batch of 500 | whole due set, one query | whole due set, pages of 500 | EXPLAIN ANALYZE first batch / whole set | index | scheduler: due set → renewing | passes | VmHWM | VmRSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    for result in &results {
        println!(
            "| {} | {:.1} s | {} | {} | {} | {} | {:.1} ms / {:.1} ms | {} | {:.1} s | {} | {} | {} |",
            result.certificates,
            result.load.as_secs_f64(),
            result.due,
            milliseconds(result.first_batch),
            milliseconds(result.full_set),
            milliseconds(result.paged),
            result.first_batch_sql_ms,
            result.full_set_sql_ms,
            if result.uses_index {
                "certificates_due_renewal"
            } else {
                "NOT USED"
            },
            result.scheduler.drain.as_secs_f64(),
            result.scheduler.passes,
            mebibytes(result.scheduler.hwm_kib),
            mebibytes(result.scheduler.rss_kib),
        );
    }
    Ok(())
}
