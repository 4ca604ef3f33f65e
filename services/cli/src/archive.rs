//! Where copies of issued certificates go (`--archive-location`, a folder or
//! an S3 bucket) and how to reach S3: the flags shared by `dev`/`server`,
//! `backup verify` and `restore`.

use std::path::Path;

use anyhow::bail;
use certfleet_archive::{ArchiveConfig, ArchiveError, S3Access};
use clap::Args;

/// The archive flags.
#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    /// Where a copy of every issued version is written: a folder, or
    /// `s3://BUCKET/PREFIX` (with the --archive-s3-* settings), or `none`.
    /// Default for `dev` and `server`: `<data-dir>/backups`.
    #[arg(
        long,
        env = "CERTFLEET_ARCHIVE_LOCATION",
        value_name = "FOLDER|s3://BUCKET/PREFIX|none"
    )]
    pub archive_location: Option<String>,
    /// S3: the bucket's region.
    #[arg(long, env = "CERTFLEET_ARCHIVE_S3_REGION", default_value = "us-east-1")]
    pub archive_s3_region: String,
    /// S3: another endpoint than AWS's (MinIO, Ceph, a proxy, …).
    #[arg(long, env = "CERTFLEET_ARCHIVE_S3_ENDPOINT_URL")]
    pub archive_s3_endpoint_url: Option<String>,
    /// S3: path-style requests (`endpoint/bucket/key`), which most
    /// S3-compatible services need.
    #[arg(
        long,
        env = "CERTFLEET_ARCHIVE_S3_PATH_STYLE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub archive_s3_path_style: bool,
    /// S3: the access key id of the credentials.
    #[arg(
        long,
        env = "CERTFLEET_ARCHIVE_S3_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub archive_s3_access_key_id: Option<String>,
    /// S3: the secret access key of the credentials.
    #[arg(
        long,
        env = "CERTFLEET_ARCHIVE_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub archive_s3_secret_access_key: Option<String>,
    /// S3: the session token of temporary credentials.
    #[arg(
        long,
        env = "CERTFLEET_ARCHIVE_S3_SESSION_TOKEN",
        hide_env_values = true
    )]
    pub archive_s3_session_token: Option<String>,
}

impl ArchiveArgs {
    /// The S3 connection settings as given.
    pub fn s3_access(&self) -> S3Access {
        S3Access {
            region: self.archive_s3_region.clone(),
            endpoint_url: self
                .archive_s3_endpoint_url
                .clone()
                .filter(|url| !url.trim().is_empty()),
            path_style: self.archive_s3_path_style,
            access_key_id: self.archive_s3_access_key_id.clone().unwrap_or_default(),
            secret_access_key: self
                .archive_s3_secret_access_key
                .clone()
                .unwrap_or_default()
                .into(),
            session_token: self
                .archive_s3_session_token
                .clone()
                .filter(|token| !token.is_empty())
                .map(Into::into),
        }
    }

    /// The archive of `--archive-location` (`default` when not given), or
    /// none for `none`; checked without I/O.
    pub fn config(&self, default: Option<&Path>) -> anyhow::Result<Option<ArchiveConfig>> {
        let location = match (&self.archive_location, default) {
            (Some(location), _) if location.trim().eq_ignore_ascii_case("none") => return Ok(None),
            (Some(location), _) => location.trim().to_owned(),
            (None, Some(path)) => path.display().to_string(),
            (None, None) => bail!(
                "--archive-location (CERTFLEET_ARCHIVE_LOCATION) is required: a folder or s3://BUCKET/PREFIX"
            ),
        };
        self.location(&location).map(Some)
    }

    /// The archive at `location` (a folder or `s3://BUCKET/PREFIX`) reached
    /// with these S3 settings.
    pub fn location(&self, location: &str) -> anyhow::Result<ArchiveConfig> {
        ArchiveConfig::from_location(location, Some(&self.s3_access())).map_err(named)
    }
}

/// An archive setting error under its flag and variable names.
fn named(error: ArchiveError) -> anyhow::Error {
    match error {
        ArchiveError::Setting { setting, message } => anyhow::anyhow!(
            "--{} (CERTFLEET_{}): {message}",
            setting.replace('_', "-"),
            setting.to_ascii_uppercase()
        ),
        other => anyhow::Error::new(other),
    }
}
