//! The client commands: organizations, tokens and certificates over gRPC, and
//! `migrate`.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use certfleet_proto::v1::{
    self as pb, CertificateStatus, CreateCertificateRequest, CreateOrganizationRequest,
    DeleteCertificateRequest, GetCertificateBundleRequest, GetCertificateRequest,
    ListCertificatesRequest, ListOrganizationsRequest, RenewCertificateRequest,
    RevokeCertificateRequest,
};
use certfleet_store::Store;

use crate::args::{
    CertCommand, ChallengeArg, ClientArgs, KeyTypeArg, MigrateArgs, OrgCommand, Output, ReasonArg,
    StatusArg,
};
use crate::client::{self, Certificates, status_error};
use crate::output;
use crate::wait::{Goal, current_serial, finish, open_watch, print_certificate};

pub(crate) async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let parent = Path::new(&args.database_url).parent();
    if let Some(parent) =
        parent.filter(|parent| !args.database_url.contains("://") && !parent.as_os_str().is_empty())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let store = Store::connect(&args.database_url).await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for version in applied {
            println!("applied {version}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn org(args: &ClientArgs, command: OrgCommand) -> anyhow::Result<ExitCode> {
    let mut organizations = client::organizations(args).await?;
    let listed = match command {
        OrgCommand::Create { slug, name, email } => {
            let organization = organizations
                .create_organization(CreateOrganizationRequest {
                    slug,
                    name,
                    contact_email: email,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if let Output::Json = args.output {
                println!("{}", output::organization_json(&organization));
                return Ok(ExitCode::SUCCESS);
            }
            vec![organization]
        }
        OrgCommand::List => {
            let listed = organizations
                .list_organizations(ListOrganizationsRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .organizations;
            if let Output::Json = args.output {
                let json = listed.iter().map(output::organization_json).collect();
                println!("{}", serde_json::Value::Array(json));
                return Ok(ExitCode::SUCCESS);
            }
            listed
        }
        OrgCommand::Eab(eab) => return crate::eab::run(args, &mut organizations, eab).await,
    };
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|organization| {
            vec![
                organization.id.clone(),
                organization.slug.clone(),
                organization.name.clone(),
                organization.contact_email.clone(),
            ]
        })
        .collect();
    println!("{}", output::table(&["ID", "SLUG", "NAME", "EMAIL"], &rows));
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn cert(args: &ClientArgs, command: CertCommand) -> anyhow::Result<ExitCode> {
    let mut certificates = client::certificates(args).await?;
    match command {
        CertCommand::Request {
            names,
            key_type,
            challenge,
            dns,
            no_auto_renew,
            renew_before_days,
            profile,
            wait,
            timeout,
        } => {
            let request = CreateCertificateRequest {
                names,
                key_type: key_type_proto(key_type) as i32,
                challenge_type: challenge_proto(challenge, dns.is_some()) as i32,
                auto_renew: Some(!no_auto_renew),
                renew_before_expiry_seconds: i64::from(renew_before_days.unwrap_or(0)) * 86_400,
                dns_provider: dns.unwrap_or_default(),
                profile: profile.unwrap_or_default(),
            };
            // Watch before creating, so no event is missed.
            let watch = if wait {
                Some(open_watch(&mut certificates).await?)
            } else {
                None
            };
            let created = certificates
                .create_certificate(request)
                .await
                .map_err(status_error)?
                .into_inner();
            finish(
                args,
                &mut certificates,
                created,
                watch,
                Goal::Valid,
                timeout,
            )
            .await
        }
        CertCommand::Renew { id, wait, timeout } => {
            let watch = if wait {
                Some(open_watch(&mut certificates).await?)
            } else {
                None
            };
            let before = current_serial(&mut certificates, &id).await?;
            let renewed = certificates
                .renew_certificate(RenewCertificateRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            finish(
                args,
                &mut certificates,
                renewed,
                watch,
                Goal::NewSerial(before),
                timeout,
            )
            .await
        }
        CertCommand::Revoke {
            id,
            reason,
            wait,
            timeout,
        } => {
            let watch = if wait {
                Some(open_watch(&mut certificates).await?)
            } else {
                None
            };
            let certificate = certificates
                .revoke_certificate(RevokeCertificateRequest {
                    id,
                    reason: reason_proto(reason) as i32,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            finish(
                args,
                &mut certificates,
                certificate,
                watch,
                Goal::Revoked,
                timeout,
            )
            .await
        }
        CertCommand::Show { id } => {
            let certificate = certificates
                .get_certificate(GetCertificateRequest {
                    id,
                    ..Default::default()
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_certificate(args.output, &certificate);
            Ok(ExitCode::SUCCESS)
        }
        CertCommand::Delete { id } => {
            certificates
                .delete_certificate(DeleteCertificateRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            match args.output {
                Output::Json => println!("{}", serde_json::json!({ "deleted": id })),
                Output::Table => println!("deleted {id}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        CertCommand::List {
            status,
            name,
            expiring_within_days,
            page_size,
        } => {
            list(
                args,
                &mut certificates,
                status,
                name,
                expiring_within_days,
                page_size,
            )
            .await
        }
        CertCommand::Download { id, out } => download(args, &mut certificates, id, &out).await,
    }
}

async fn list(
    args: &ClientArgs,
    certificates: &mut Certificates,
    status: Option<StatusArg>,
    name: Option<String>,
    expiring_within_days: Option<u32>,
    page_size: u32,
) -> anyhow::Result<ExitCode> {
    let expiring_before = expiring_within_days
        .map(|days| time::OffsetDateTime::now_utc().unix_timestamp() + i64::from(days) * 86_400)
        .unwrap_or(0);
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = certificates
            .list_certificates(ListCertificatesRequest {
                status: status
                    .map(status_proto)
                    .unwrap_or(CertificateStatus::Unspecified) as i32,
                name: name.clone().unwrap_or_default(),
                expiring_before,
                page_size,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner();
        all.extend(page.certificates);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::Value::Array(all.iter().map(output::certificate_json).collect())
        ),
        Output::Table => {
            let rows: Vec<Vec<String>> = all.iter().map(output::certificate_row).collect();
            println!(
                "{}",
                output::table(&["ID", "STATUS", "NAMES", "EXPIRES", "SERIAL"], &rows)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn download(
    args: &ClientArgs,
    certificates: &mut Certificates,
    id: String,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let bundle = certificates
        .get_certificate_bundle(GetCertificateBundleRequest {
            id,
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .with_context(|| format!("creating {}", out.display()))?;
    let files: [(&str, &str, u32); 4] = [
        ("cert.pem", &bundle.certificate_pem, 0o644),
        ("chain.pem", &bundle.chain_pem, 0o644),
        ("fullchain.pem", &bundle.fullchain_pem, 0o644),
        ("privkey.pem", &bundle.private_key_pem, 0o600),
    ];
    for (name, contents, mode) in files {
        let path = out.join(name);
        // Through a temporary file and a rename: a reader never sees half a file.
        certfleet_proxy::write_atomically(&path, contents.as_bytes(), mode)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "certificate_id": bundle.certificate_id,
                "version": bundle.version,
                "serial": bundle.serial,
                "directory": out,
                "files": ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"],
            })
        ),
        Output::Table => println!(
            "wrote cert.pem, chain.pem, fullchain.pem and privkey.pem (0600) of version {} (serial {}) to {}",
            bundle.version,
            bundle.serial,
            out.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn key_type_proto(key_type: KeyTypeArg) -> pb::KeyType {
    match key_type {
        KeyTypeArg::EcdsaP256 => pb::KeyType::EcdsaP256,
        KeyTypeArg::EcdsaP384 => pb::KeyType::EcdsaP384,
        KeyTypeArg::Rsa2048 => pb::KeyType::Rsa2048,
        KeyTypeArg::Rsa3072 => pb::KeyType::Rsa3072,
        KeyTypeArg::Rsa4096 => pb::KeyType::Rsa4096,
    }
}

/// The challenge asked for: as given, else DNS-01 when a DNS provider is named.
fn challenge_proto(challenge: Option<ChallengeArg>, has_dns_provider: bool) -> pb::ChallengeType {
    match challenge {
        Some(ChallengeArg::Http01) => pb::ChallengeType::Http01,
        Some(ChallengeArg::Dns01) => pb::ChallengeType::Dns01,
        None if has_dns_provider => pb::ChallengeType::Dns01,
        None => pb::ChallengeType::Http01,
    }
}

fn reason_proto(reason: ReasonArg) -> pb::RevocationReason {
    match reason {
        ReasonArg::Unspecified => pb::RevocationReason::Unspecified,
        ReasonArg::KeyCompromise => pb::RevocationReason::KeyCompromise,
        ReasonArg::AffiliationChanged => pb::RevocationReason::AffiliationChanged,
        ReasonArg::Superseded => pb::RevocationReason::Superseded,
        ReasonArg::CessationOfOperation => pb::RevocationReason::CessationOfOperation,
    }
}

fn status_proto(status: StatusArg) -> CertificateStatus {
    match status {
        StatusArg::Pending => CertificateStatus::Pending,
        StatusArg::Issuing => CertificateStatus::Issuing,
        StatusArg::Valid => CertificateStatus::Valid,
        StatusArg::Renewing => CertificateStatus::Renewing,
        StatusArg::Expired => CertificateStatus::Expired,
        StatusArg::Revoked => CertificateStatus::Revoked,
        StatusArg::Failed => CertificateStatus::Failed,
    }
}
