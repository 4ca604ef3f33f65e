//! `certfleet audit`: the audit log over gRPC, with the platform admin token —
//! who created, renewed, revoked or deleted what, who downloaded which private
//! key, and from which address.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use certfleet_core::SpanError;
use certfleet_proto::v1::{AuditEntry, ListAuditEntriesRequest};
use clap::Args;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::args::{ClientArgs, Output};
use crate::client::{self, status_error};
use crate::output::{table, timestamp};

/// The most entries the API returns in one page.
const MAX_PAGE_SIZE: u32 = 1000;

/// What `certfleet audit --help` adds below the options, for an operator new
/// to certfleet.
const AUDIT_HELP: &str = "\
Every change made through certfleet is recorded, newest first: organizations
and tokens created or revoked, certificates created, renewed, revoked or
deleted, DNS providers added or removed, each private-key bundle downloaded
(certificate.bundle_read), and what the issuer did on its own (actor
\"system\"). Each entry shows when (TIME), the organization (ORG; \"(platform)\"
for entries of no organization), who (ACTOR: the id of the API token used, as
listed by `certfleet token list`, or \"system\"), what (ACTION), the id of what
it concerned (TARGET), the caller's IP address (FROM; empty for the issuer's
own entries) and short DETAILS. Secrets are never recorded.

Needs the platform admin token (--token or CERTFLEET_TOKEN), the one
`certfleet dev` prints on first start; organization tokens are refused.

Examples:
  certfleet audit --org acme --since 24h
  certfleet audit --action certificate.bundle_read --since 2026-11-01T00:00:00Z
  certfleet audit --output json --limit 5000";

/// Options of `certfleet audit`.
#[derive(Debug, Clone, Args)]
#[command(after_long_help = AUDIT_HELP)]
pub struct AuditArgs {
    /// Only this organization's entries (its slug, as given to `org create`).
    /// Without it: every organization and the platform's own entries.
    #[arg(long, value_name = "SLUG")]
    pub org: Option<String>,
    /// Only actions starting with this text, e.g. `certificate.` or
    /// `api_token.revoked`.
    #[arg(long, value_name = "PREFIX")]
    pub action: Option<String>,
    /// Only entries from this point on: a duration back from now (`30m`, `24h`,
    /// `7d`) or a time in RFC 3339 (`2026-11-01T00:00:00Z`).
    #[arg(long, value_name = "DURATION|RFC3339", value_parser = parse_since)]
    pub since: Option<Since>,
    /// Show at most this many entries (the newest ones).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// The start of the listed period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This many seconds before the command runs.
    Ago(i64),
    /// This Unix time in seconds.
    At(i64),
}

impl Since {
    fn unix_seconds(self, now: i64) -> i64 {
        match self {
            Since::Ago(seconds) => now.saturating_sub(seconds).max(1),
            Since::At(seconds) => seconds,
        }
    }
}

pub(crate) async fn run(args: &ClientArgs, audit: AuditArgs) -> anyhow::Result<ExitCode> {
    let since = audit
        .since
        .map_or(0, |since| since.unix_seconds(now_seconds()));
    let mut organizations = client::organizations(args).await?;
    let wanted = audit.limit as usize;
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut page_token = String::new();
    while entries.len() < wanted {
        let remaining = u32::try_from(wanted - entries.len()).unwrap_or(MAX_PAGE_SIZE);
        let page = organizations
            .list_audit_entries(ListAuditEntriesRequest {
                organization: audit.org.clone().unwrap_or_default(),
                action_prefix: audit.action.clone().unwrap_or_default(),
                since,
                until: 0,
                page_size: remaining.min(MAX_PAGE_SIZE),
                page_token,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    entries.truncate(wanted);
    match args.output {
        Output::Json => {
            let entries: Vec<Value> = entries.iter().map(entry_json).collect();
            println!("{}", Value::Array(entries));
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|entry| {
                    vec![
                        timestamp(entry.created_at),
                        organization(entry),
                        entry.actor.clone(),
                        entry.action.clone(),
                        entry.target_id.clone(),
                        entry.remote_addr.clone(),
                        entry.details.clone(),
                    ]
                })
                .collect();
            let header = [
                "TIME", "ORG", "ACTOR", "ACTION", "TARGET", "FROM", "DETAILS",
            ];
            println!("{}", table(&header, &rows));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The organization's slug, `(platform)` for entries of no organization.
fn organization(entry: &AuditEntry) -> String {
    if entry.organization_id.is_empty() {
        "(platform)".to_owned()
    } else if entry.organization.is_empty() {
        entry.organization_id.clone()
    } else {
        entry.organization.clone()
    }
}

fn entry_json(entry: &AuditEntry) -> Value {
    json!({
        "id": entry.id,
        "organization_id": entry.organization_id,
        "organization": entry.organization,
        "actor": entry.actor,
        "action": entry.action,
        "target_id": entry.target_id,
        "details": entry.details,
        "remote_addr": entry.remote_addr,
        "created_at": timestamp(entry.created_at),
    })
}

/// Parses `--since`: `30m`, `24h`, `7d`, `3600s` back from now, or an RFC 3339
/// time. The message names the value; clap adds the argument.
pub(crate) fn parse_since(value: &str) -> Result<Since, String> {
    let usage = "expected a duration back from now (30m, 24h, 7d) or an RFC 3339 time (2026-11-01T00:00:00Z)";
    let trimmed = value.trim();
    if let Ok(time) = OffsetDateTime::parse(trimmed, &Rfc3339) {
        let seconds = time.unix_timestamp();
        if seconds <= 0 {
            return Err(format!("{value:?} is before 1970; {usage}"));
        }
        return Ok(Since::At(seconds));
    }
    match certfleet_core::parse_span(trimmed) {
        Ok(seconds) => Ok(Since::Ago(seconds)),
        Err(SpanError::Empty) => Err(format!("{value:?} is empty; {usage}")),
        Err(SpanError::NoUnit | SpanError::NotANumber) => Err(format!(
            "{value:?} is neither a duration nor a time; {usage}"
        )),
        Err(SpanError::NotPositive) => Err(format!("{value:?} is not positive; {usage}")),
        Err(SpanError::TooLong) => Err(format!("{value:?} is too long; {usage}")),
    }
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::{Since, parse_since};

    #[test]
    fn since_values() {
        assert_eq!(parse_since("30m"), Ok(Since::Ago(1800)));
        assert_eq!(parse_since("24h"), Ok(Since::Ago(86_400)));
        assert_eq!(parse_since("7d"), Ok(Since::Ago(604_800)));
        assert_eq!(
            parse_since("2026-11-01T00:00:00Z"),
            Ok(Since::At(1_793_491_200))
        );
        for bad in [
            "",
            "7",
            "7w",
            "-1h",
            "0d",
            "yesterday",
            "99999999999999999d",
        ] {
            let error = parse_since(bad).expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(Since::Ago(60).unix_seconds(1_000), 940);
        assert_eq!(Since::At(5).unix_seconds(1_000), 5);
        // Further back than 1970 still means "everything", not "no bound".
        assert_eq!(Since::Ago(5_000).unix_seconds(1_000), 1);
    }
}
