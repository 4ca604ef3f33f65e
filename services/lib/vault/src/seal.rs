//! `Vault`: seals secrets into self-describing versioned blobs and opens them.
//!
//! Blob layout (all lengths big-endian):
//! `b"CFV1"`, u16 key id length, key id, u32 wrapped key length, wrapped key,
//! u32 sealed data length, `nonce || ciphertext || tag`.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::{EncryptionContext, KeyWrapper, VaultError, WrappedKey, aead};

const MAGIC: &[u8; 4] = b"CFV1";

/// Envelope encryption over a [`KeyWrapper`]: new blobs are wrapped by the
/// current key; blobs of earlier keys open while those keys are still given
/// (during a key rotation, until `certfleet vault rewrap` has moved them).
#[derive(Debug, Clone)]
pub struct Vault {
    wrapper: Arc<dyn KeyWrapper>,
    previous: Vec<Arc<dyn KeyWrapper>>,
}

impl Vault {
    pub fn new(wrapper: Arc<dyn KeyWrapper>) -> Self {
        Self {
            wrapper,
            previous: Vec::new(),
        }
    }

    /// Also opens blobs wrapped under these earlier keys; never seals with them.
    pub fn with_previous(mut self, previous: Vec<Arc<dyn KeyWrapper>>) -> Self {
        self.previous = previous;
        self
    }

    /// The id of the key that new blobs are wrapped under.
    pub fn key_id(&self) -> &str {
        self.wrapper.key_id()
    }

    /// The ids of the earlier keys this vault still opens.
    pub fn previous_key_ids(&self) -> Vec<&str> {
        self.previous.iter().map(|key| key.key_id()).collect()
    }

    /// The id of the key a blob's data key is wrapped under, read from its
    /// header without any decryption.
    pub fn blob_key_id(blob: &[u8]) -> Result<String, VaultError> {
        Ok(decode(blob)?.0.key_id)
    }

    /// Encrypts `plaintext` under a fresh data key bound to `ctx`.
    pub async fn seal(
        &self,
        ctx: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let (data_key, wrapped) = self.wrapper.generate_data_key(ctx).await?;
        let sealed = aead::seal(data_key.bytes(), &data_aad(ctx), plaintext)?;
        drop(data_key);
        encode(&wrapped, &sealed)
    }

    /// Decrypts a blob produced by [`Vault::seal`] with the same context. A
    /// private key's context names its certificate version; a key sealed
    /// before versions were bound opens under the context without it.
    pub async fn open(
        &self,
        ctx: &EncryptionContext,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        match self.open_exact(ctx, blob).await {
            Err(error) if refused(&error) && ctx.version.is_some() => {
                match self.open_exact(&ctx.without_version(), blob).await {
                    Ok(plaintext) => Ok(plaintext),
                    Err(_) => Err(error),
                }
            }
            other => other,
        }
    }

    async fn open_exact(
        &self,
        ctx: &EncryptionContext,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let (wrapped, sealed) = decode(blob)?;
        let data_key = self
            .wrapper_for(&wrapped.key_id)?
            .unwrap_data_key(&wrapped, ctx)
            .await?;
        aead::open(data_key.bytes(), &data_aad(ctx), sealed)
    }

    /// Wraps the blob's data key under `new`'s current key instead, leaving
    /// the sealed data as it is (key rotation). The blob is authenticated
    /// first, and the result is opened with `new` and compared before it is
    /// returned, so a rewrapped blob is never one that cannot be opened.
    pub async fn rewrap(
        &self,
        ctx: &EncryptionContext,
        blob: &[u8],
        new: &Vault,
    ) -> Result<Vec<u8>, VaultError> {
        match self.rewrap_exact(ctx, blob, new).await {
            Err(error) if refused(&error) && ctx.version.is_some() => {
                match self.rewrap_exact(&ctx.without_version(), blob, new).await {
                    Ok(rewrapped) => Ok(rewrapped),
                    Err(_) => Err(error),
                }
            }
            other => other,
        }
    }

