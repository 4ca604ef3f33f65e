//! The key-wrapping abstraction: where data keys come from and how they are protected.

use std::fmt;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::{EncryptionContext, VaultError};

pub(crate) const DATA_KEY_LEN: usize = 32;

/// A plaintext AES-256 data key; zeroized on drop and never printed.
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// A fresh key from the system CSPRNG.
    pub fn generate() -> Result<Self, VaultError> {
        let mut bytes = Zeroizing::new([0u8; DATA_KEY_LEN]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| VaultError::Crypto("random number generator failed".to_owned()))?;
        Ok(DataKey(bytes))
    }

    /// Takes a key returned by a key service (for example KMS `GenerateDataKey`).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() != DATA_KEY_LEN {
            return Err(VaultError::Crypto(format!(
                "data key must be {DATA_KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        key.copy_from_slice(bytes);
        Ok(DataKey(key))
    }

    pub(crate) fn bytes(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A data key encrypted under the key identified by `key_id`; safe to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    pub ciphertext: Vec<u8>,
}

/// Produces and unwraps data keys; implemented by the local master key and
/// by AWS KMS (`GenerateDataKey` / `Decrypt` with the context).
#[async_trait]
pub trait KeyWrapper: Send + Sync + fmt::Debug {
    /// Identifies the wrapping key; stored in every sealed blob.
    fn key_id(&self) -> &str;

    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), VaultError>;

    /// Wraps an existing data key under this wrapping key, bound to `ctx`
    /// (key rotation: the sealed data stays as it is).
    async fn wrap_data_key(
        &self,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<WrappedKey, VaultError>;

    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        ctx: &EncryptionContext,
    ) -> Result<DataKey, VaultError>;

    /// Whether this wrapper can unwrap a data key wrapped under `key_id`.
    fn can_unwrap(&self, key_id: &str) -> bool {
        key_id == self.key_id()
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_bytes() {
        let key = DataKey::from_slice(&[7u8; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "DataKey(..)");
        assert!(DataKey::from_slice(&[7u8; 31]).is_err());
    }

    #[test]
    fn generated_keys_differ() {
        let a = DataKey::generate().unwrap();
        let b = DataKey::generate().unwrap();
        assert_ne!(a.bytes(), b.bytes());
    }
}
