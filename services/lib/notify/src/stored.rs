//! A channel's secret settings at rest: sealed by the vault under
//! `(organization, "notification-channel", channel id)` when the channel is
//! added, opened when it is used (the notifier, `notify test`).

use std::collections::BTreeMap;

use certfleet_store::NotificationChannelRow;
use certfleet_vault::{EncryptionContext, Vault, VaultError};
use zeroize::Zeroizing;

use crate::{ChannelSettings, ValidationError};

/// Why a stored channel cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Its secrets did not open (the key service is away, or the wrong key).
    #[error("opening the channel's secrets: {0}")]
    Vault(#[from] VaultError),
    /// Its stored settings are not a channel any more.
    #[error("the channel's settings: {0}")]
    Settings(#[from] ValidationError),
}

impl OpenError {
    /// Whether trying again later may help (the vault may come back; bad
    /// settings stay bad).
    pub fn retryable(&self) -> bool {
        matches!(self, OpenError::Vault(_))
    }
}

/// The secret settings (as [`ChannelSettings::split`] gives them) sealed for
/// the channel `channel_id`; `None` when there are none.
pub async fn seal_secrets(
    vault: &Vault,
    organization_id: &str,
    channel_id: &str,
    secret: &BTreeMap<String, Zeroizing<String>>,
) -> Result<Option<Vec<u8>>, VaultError> {
    if secret.is_empty() {
        return Ok(None);
    }
    let values: BTreeMap<&str, &str> = secret
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let plaintext = Zeroizing::new(
        serde_json::to_vec(&values)
            .map_err(|error| VaultError::Format(format!("channel secret settings: {error}")))?,
    );
    let context = EncryptionContext::notification_channel(organization_id, channel_id);
    vault.seal(&context, &plaintext).await.map(Some)
}

impl ChannelSettings {
    /// A stored channel with its secrets opened.
    pub async fn open(
        vault: &Vault,
        row: &NotificationChannelRow,
    ) -> Result<ChannelSettings, OpenError> {
        let secrets = match &row.secrets_sealed {
            Some(sealed) => {
                let context =
                    EncryptionContext::notification_channel(&row.organization_id, &row.id);
                Some(vault.open(&context, sealed).await?)
            }
            None => None,
        };
        Ok(ChannelSettings::from_stored(
            &row.kind,
            &row.settings,
            secrets.as_deref().map(Vec::as_slice),
        )?)
    }
}
