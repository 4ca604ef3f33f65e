//! The vault settings of the roles that seal keys (api, issuer): which key
//! wraps the data keys — the local master key or an AWS KMS key — checked at
//! start-up, naming the setting at fault and never a secret.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use certfleet_vault::{AwsKms, AwsKmsConfig, KeyWrapper, LocalMasterKey, Vault, VaultError};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Where the vault's wrapping key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum VaultProvider {
    /// The local master key (`master_key` or `master_key_file`).
    #[default]
    Local,
    /// An AWS KMS key (`kms_*`): data keys from `GenerateDataKey`.
    AwsKms,
}

/// Where the master key comes from.
#[derive(Clone)]
pub enum MasterKeySource {
    /// The base64 key itself (`CERTFLEET_MASTER_KEY`).
    Inline(String),
    /// A file holding the base64 key (`CERTFLEET_MASTER_KEY_FILE`).
    File(PathBuf),
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::Inline(_) => f.write_str("Inline(***)"),
            MasterKeySource::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// The wrapping key of a role that seals keys, checked.
#[derive(Debug, Clone)]
pub enum VaultKeySource {
    Local(MasterKeySource),
    AwsKms(AwsKmsConfig),
}

/// The `kms_*` settings as given.
#[derive(Debug, Default, Clone)]
pub(crate) struct KmsSettings {
    pub key_id: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

/// The AWS KMS settings, checked without I/O; errors name the setting and its
/// environment variable.
pub(crate) fn kms_config(settings: KmsSettings) -> anyhow::Result<AwsKmsConfig> {
    let config = AwsKmsConfig {
        key_id: settings.key_id.unwrap_or_default(),
        region: settings.region.unwrap_or_else(|| "us-east-1".to_owned()),
        endpoint_url: settings.endpoint_url.filter(|url| !url.trim().is_empty()),
        access_key_id: settings.access_key_id.unwrap_or_default(),
        secret_access_key: Zeroizing::new(settings.secret_access_key.unwrap_or_default()),
        session_token: settings
            .session_token
            .filter(|token| !token.is_empty())
            .map(Zeroizing::new),
    };
    match config.check() {
        Ok(()) => Ok(config),
        Err(VaultError::Setting { setting, message }) => bail!(
            "{setting} (CERTFLEET_{}): {message}",
            setting.to_ascii_uppercase()
        ),
        Err(other) => Err(other.into()),
    }
}

/// Builds the vault of the configured key (no call to KMS yet).
pub async fn open_vault_key(source: &VaultKeySource) -> anyhow::Result<Vault> {
    let wrapper: Arc<dyn KeyWrapper> = match source {
        VaultKeySource::Local(MasterKeySource::Inline(encoded)) => {
            Arc::new(LocalMasterKey::from_base64(encoded.trim()).context("CERTFLEET_MASTER_KEY")?)
        }
        VaultKeySource::Local(MasterKeySource::File(path)) => Arc::new(
            LocalMasterKey::load_file(path)
                .await
                .with_context(|| format!("CERTFLEET_MASTER_KEY_FILE {}", path.display()))?,
        ),
        VaultKeySource::AwsKms(config) => {
            let kms = AwsKms::new(config).context("vault_provider aws-kms")?;
            tracing::info!(key_id = %config.key_id, region = %config.region, "vault keys wrapped by aws kms");
            Arc::new(kms)
        }
    };
    Ok(Vault::new(wrapper))
}
