//! `certfleet renew-due`: the certificates the scheduler renews now, and why;
//! without `--dry-run`, queues their renewals at once, as a scheduler pass
//! would. Works on the database directly, like `migrate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use certfleet_core::{Clock as _, SystemClock};
use certfleet_store::{Certificate, Store};
use clap::Args;

use crate::output::timestamp;

const PAGE: i64 = 500;

#[derive(Debug, Args)]
pub struct RenewDueArgs {
    /// Only list what would be renewed now and why; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Folder of `certfleet dev`/`server`: its SQLite database is the default.
    #[arg(long, env = "CERTFLEET_DATA_DIR", default_value = "./certfleet-data")]
    pub data_dir: PathBuf,
    /// Database URL; defaults to SQLite in the data dir. `postgres://…` for PostgreSQL.
    #[arg(long, env = "CERTFLEET_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// A certificate due for renewal and why.
#[derive(Debug, Clone)]
pub struct DueRenewal {
    pub certificate: Certificate,
    pub reason: String,
}

/// Every certificate the scheduler would renew at `now_ms`, in the order it
/// renews them (renewal time, then id), with the reason.
pub async fn due_renewals(store: &Store, now_ms: i64) -> anyhow::Result<Vec<DueRenewal>> {
    let mut due = Vec::new();
    let mut cursor: Option<(i64, String)> = None;
    loop {
        let page = store
            .due_renewals_page(
                now_ms,
                cursor.as_ref().map(|(at, id)| (*at, id.as_str())),
                PAGE,
            )
            .await
            .context("reading the certificates due for renewal")?;
        let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= PAGE;
        cursor = page
            .last()
            .map(|last| (last.renew_at.unwrap_or_default(), last.id.clone()));
        due.extend(page.into_iter().map(|certificate| DueRenewal {
            reason: reason(&certificate, now_ms),
            certificate,
        }));
        if !full {
            return Ok(due);
        }
    }
}

/// Why the certificate is due, in words.
fn reason(certificate: &Certificate, now_ms: i64) -> String {
    let renew_at = certificate.renew_at.unwrap_or_default();
    let not_after = certificate.not_after.unwrap_or_default();
    if certificate.status == "expired" || (not_after != 0 && not_after <= now_ms) {
        return format!("expired {}", time(not_after));
    }
    let rule = match certificate.renew_before_ms {
        Some(before) if before > 0 => format!(
            "renews {} before expiry or with a third of its lifetime left",
            certfleet_acme::span(std::time::Duration::from_millis(
                u64::try_from(before).unwrap_or(0)
            ))
        ),
        _ => "renews with a third of its lifetime left (half for 10 days or less)".to_owned(),
    };
    format!(
        "renewal time {} passed; expires {}; {rule}",
        time(renew_at),
        time(not_after)
    )
}

fn time(ms: i64) -> String {
    timestamp(ms / 1000)
}

/// Runs `certfleet renew-due`.
pub async fn run(args: RenewDueArgs) -> anyhow::Result<ExitCode> {
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("certfleet.db").display()));
    let store = Store::connect(&database_url)
        .await
        .context("opening the database")?;
    let now = SystemClock.now_ms();
    let due = due_renewals(&store, now).await?;
    for item in &due {
        println!(
            "{}\t{}\t{}",
            item.certificate.id, item.certificate.primary_name, item.reason
        );
    }
    if args.dry_run {
        eprintln!(
            "{} certificates due for renewal (dry run: nothing queued)",
            due.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let queued = queue_renewals(&store, &due, now).await?;
    eprintln!(
        "{queued} renewals queued; {} were taken by a scheduler or changed meanwhile",
        due.len() - queued
    );
    Ok(ExitCode::SUCCESS)
}

/// Moves each due certificate to `renewing` and queues its job, exactly as
/// the scheduler does (a certificate a scheduler took first is skipped);
/// how many were queued.
pub async fn queue_renewals(
    store: &Store,
    due: &[DueRenewal],
    now_ms: i64,
) -> anyhow::Result<usize> {
    let mut queued = 0;
    for item in due {
        let certificate = &item.certificate;
        if certfleet_acme::queue_renewal(
            store,
            &certificate.organization_id,
            &certificate.id,
            now_ms,
        )
        .await
        .with_context(|| format!("queueing the renewal of {}", certificate.id))?
        {
            queued += 1;
        }
    }
    Ok(queued)
}
