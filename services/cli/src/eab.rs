//! `certfleet org eab`: an organization's External Account Binding at a CA
//! (the key id and HMAC key some CAs require before they register an
//! account). The HMAC key is read from a file or stdin, never from a flag, so
//! it stays out of shell history and process lists.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use certfleet_proto::v1::{DeleteExternalAccountBindingRequest, SetExternalAccountBindingRequest};
use clap::Subcommand;
use serde_json::json;

use crate::args::{ClientArgs, Output};
use crate::client::{Organizations, status_error};
use crate::output::timestamp;

#[derive(Debug, Subcommand)]
pub enum EabCommand {
    /// Set (or replace) the organization's binding at a CA; used when its
    /// ACME account there is registered (needs the admin token).
    ///
    /// Example:
    ///   certfleet org eab set --org acme --directory https://acme.zerossl.com/v2/DV90 \
    ///       --key-id KID --hmac-key-file ./eab.hmac
    #[command(verbatim_doc_comment)]
    Set {
        /// Slug of the organization.
        #[arg(long)]
        org: String,
        /// The CA's ACME directory URL, exactly as certfleet is configured with it.
        #[arg(long)]
        directory: String,
        /// The EAB key id the CA gave.
        #[arg(long)]
        key_id: String,
        /// File holding the EAB HMAC key as the CA gave it (base64url); `-`
        /// reads it from stdin. Surrounding whitespace is dropped.
        #[arg(long, value_name = "FILE")]
        hmac_key_file: PathBuf,
    },
    /// Remove the organization's binding at a CA (an account already
    /// registered with it stays).
    Delete {
        /// Slug of the organization.
        #[arg(long)]
        org: String,
        /// The CA's ACME directory URL.
        #[arg(long)]
        directory: String,
    },
}

pub(crate) async fn run(
    args: &ClientArgs,
    organizations: &mut Organizations,
    command: EabCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        EabCommand::Set {
            org,
            directory,
            key_id,
            hmac_key_file,
        } => {
            let hmac_key = read_hmac_key(&hmac_key_file)?;
            let binding = organizations
                .set_external_account_binding(SetExternalAccountBindingRequest {
                    organization: org,
                    directory_url: directory,
                    key_id,
                    hmac_key,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match args.output {
                Output::Json => println!(
                    "{}",
                    json!({
                        "organization_id": binding.organization_id,
                        "directory_url": binding.directory_url,
                        "key_id": binding.key_id,
                        "created_at": timestamp(binding.created_at),
                        "updated_at": timestamp(binding.updated_at),
                    })
                ),
                Output::Table => println!(
                    "external account binding set: key id {} for {}",
                    binding.key_id, binding.directory_url
                ),
            }
        }
        EabCommand::Delete { org, directory } => {
            organizations
                .delete_external_account_binding(DeleteExternalAccountBindingRequest {
                    organization: org,
                    directory_url: directory.clone(),
                })
                .await
                .map_err(status_error)?;
            println!("external account binding deleted for {directory}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The key from `path`, or stdin for `-`, without surrounding whitespace.
fn read_hmac_key(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the HMAC key from stdin")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the HMAC key from {}", path.display()))?;
    }
    let key = text.trim().to_owned();
    if key.is_empty() {
        bail!("the HMAC key file {} is empty", path.display());
    }
    Ok(key)
}
