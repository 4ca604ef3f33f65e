//! `LocalMasterKey`: a 32-byte master key kept in a 0600 file, wrapping data keys locally.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;
use zeroize::Zeroizing;

use crate::wrapper::DATA_KEY_LEN;
use crate::{DataKey, EncryptionContext, KeyWrapper, VaultError, WrappedKey, aead};

const MASTER_KEY_LEN: usize = 32;
const KEY_ID_PREFIX: &str = "local:";

/// A master key held in memory; wraps each fresh data key with AES-256-GCM,
/// binding the encryption context as associated data.
pub struct LocalMasterKey {
    key: Zeroizing<[u8; MASTER_KEY_LEN]>,
    key_id: String,
}

impl LocalMasterKey {
    fn from_bytes(key: Zeroizing<[u8; MASTER_KEY_LEN]>) -> Self {
        let digest = Sha256::digest(key.as_slice());
        let fingerprint = hex::encode(digest);
        let key_id = format!("{KEY_ID_PREFIX}{}", &fingerprint[..16]);
        Self { key, key_id }
    }

    /// A new random master key (not persisted).
    pub fn generate() -> Result<Self, VaultError> {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        aws_lc_rs::rand::fill(key.as_mut())
            .map_err(|_| VaultError::Crypto("random number generator failed".to_owned()))?;
        Ok(Self::from_bytes(key))
    }

