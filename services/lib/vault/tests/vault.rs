//! Integration tests of sealing, opening, key files and rotation.

#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certfleet_vault::{EncryptionContext, KeyWrapper, LocalMasterKey, Vault, VaultError};

const SECRET: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

fn vault() -> Vault {
    Vault::new(Arc::new(LocalMasterKey::generate().unwrap()))
}

fn ctx() -> EncryptionContext {
    EncryptionContext::private_key("org-1", "cert-1")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn round_trip() {
    let vault = vault();
    let blob = vault.seal(&ctx(), SECRET).await.unwrap();
    assert!(blob.starts_with(b"CFV1"));
    let opened = vault.open(&ctx(), &blob).await.unwrap();
    assert_eq!(opened.as_slice(), SECRET);
    let empty = vault.seal(&ctx(), b"").await.unwrap();
    assert!(vault.open(&ctx(), &empty).await.unwrap().is_empty());
}

#[tokio::test]
async fn other_organization_or_certificate_cannot_open() {
    let vault = vault();
    let blob = vault.seal(&ctx(), SECRET).await.unwrap();
    for wrong in [
        EncryptionContext::private_key("org-2", "cert-1"),
        EncryptionContext::private_key("org-1", "cert-2"),
        EncryptionContext::acme_account("org-1", "cert-1"),
    ] {
        let err = vault.open(&wrong, &blob).await.unwrap_err();
        assert!(matches!(err, VaultError::Decrypt), "{wrong:?}: {err}");
        assert_eq!(
            err.to_string(),
            "decryption failed: wrong key or wrong context"
        );
    }
}

#[tokio::test]
async fn any_tampered_byte_is_refused() {
    let vault = vault();
    let blob = vault.seal(&ctx(), SECRET).await.unwrap();
    for index in 0..blob.len() {
        let mut tampered = blob.clone();
        tampered[index] ^= 0x01;
        assert!(
            vault.open(&ctx(), &tampered).await.is_err(),
            "byte {index} flipped"
        );
    }
    assert!(vault.open(&ctx(), &blob[..blob.len() - 1]).await.is_err());
    let mut longer = blob.clone();
    longer.push(0);
    assert!(vault.open(&ctx(), &longer).await.is_err());
    assert!(matches!(
        vault.open(&ctx(), b"nonsense").await,
        Err(VaultError::Format(_))
    ));
}

#[tokio::test]
async fn two_seals_differ_and_hide_the_plaintext() {
    let vault = vault();
    let a = vault.seal(&ctx(), SECRET).await.unwrap();
    let b = vault.seal(&ctx(), SECRET).await.unwrap();
    assert_ne!(a, b);
    for blob in [&a, &b] {
        assert!(!contains(blob, SECRET));
        assert!(!contains(blob, b"PRIVATE KEY"));
    }
}

#[tokio::test]
async fn wrapped_data_keys_are_fresh() {
    let key = LocalMasterKey::generate().unwrap();
    let (_, first) = key.generate_data_key(&ctx()).await.unwrap();
    let (_, second) = key.generate_data_key(&ctx()).await.unwrap();
    assert_ne!(first.ciphertext, second.ciphertext);
    assert_eq!(first.key_id, key.key_id());
    assert!(key.unwrap_data_key(&first, &ctx()).await.is_ok());
    let other = EncryptionContext::private_key("org-2", "cert-1");
    assert!(matches!(
        key.unwrap_data_key(&first, &other).await,
        Err(VaultError::Decrypt)
    ));
}

#[tokio::test]
async fn load_or_generate_creates_a_private_file_then_loads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let (first, generated) = LocalMasterKey::load_or_generate(&path).await.unwrap();
    assert!(generated);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (second, generated) = LocalMasterKey::load_or_generate(&path).await.unwrap();
    assert!(!generated);
    assert_eq!(first.key_id(), second.key_id());
    let loaded = LocalMasterKey::load_file(&path).await.unwrap();
    assert_eq!(loaded.key_id(), first.key_id());

    let sealed = Vault::new(Arc::new(first))
        .seal(&ctx(), SECRET)
        .await
        .unwrap();
    let opened = Vault::new(Arc::new(second))
        .open(&ctx(), &sealed)
        .await
        .unwrap();
    assert_eq!(opened.as_slice(), SECRET);

    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary file left behind");
}

