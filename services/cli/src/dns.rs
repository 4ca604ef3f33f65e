//! `certfleet dns`: the DNS providers of the token's organization, which
//! write the TXT records of DNS-01 challenges. Secret settings go to the
//! server once and are never shown again; `--set-file` keeps them out of
//! shell history and process lists.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use certfleet_proto::v1::{
    CreateDnsProviderRequest, DeleteDnsProviderRequest, DnsProvider, GetDnsProviderRequest,
    ListDnsProvidersRequest, TestDnsProviderRequest, TestDnsProviderResponse,
};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::args::{ClientArgs, Output};
use crate::client::{self, status_error};
use crate::output::{table, timestamp};

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Add a DNS provider, which writes the TXT records of DNS-01 challenges
    ///
    /// certfleet proves control of a name to the CA by writing a TXT record at
    /// `_acme-challenge.NAME` through the provider (DNS-01; wildcard names need
    /// it). The settings are checked now; a wrong one is refused with its name.
    /// Secret settings (TSIG secrets, API keys and tokens, HMAC secrets) are
    /// stored encrypted and never shown again. Needs a write token.
    ///
    /// Examples:
    ///   certfleet dns add bind --kind rfc2136 --set server=192.0.2.53 \
    ///       --set tsig_key=certfleet --set-file tsig_secret=./tsig.secret
    ///   certfleet dns add hook --kind webhook \
    ///       --set url=https://dns.example.com/acme --set-file hmac_secret=./hook.secret
    ///
    /// Settings of every kind: zone (write in this zone instead of the one found
    /// by looking up SOA records), nameservers (check these servers instead of
    /// the zone's NS records; comma-separated IP[:port]) and propagation_check
    /// (true/false, default true). The settings of each kind are in docs/DNS.md.
    #[command(verbatim_doc_comment)]
    Add {
        /// Name of the provider in this organization: 1 to 63 lower-case
        /// letters, digits and '-'. Certificates refer to it with
        /// `cert request … --challenge dns-01 --dns NAME`.
        name: String,
        /// Where the records are written: rfc2136 (a DNS server that accepts
        /// TSIG-signed dynamic updates: BIND, Knot, PowerDNS, Windows), pdns
        /// (the PowerDNS HTTP API), route53 (Amazon Route 53), cloudflare,
        /// exec (a program the operator allows) or webhook (an HTTP POST).
        #[arg(long)]
        kind: KindArg,
        /// One setting as KEY=VALUE; repeat for more. The value is visible in
        /// shell history and process lists: give secrets with --set-file.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
        set: Vec<(String, String)>,
        /// One setting as KEY=PATH: the value is read from the file at PATH
        /// (a trailing newline is dropped), so secrets stay out of shell
        /// history and process lists. Repeat for more.
        #[arg(long = "set-file", value_name = "KEY=PATH", value_parser = parse_setting_file)]
        set_file: Vec<(String, PathBuf)>,
    },
    /// List the organization's DNS providers.
    List,
    /// Show one DNS provider by name or id.
    ///
    /// Prints its plain settings, and the names of the secret settings that
    /// are set (never their values).
    Show {
        /// Name or id.
        name: String,
    },
    /// Check that a provider works, before certificates rely on it.
    ///
    /// Writes a probe TXT record at _acme-challenge.DOMAIN (or where its CNAME
    /// points), waits until every authoritative name server of the zone answers
    /// it, then removes it: what an issuance does. Prints where it wrote, the
    /// servers that answered and how long each step took. The wait may last as
    /// long as the server's dns_propagation_timeout (default 120 s). Exits 1
    /// with the reason when a step fails. Needs a write token.
    Test {
        /// Name or id.
        name: String,
        /// A name the provider can write for, e.g. example.com.
        #[arg(long)]
        domain: String,
    },
    /// Delete a DNS provider.
    ///
    /// Refused while a certificate that is neither revoked nor deleted uses it.
    Delete {
        /// Name or id.
        name: String,
    },
}

/// The provider kinds, as the server names them.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Rfc2136,
    #[value(alias = "powerdns")]
    Pdns,
    Route53,
    Cloudflare,
    Exec,
    Webhook,
}

impl KindArg {
    fn as_str(self) -> &'static str {
        match self {
            KindArg::Rfc2136 => "rfc2136",
            KindArg::Pdns => "pdns",
            KindArg::Route53 => "route53",
            KindArg::Cloudflare => "cloudflare",
            KindArg::Exec => "exec",
            KindArg::Webhook => "webhook",
        }
    }
}