    async fn rewrap_exact(
        &self,
        ctx: &EncryptionContext,
        blob: &[u8],
        new: &Vault,
    ) -> Result<Vec<u8>, VaultError> {
        let (wrapped, sealed) = decode(blob)?;
        let data_key = self
            .wrapper_for(&wrapped.key_id)?
            .unwrap_data_key(&wrapped, ctx)
            .await?;
        let plaintext = aead::open(data_key.bytes(), &data_aad(ctx), sealed)?;
        let rewrapped = new.wrapper.wrap_data_key(&data_key, ctx).await?;
        drop(data_key);
        let blob = encode(&rewrapped, sealed)?;
        let reopened = new.open(ctx, &blob).await?;
        if reopened.as_slice() != plaintext.as_slice() {
            return Err(VaultError::Crypto(
                "the rewrapped blob does not open to the same secret".to_owned(),
            ));
        }
        Ok(blob)
    }

    fn wrapper_for(&self, key_id: &str) -> Result<&Arc<dyn KeyWrapper>, VaultError> {
        std::iter::once(&self.wrapper)
            .chain(&self.previous)
            .find(|wrapper| wrapper.can_unwrap(key_id))
            .ok_or_else(|| VaultError::WrongKey {
                blob_key_id: key_id.to_owned(),
                vault_key_id: std::iter::once(self.wrapper.key_id())
                    .chain(self.previous.iter().map(|key| key.key_id()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// Whether opening failed because the key or context did not fit (the blob
/// may have been sealed under another context), not for lack of a key.
fn refused(error: &VaultError) -> bool {
    matches!(error, VaultError::Decrypt | VaultError::Refused(_))
}

fn data_aad(ctx: &EncryptionContext) -> Vec<u8> {
    let mut aad = MAGIC.to_vec();
    aad.extend_from_slice(&ctx.canonical_bytes());
    aad
}

fn encode(wrapped: &WrappedKey, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    let key_id_len = u16::try_from(wrapped.key_id.len())
        .map_err(|_| VaultError::Format("key id too long".to_owned()))?;
    let wrapped_len = u32::try_from(wrapped.ciphertext.len())
        .map_err(|_| VaultError::Format("wrapped key too long".to_owned()))?;
    let sealed_len = u32::try_from(sealed.len())
        .map_err(|_| VaultError::Format("plaintext too long".to_owned()))?;
    let mut blob = Vec::with_capacity(
        4 + 2 + wrapped.key_id.len() + 4 + wrapped.ciphertext.len() + 4 + sealed.len(),
    );
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&key_id_len.to_be_bytes());
    blob.extend_from_slice(wrapped.key_id.as_bytes());
    blob.extend_from_slice(&wrapped_len.to_be_bytes());
    blob.extend_from_slice(&wrapped.ciphertext);
    blob.extend_from_slice(&sealed_len.to_be_bytes());
    blob.extend_from_slice(sealed);
    Ok(blob)
}

/// Reads fields front to back, failing on truncation.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], VaultError> {
        if self.rest.len() < len {
            return Err(VaultError::Format(format!("truncated {what}")));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn take_u16(&mut self, what: &str) -> Result<usize, VaultError> {
        let bytes = self.take(2, what)?;
        Ok(usize::from(u16::from_be_bytes([bytes[0], bytes[1]])))
    }

    fn take_u32(&mut self, what: &str) -> Result<usize, VaultError> {
        let bytes = self.take(4, what)?;
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        usize::try_from(len).map_err(|_| VaultError::Format(format!("{what} too long")))
    }
}

fn decode(blob: &[u8]) -> Result<(WrappedKey, &[u8]), VaultError> {
    let mut reader = Reader { rest: blob };
    if reader.take(MAGIC.len(), "header")? != MAGIC {
        return Err(VaultError::Format("unknown blob version".to_owned()));
    }
    let key_id_len = reader.take_u16("key id length")?;
    let key_id = std::str::from_utf8(reader.take(key_id_len, "key id")?)
        .map_err(|_| VaultError::Format("key id is not utf-8".to_owned()))?
        .to_owned();
    let wrapped_len = reader.take_u32("wrapped key length")?;
    let ciphertext = reader.take(wrapped_len, "wrapped key")?.to_vec();
    let sealed_len = reader.take_u32("data length")?;
    let sealed = reader.take(sealed_len, "data")?;
    if !reader.rest.is_empty() {
        return Err(VaultError::Format("trailing bytes after data".to_owned()));
    }
    Ok((WrappedKey { key_id, ciphertext }, sealed))
}
