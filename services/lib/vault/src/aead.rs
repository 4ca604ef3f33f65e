//! AES-256-GCM with a random 96-bit nonce prepended to the ciphertext.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::VaultError;

pub(crate) const TAG_LEN: usize = 16;

fn key(bytes: &[u8; 32]) -> Result<LessSafeKey, VaultError> {
    let unbound = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| VaultError::Crypto("cannot build an AES-256-GCM key".to_owned()))?;
    Ok(LessSafeKey::new(unbound))
}

/// Returns `nonce || ciphertext || tag`.
pub(crate) fn seal(
    key_bytes: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let key = key(key_bytes)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| VaultError::Crypto("random number generator failed".to_owned()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    let mut in_out = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut in_out,
    )
    .map_err(|_| VaultError::Crypto("encryption failed".to_owned()))?;
    out.extend_from_slice(&in_out);
    Ok(out)
}

/// Opens what [`seal`] produced; any mismatch of key, AAD or bytes is `Decrypt`.
pub(crate) fn open(
    key_bytes: &[u8; 32],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(VaultError::Format("ciphertext too short".to_owned()));
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| VaultError::Format("bad nonce".to_owned()))?;
    let key = key(key_bytes)?;
    let mut in_out = Zeroizing::new(ciphertext.to_vec());
    let plaintext_len = key
        .open_in_place(nonce, Aad::from(aad), in_out.as_mut_slice())
        .map_err(|_| VaultError::Decrypt)?
        .len();
    in_out.truncate(plaintext_len);
    Ok(in_out)
}