/// `KEY=VALUE`; the value may be empty or hold further '='.
pub(crate) fn parse_setting(argument: &str) -> Result<(String, String), String> {
    let (key, value) = split_setting(argument, "KEY=VALUE, e.g. --set server=192.0.2.53")?;
    Ok((key, value.to_owned()))
}

/// `KEY=PATH`; the file is read when the command runs.
pub(crate) fn parse_setting_file(argument: &str) -> Result<(String, PathBuf), String> {
    let (key, path) = split_setting(
        argument,
        "KEY=PATH, e.g. --set-file tsig_secret=./tsig.secret",
    )?;
    if path.is_empty() {
        return Err(format!("no file after {key:?}= (expected KEY=PATH)"));
    }
    Ok((key, PathBuf::from(path)))
}

fn split_setting<'a>(argument: &'a str, expected: &str) -> Result<(String, &'a str), String> {
    let Some((key, value)) = argument.split_once('=') else {
        return Err(format!("no '=' (expected {expected})"));
    };
    let key = key.trim();
    let valid = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(format!(
            "{key:?} is not a setting name: lower-case letters, digits and '_' (expected {expected})"
        ));
    }
    Ok((key.to_owned(), value))
}

/// The settings of `dns add`, files read; a key given twice is refused.
pub(crate) fn collect_settings(
    set: Vec<(String, String)>,
    set_file: Vec<(String, PathBuf)>,
) -> anyhow::Result<HashMap<String, String>> {
    let mut settings = HashMap::new();
    let mut add = |key: String, value: String, argument: &str| {
        if settings.contains_key(&key) {
            anyhow::bail!("{argument} {key}: the setting {key} is given more than once");
        }
        settings.insert(key, value);
        Ok(())
    };
    for (key, value) in set {
        add(key, value, "--set")?;
    }
    for (key, path) in set_file {
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("--set-file {key}={}: cannot read the file", path.display())
        })?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value).to_owned();
        add(key, value, "--set-file")?;
    }
    Ok(settings)
}