    /// Standard base64 of exactly 32 bytes; surrounding whitespace is ignored.
    pub fn from_base64(encoded: &str) -> Result<Self, VaultError> {
        let decoded = Zeroizing::new(STANDARD.decode(encoded.trim()).map_err(|_| {
            VaultError::InvalidMasterKey("master key is not valid standard base64".to_owned())
        })?);
        if decoded.len() != MASTER_KEY_LEN {
            return Err(VaultError::InvalidMasterKey(format!(
                "master key must decode to {MASTER_KEY_LEN} bytes, got {}",
                decoded.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        key.copy_from_slice(&decoded);
        Ok(Self::from_bytes(key))
    }

    /// Reads a base64 key file; refuses files that group or others may access.
    pub async fn load_file(path: impl AsRef<Path>) -> Result<Self, VaultError> {
        let path = path.as_ref();
        let metadata = tokio::fs::metadata(path)
            .await
            .map_err(|err| VaultError::io(path, err))?;
        check_private_mode(path, &metadata)?;
        let contents = Zeroizing::new(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|err| VaultError::io(path, err))?,
        );
        Self::from_base64(&contents).map_err(|err| match err {
            VaultError::InvalidMasterKey(reason) => {
                VaultError::InvalidMasterKey(format!("{}: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// Loads each key file, as the earlier keys of a vault during a key
    /// rotation ([`crate::Vault::with_previous`]); the first that fails is the
    /// error, naming its file.
    pub async fn load_previous(
        paths: &[PathBuf],
    ) -> Result<Vec<std::sync::Arc<dyn KeyWrapper>>, VaultError> {
        let mut keys: Vec<std::sync::Arc<dyn KeyWrapper>> = Vec::with_capacity(paths.len());
        for path in paths {
            keys.push(std::sync::Arc::new(Self::load_file(path).await?));
        }
        Ok(keys)
    }

    /// Loads the key file, or creates it (mode 0600, atomically, never
    /// overwriting) when it does not exist; the flag says whether it was created.
    pub async fn load_or_generate(path: impl AsRef<Path>) -> Result<(Self, bool), VaultError> {
        let path = path.as_ref();
        match tokio::fs::metadata(path).await {
            Ok(_) => return Ok((Self::load_file(path).await?, false)),
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(VaultError::io(path, err)),
        }
        let key = Self::generate()?;
        let encoded = Zeroizing::new(format!("{}\n", STANDARD.encode(key.key.as_slice())));
        let temp = temp_path(path)?;
        if let Err(err) = write_private_file(&temp, encoded.as_bytes()).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(err);
        }
        // a hard link fails if the target exists, so a concurrent creator wins
        // cleanly instead of being overwritten
        let linked = tokio::fs::hard_link(&temp, path).await;
        let _ = tokio::fs::remove_file(&temp).await;
        match linked {
            Ok(()) => Ok((key, true)),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                Ok((Self::load_file(path).await?, false))
            }
            Err(err) => Err(VaultError::io(path, err)),
        }
    }
}

fn temp_path(path: &Path) -> Result<PathBuf, VaultError> {
    let file_name = path.file_name().ok_or_else(|| {
        VaultError::io(
            path,
            std::io::Error::new(ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix)
        .map_err(|_| VaultError::Crypto("random number generator failed".to_owned()))?;
    let name = format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        hex::encode(suffix)
    );
    Ok(path.with_file_name(name))
}

async fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), VaultError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .await
        .map_err(|err| VaultError::io(path, err))?;
    file.write_all(contents)
        .await
        .map_err(|err| VaultError::io(path, err))?;
    file.sync_all()
        .await
        .map_err(|err| VaultError::io(path, err))?;
    Ok(())
}

#[cfg(unix)]
fn check_private_mode(path: &Path, metadata: &std::fs::Metadata) -> Result<(), VaultError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(VaultError::io(
            path,
            std::io::Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "mode {mode:04o} lets group or others access the master key; run chmod 600 {}",
                    path.display()
                ),
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path, _metadata: &std::fs::Metadata) -> Result<(), VaultError> {
    Ok(())
}

impl fmt::Debug for LocalMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMasterKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl KeyWrapper for LocalMasterKey {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), VaultError> {
        let data_key = DataKey::generate()?;
        let wrapped = self.wrap_data_key(&data_key, ctx).await?;
        Ok((data_key, wrapped))
    }

    async fn wrap_data_key(
        &self,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<WrappedKey, VaultError> {
        let ciphertext = aead::seal(&self.key, &ctx.canonical_bytes(), key.bytes())?;
        Ok(WrappedKey {
            key_id: self.key_id.clone(),
            ciphertext,
        })
    }

    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        ctx: &EncryptionContext,
    ) -> Result<DataKey, VaultError> {
        if wrapped.key_id != self.key_id {
            return Err(VaultError::WrongKey {
                blob_key_id: wrapped.key_id.clone(),
                vault_key_id: self.key_id.clone(),
            });
        }
        let plaintext = aead::open(&self.key, &ctx.canonical_bytes(), &wrapped.ciphertext)?;
        if plaintext.len() != DATA_KEY_LEN {
            return Err(VaultError::Format(
                "wrapped data key has the wrong length".to_owned(),
            ));
        }
        DataKey::from_slice(&plaintext)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_prefix_of_sha256() {
        let key = LocalMasterKey::from_base64(&STANDARD.encode([1u8; 32])).unwrap();
        let expected = hex::encode(Sha256::digest([1u8; 32]));
        assert_eq!(key.key_id(), format!("local:{}", &expected[..16]));
        assert!(!format!("{key:?}").contains(&STANDARD.encode([1u8; 32])));
    }

    #[test]
    fn from_base64_rejects_wrong_lengths_and_garbage_without_echoing() {
        let short = STANDARD.encode([9u8; 31]);
        let err = LocalMasterKey::from_base64(&short).unwrap_err();
        assert!(matches!(err, VaultError::InvalidMasterKey(_)));
        assert!(err.to_string().contains("got 31"));
        assert!(!err.to_string().contains(&short));
        assert!(LocalMasterKey::from_base64(&STANDARD.encode([9u8; 33])).is_err());
        let garbage = "not base64 at all!";
        let err = LocalMasterKey::from_base64(garbage).unwrap_err();
        assert!(!err.to_string().contains(garbage));
    }
}
