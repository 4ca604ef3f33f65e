//! The vault's error type; no message ever contains key material or plaintext.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("invalid master key: {0}")]
    InvalidMasterKey(String),
    #[error("master key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decryption failed: wrong key or wrong context")]
    Decrypt,
    #[error("blob was sealed under key {blob_key_id} but this vault holds {vault_key_id}")]
    WrongKey {
        blob_key_id: String,
        vault_key_id: String,
    },
    #[error("malformed sealed blob: {0}")]
    Format(String),
    #[error("crypto failure: {0}")]
    Crypto(String),
    /// A setting of the key service that cannot work; names the setting.
    #[error("{setting}: {message}")]
    Setting {
        setting: &'static str,
        message: String,
    },
    /// The key service said no (unknown key, access denied, wrong context);
    /// asking again will not help.
    #[error("{0}")]
    Refused(String),
    /// The key service could not be reached or asked to slow down; retry later.
    #[error("key service unavailable: {0}")]
    Unavailable(String),
}

impl VaultError {
    /// Whether the same call may succeed later (the key service was unreachable
    /// or busy); every other error is final.
    pub fn is_transient(&self) -> bool {
        matches!(self, VaultError::Unavailable(_))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VaultError::Io {
            path: path.into(),
            source,
        }
    }
}