pub(crate) async fn run(args: &ClientArgs, command: DnsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DnsCommand::Add {
            name,
            kind,
            set,
            set_file,
        } => {
            // Files are read before connecting: a bad argument fails at once.
            let request = CreateDnsProviderRequest {
                name,
                kind: kind.as_str().to_owned(),
                settings: collect_settings(set, set_file)?,
            };
            let created = client::dns_providers(args)
                .await?
                .create_dns_provider(request)
                .await
                .map_err(status_error)?
                .into_inner();
            print_provider(args.output, &created);
        }
        DnsCommand::List => {
            let list = client::dns_providers(args)
                .await?
                .list_dns_providers(ListDnsProvidersRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            match args.output {
                Output::Json => println!(
                    "{}",
                    Value::Array(list.providers.iter().map(provider_json).collect())
                ),
                Output::Table => {
                    let rows: Vec<Vec<String>> = list.providers.iter().map(provider_row).collect();
                    println!("{}", table(&["ID", "NAME", "KIND", "CREATED"], &rows));
                }
            }
        }
        DnsCommand::Show { name } => {
            let provider = client::dns_providers(args)
                .await?
                .get_dns_provider(GetDnsProviderRequest { id: name })
                .await
                .map_err(status_error)?
                .into_inner();
            print_provider(args.output, &provider);
        }
        DnsCommand::Test { name, domain } => {
            let mut providers = client::dns_providers(args).await?;
            if args.output == Output::Table {
                eprintln!(
                    "writing a probe record for {domain} with {name} and waiting until every authoritative name server answers it…"
                );
            }
            let report = providers
                .test_dns_provider(TestDnsProviderRequest { id: name, domain })
                .await
                .map_err(status_error)?
                .into_inner();
            match args.output {
                Output::Json => println!("{}", report_json(&report)),
                Output::Table => println!("{}", report_details(&report)),
            }
        }
        DnsCommand::Delete { name } => {
            client::dns_providers(args)
                .await?
                .delete_dns_provider(DeleteDnsProviderRequest { id: name.clone() })
                .await
                .map_err(status_error)?;
            match args.output {
                Output::Json => println!("{}", json!({ "deleted": name })),
                Output::Table => println!("deleted {name}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn sorted(settings: &HashMap<String, String>) -> BTreeMap<&str, &str> {
    settings
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

fn provider_json(provider: &DnsProvider) -> Value {
    json!({
        "id": provider.id,
        "organization_id": provider.organization_id,
        "name": provider.name,
        "kind": provider.kind,
        "settings": sorted(&provider.settings),
        "secret_settings": provider.secret_settings,
        "created_at": timestamp(provider.created_at),
    })
}

fn provider_row(provider: &DnsProvider) -> Vec<String> {
    vec![
        provider.id.clone(),
        provider.name.clone(),
        provider.kind.clone(),
        timestamp(provider.created_at),
    ]
}

/// Key/value lines of one provider; secrets by name only.
fn provider_details(provider: &DnsProvider) -> String {
    let mut lines = vec![
        format!("id:        {}", provider.id),
        format!("name:      {}", provider.name),
        format!("kind:      {}", provider.kind),
        format!("created:   {}", timestamp(provider.created_at)),
    ];
    let settings = sorted(&provider.settings);
    if settings.is_empty() && provider.secret_settings.is_empty() {
        lines.push("settings:  none".to_owned());
    } else {
        lines.push("settings:".to_owned());
        for (key, value) in settings {
            lines.push(format!("  {key} = {value}"));
        }
        for key in &provider.secret_settings {
            lines.push(format!("  {key} = (secret, set; never shown)"));
        }
    }
    lines.join("\n")
}

fn print_provider(format: Output, provider: &DnsProvider) {
    match format {
        Output::Json => println!("{}", provider_json(provider)),
        Output::Table => println!("{}", provider_details(provider)),
    }
}

fn report_json(report: &TestDnsProviderResponse) -> Value {
    json!({
        "record_name": report.record_name,
        "zone": report.zone,
        "nameservers": report.nameservers,
        "present_ms": report.present_ms,
        "propagation_ms": report.propagation_ms,
        "cleanup_ms": report.cleanup_ms,
    })
}

fn report_details(report: &TestDnsProviderResponse) -> String {
    let zone = if report.zone.is_empty() {
        "unknown".to_owned()
    } else {
        report.zone.clone()
    };
    let answered = if report.nameservers.is_empty() {
        "not checked (propagation_check is off)".to_owned()
    } else {
        report.nameservers.join(", ")
    };
    [
        "ok: the probe record was written, answered and removed".to_owned(),
        format!("record:       TXT {}", report.record_name),
        format!("zone:         {zone}"),
        format!("answered by:  {answered}"),
        format!("write:        {} ms", report.present_ms),
        format!("propagation:  {} ms", report.propagation_ms),
        format!("removal:      {} ms", report.cleanup_ms),
    ]
    .join("\n")
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn settings_are_key_equals_value() {
        assert_eq!(
            parse_setting("server=192.0.2.53:53").unwrap(),
            ("server".to_owned(), "192.0.2.53:53".to_owned())
        );
        assert_eq!(
            parse_setting("tsig_secret=a=b=").unwrap().1,
            "a=b=",
            "only the first '=' separates"
        );
        assert_eq!(parse_setting("zone=").unwrap().1, "");
        for bad in ["server", "=x", "Server=x", "a b=c"] {
            assert!(parse_setting(bad).is_err(), "{bad}");
        }
        assert!(parse_setting_file("tsig_secret=").is_err());
    }

    #[test]
    fn files_lose_one_trailing_newline_and_keys_are_unique() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret");
        std::fs::write(&path, "s3cret value\r\n").unwrap();
        let settings = collect_settings(
            vec![("url".to_owned(), "https://x.test".to_owned())],
            vec![("hmac_secret".to_owned(), path.clone())],
        )
        .unwrap();
        assert_eq!(settings["hmac_secret"], "s3cret value");
        let twice = collect_settings(
            vec![("hmac_secret".to_owned(), "x".to_owned())],
            vec![("hmac_secret".to_owned(), path)],
        )
        .unwrap_err();
        assert!(twice.to_string().contains("hmac_secret"), "{twice}");
        let missing = collect_settings(
            Vec::new(),
            vec![("k".to_owned(), directory.path().join("absent"))],
        )
        .unwrap_err();
        assert!(
            missing.to_string().starts_with("--set-file k="),
            "{missing}"
        );
    }

    #[test]
    fn secrets_are_shown_by_name_only() {
        let provider = DnsProvider {
            id: "id".to_owned(),
            organization_id: "org".to_owned(),
            name: "hook".to_owned(),
            kind: "webhook".to_owned(),
            settings: HashMap::from([("url".to_owned(), "https://x.test".to_owned())]),
            secret_settings: vec!["hmac_secret".to_owned()],
            created_at: 0,
        };
        let details = provider_details(&provider);
        assert!(details.contains("url = https://x.test"), "{details}");
        assert!(details.contains("hmac_secret = (secret"), "{details}");
    }
}