#[tokio::test]
async fn group_readable_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    std::fs::write(&path, STANDARD.encode([5u8; 32])).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = LocalMasterKey::load_file(&path).await.unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert!(LocalMasterKey::load_or_generate(&path).await.is_err());
    // the existing file is never replaced
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        STANDARD.encode([5u8; 32])
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(LocalMasterKey::load_file(&path).await.is_ok());
}

#[tokio::test]
async fn key_file_with_whitespace_loads_and_bad_contents_do_not_echo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    std::fs::write(&path, format!("  {}\n\n", STANDARD.encode([6u8; 32]))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(LocalMasterKey::load_file(&path).await.is_ok());

    let short = STANDARD.encode([6u8; 31]);
    std::fs::write(&path, &short).unwrap();
    let err = LocalMasterKey::load_file(&path).await.unwrap_err();
    assert!(matches!(err, VaultError::InvalidMasterKey(_)));
    assert!(!err.to_string().contains(&short));

    let missing = dir.path().join("missing.key");
    assert!(matches!(
        LocalMasterKey::load_file(&missing).await,
        Err(VaultError::Io { .. })
    ));
}

#[tokio::test]
async fn from_base64_rejects_31_bytes() {
    assert!(matches!(
        LocalMasterKey::from_base64(&STANDARD.encode([1u8; 31])),
        Err(VaultError::InvalidMasterKey(_))
    ));
    assert!(LocalMasterKey::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
}

#[tokio::test]
async fn rewrap_moves_blobs_to_the_new_key() {
    let old = vault();
    let new = vault();
    assert_ne!(old.key_id(), new.key_id());
    let blob = old.seal(&ctx(), SECRET).await.unwrap();
    let rewrapped = old.rewrap(&ctx(), &blob, &new).await.unwrap();
    assert_eq!(
        new.open(&ctx(), &rewrapped).await.unwrap().as_slice(),
        SECRET
    );
    assert!(matches!(
        old.open(&ctx(), &rewrapped).await,
        Err(VaultError::WrongKey { .. })
    ));
    assert!(new.open(&ctx(), &blob).await.is_err());
    let other = EncryptionContext::private_key("org-2", "cert-1");
    assert!(old.rewrap(&other, &blob, &new).await.is_err());
}

#[tokio::test]
async fn acme_account_context_round_trips() {
    let vault = vault();
    let ctx = EncryptionContext::acme_account("org-1", "https://acme.example/directory");
    let blob = vault.seal(&ctx, b"account credentials").await.unwrap();
    assert_eq!(
        vault.open(&ctx, &blob).await.unwrap().as_slice(),
        b"account credentials"
    );
}

#[tokio::test]
async fn a_vault_with_the_previous_key_opens_old_blobs_and_seals_under_the_new_one() {
    let old_key: Arc<dyn KeyWrapper> = Arc::new(LocalMasterKey::generate().unwrap());
    let old = Vault::new(old_key.clone());
    let new_key = LocalMasterKey::generate().unwrap();
    let rotating = Vault::new(Arc::new(new_key)).with_previous(vec![old_key.clone()]);
    assert_eq!(rotating.previous_key_ids(), vec![old_key.key_id()]);
    let old_blob = old.seal(&ctx(), SECRET).await.unwrap();
    assert_eq!(
        rotating.open(&ctx(), &old_blob).await.unwrap().as_slice(),
        SECRET
    );
    let new_blob = rotating.seal(&ctx(), SECRET).await.unwrap();
    assert_eq!(
        Vault::blob_key_id(&new_blob).unwrap(),
        rotating.key_id().to_owned()
    );
    assert_eq!(Vault::blob_key_id(&old_blob).unwrap(), old_key.key_id());
    // The previous key alone cannot open what the new key sealed.
    let err = old.open(&ctx(), &new_blob).await.unwrap_err();
    assert!(err.to_string().contains(rotating.key_id()), "{err}");
}

#[tokio::test]
async fn rewrap_changes_only_the_wrapped_data_key_and_refuses_a_tampered_blob() {
    let old = vault();
    let new = vault();
    let blob = old.seal(&ctx(), SECRET).await.unwrap();
    let rewrapped = old.rewrap(&ctx(), &blob, &new).await.unwrap();
    // The sealed data (the blob's tail) is unchanged; only the header moved.
    let tail = 12 + SECRET.len() + 16;
    assert_eq!(
        blob[blob.len() - tail..],
        rewrapped[rewrapped.len() - tail..]
    );
    let mut tampered = blob.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(
        old.rewrap(&ctx(), &tampered, &new).await,
        Err(VaultError::Decrypt)
    ));
}

