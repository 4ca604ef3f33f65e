//! Envelope encryption of private keys and ACME credentials (DESIGN §8).
//!
//! Each secret is sealed under a fresh data key with AES-256-GCM; the data key
//! is wrapped by a [`KeyWrapper`] (a local master key, or an AWS KMS key) and
//! both are bound to an [`EncryptionContext`] naming the owning organization
//! and resource, so a blob copied to another row or tenant cannot be opened.

mod aead;
mod context;
mod error;
mod kms;
mod local;
mod seal;
mod wrapper;

pub use context::EncryptionContext;
pub use error::VaultError;
pub use kms::{AwsKms, AwsKmsConfig};
pub use local::LocalMasterKey;
pub use seal::Vault;
pub use wrapper::{DataKey, KeyWrapper, WrappedKey};
