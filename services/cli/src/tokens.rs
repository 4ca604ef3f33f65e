//! `certfleet token`: create, list and revoke the API tokens of an
//! organization, or the platform agent tokens, over gRPC, with the platform
//! admin token.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use certfleet_core::SpanError;
use certfleet_proto::v1::{
    self as pb, ApiToken, ApiTokenInfo, CreateApiTokenRequest, ListApiTokensRequest,
    RevokeApiTokenRequest,
};
use serde_json::{Value, json};

use crate::args::{ClientArgs, Output, RoleArg, TokenCommand};
use crate::client::{self, status_error};
use crate::output::{table, timestamp};

/// The longest lifetime accepted, as the API does (ten years).
const MAX_LIFETIME_SECONDS: i64 = 10 * 365 * 24 * 3600;

pub(crate) async fn run(args: &ClientArgs, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            org,
            role,
            description,
            expires_in,
        } => create(args, org, role, description, expires_in).await,
        TokenCommand::List { org } => list(args, org.unwrap_or_default()).await,
        TokenCommand::Revoke { id, org } => revoke(args, id, org.unwrap_or_default()).await,
    }
}

async fn create(
    args: &ClientArgs,
    organization: Option<String>,
    role: RoleArg,
    description: String,
    expires_in: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let proto_role = match role {
        RoleArg::Read => pb::Role::Read,
        RoleArg::Write => pb::Role::Write,
        RoleArg::Bundle => pb::Role::Bundle,
        RoleArg::Agent => pb::Role::Agent,
    };
    let organization = match (role, organization) {
        (RoleArg::Agent, Some(org)) => bail!(
            "--org {org:?} is not accepted with --role agent: agent tokens belong to the platform, not to an organization"
        ),
        (RoleArg::Agent, None) => String::new(),
        (_, Some(org)) => org,
        (_, None) => bail!("--org is required for the read, write and bundle roles"),
    };
    let mut organizations = client::organizations(args).await?;
    let token = organizations
        .create_api_token(CreateApiTokenRequest {
            organization,
            role: proto_role.into(),
            description,
            expires_in_seconds: expires_in.unwrap_or(0),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    match args.output {
        Output::Json => println!("{}", created_json(&token)),
        Output::Table => {
            println!("token id: {}", token.id);
            println!("role:     {}", role_name(token.role));
            println!("expires:  {}", expiry(token.expires_at));
            println!("token (shown once; store it now):\n{}", token.token);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: &ClientArgs, organization: String) -> anyhow::Result<ExitCode> {
    let mut organizations = client::organizations(args).await?;
    let tokens = organizations
        .list_api_tokens(ListApiTokensRequest { organization })
        .await
        .map_err(status_error)?
        .into_inner()
        .tokens;
    let now = now_seconds();
    match args.output {
        Output::Json => {
            let tokens: Vec<Value> = tokens.iter().map(|token| info_json(token, now)).collect();
            println!("{}", Value::Array(tokens));
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|token| {
                    vec![
                        token.id.clone(),
                        role_name(token.role).to_owned(),
                        state(token, now).to_owned(),
                        timestamp(token.created_at),
                        never_if_zero(token.last_used_at),
                        expiry(token.expires_at),
                        token.description.clone(),
                    ]
                })
                .collect();
            let header = [
                "ID",
                "ROLE",
                "STATE",
                "CREATED",
                "LAST USED",
                "EXPIRES",
                "DESCRIPTION",
            ];
            println!("{}", table(&header, &rows));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(args: &ClientArgs, id: String, organization: String) -> anyhow::Result<ExitCode> {
    let mut organizations = client::organizations(args).await?;
    let token = organizations
        .revoke_api_token(RevokeApiTokenRequest { organization, id })
        .await
        .map_err(status_error)?
        .into_inner();
    match args.output {
        Output::Json => println!("{}", info_json(&token, now_seconds())),
        Output::Table => println!(
            "token {} revoked at {}",
            token.id,
            timestamp(token.revoked_at)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `--expires-in`: a positive number with a unit, `s`, `m`, `h` or `d`;
/// returns seconds. The message names the value; clap adds the argument.
pub(crate) fn parse_lifetime(value: &str) -> Result<i64, String> {
    let usage = "expected a positive number with a unit: 90d, 12h, 30m or 3600s";
    match certfleet_core::parse_span(value) {
        Ok(seconds) if seconds <= MAX_LIFETIME_SECONDS => Ok(seconds),
        Ok(_) | Err(SpanError::TooLong) => Err(format!(
            "{value:?} is longer than 3650 days; leave --expires-in out for a token that never expires"
        )),
        Err(SpanError::Empty) => Err(format!("{value:?} is empty; {usage}")),
        Err(SpanError::NoUnit) => Err(format!("{value:?} has no unit; {usage}")),
        Err(SpanError::NotANumber) => {
            Err(format!("{value:?} is not a number with a unit; {usage}"))
        }
        Err(SpanError::NotPositive) => Err(format!("{value:?} is not positive; {usage}")),
    }
}

fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role).unwrap_or(pb::Role::Unspecified) {
        pb::Role::Read => "read",
        pb::Role::Write => "write",
        pb::Role::Bundle => "bundle",
        pb::Role::Agent => "agent",
        pb::Role::Unspecified => "unknown",
    }
}

/// `revoked`, `expired` or `active`, as of `now` (Unix seconds).
fn state(token: &ApiTokenInfo, now: i64) -> &'static str {
    if token.revoked_at != 0 {
        "revoked"
    } else if token.expires_at != 0 && token.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}

fn expiry(expires_at: i64) -> String {
    if expires_at == 0 {
        "never".to_owned()
    } else {
        timestamp(expires_at)
    }
}

fn never_if_zero(seconds: i64) -> String {
    if seconds == 0 {
        "never".to_owned()
    } else {
        timestamp(seconds)
    }
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

fn created_json(token: &ApiToken) -> Value {
    json!({
        "id": token.id,
        "organization_id": token.organization_id,
        "role": role_name(token.role),
        "token": token.token,
        "created_at": timestamp(token.created_at),
        "expires_at": timestamp(token.expires_at),
    })
}

fn info_json(token: &ApiTokenInfo, now: i64) -> Value {
    json!({
        "id": token.id,
        "organization": token.organization,
        "organization_id": token.organization_id,
        "role": role_name(token.role),
        "state": state(token, now),
        "description": token.description,
        "created_at": timestamp(token.created_at),
        "last_used_at": timestamp(token.last_used_at),
        "expires_at": timestamp(token.expires_at),
        "revoked_at": timestamp(token.revoked_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_with_units() {
        assert_eq!(parse_lifetime("3600s"), Ok(3600));
        assert_eq!(parse_lifetime("30m"), Ok(1800));
        assert_eq!(parse_lifetime("12h"), Ok(43_200));
        assert_eq!(parse_lifetime("90d"), Ok(90 * 86_400));
        assert_eq!(parse_lifetime("3650d"), Ok(MAX_LIFETIME_SECONDS));
    }

    #[test]
    fn bad_lifetimes_name_the_value() {
        for bad in [
            "",
            "90",
            "90x",
            "d",
            "-1d",
            "0s",
            "1.5h",
            "3651d",
            "99999999999999999d",
        ] {
            let error = parse_lifetime(bad).err().unwrap_or_default();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }

    #[test]
    fn states() {
        let mut token = ApiTokenInfo {
            expires_at: 100,
            ..ApiTokenInfo::default()
        };
        assert_eq!(state(&token, 99), "active");
        assert_eq!(state(&token, 100), "expired");
        token.revoked_at = 50;
        assert_eq!(state(&token, 99), "revoked");
        token = ApiTokenInfo::default();
        assert_eq!(state(&token, i64::MAX), "active");
    }
}