/// The blob's wrapped data key (its header) and its sealed data (its tail).
fn split(blob: &[u8]) -> (&[u8], &[u8]) {
    let key_id_len = usize::from(u16::from_be_bytes([blob[4], blob[5]]));
    let wrapped_at = 6 + key_id_len;
    let wrapped_len = u32::from_be_bytes(blob[wrapped_at..wrapped_at + 4].try_into().unwrap());
    let sealed_at = wrapped_at + 4 + usize::try_from(wrapped_len).unwrap();
    blob.split_at(sealed_at)
}

#[tokio::test]
async fn a_data_key_swapped_between_two_certificates_opens_neither() {
    let vault = vault();
    let first = EncryptionContext::private_key("org-1", "cert-1");
    let second = EncryptionContext::private_key("org-1", "cert-2");
    let blob_first = vault.seal(&first, SECRET).await.unwrap();
    let blob_second = vault.seal(&second, b"the other key").await.unwrap();
    let (header_first, data_first) = split(&blob_first);
    let (header_second, data_second) = split(&blob_second);
    // The first certificate's data under the second's wrapped key, and back.
    let swapped_one = [header_second, data_first].concat();
    let swapped_two = [header_first, data_second].concat();
    for (blob, context) in [
        (&swapped_one, &first),
        (&swapped_one, &second),
        (&swapped_two, &first),
        (&swapped_two, &second),
    ] {
        let err = vault.open(context, blob).await.unwrap_err();
        assert!(matches!(err, VaultError::Decrypt), "{err}");
        assert_eq!(
            err.to_string(),
            "decryption failed: wrong key or wrong context"
        );
    }
    // Untouched, each opens under its own context.
    assert_eq!(
        vault.open(&first, &blob_first).await.unwrap().as_slice(),
        SECRET
    );
}

#[tokio::test]
async fn a_key_sealed_for_one_version_opens_for_no_other() {
    let vault = vault();
    let first = EncryptionContext::private_key_version("org-1", "cert-1", 1);
    let second = EncryptionContext::private_key_version("org-1", "cert-1", 2);
    let blob = vault.seal(&first, SECRET).await.unwrap();
    assert_eq!(vault.open(&first, &blob).await.unwrap().as_slice(), SECRET);
    for other in [&second, &first.without_version()] {
        assert!(matches!(
            vault.open(other, &blob).await,
            Err(VaultError::Decrypt)
        ));
    }
    // A key sealed before versions were bound still opens (and rewraps)
    // under its version's context; it keeps its own context.
    let legacy = vault.seal(&ctx(), SECRET).await.unwrap();
    let versioned = EncryptionContext::private_key_version("org-1", "cert-1", 7);
    assert_eq!(
        vault.open(&versioned, &legacy).await.unwrap().as_slice(),
        SECRET
    );
    let new = self::vault();
    let rewrapped = vault.rewrap(&versioned, &legacy, &new).await.unwrap();
    assert_eq!(
        new.open(&ctx(), &rewrapped).await.unwrap().as_slice(),
        SECRET
    );
}
