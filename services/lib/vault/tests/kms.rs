//! The AWS KMS key wrapper against moto's server: sealing and opening, the
//! encryption context enforced by the key service, tampering, blobs of
//! another wrapper, and refusals in plain words.

#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::sync::Arc;

use certfleet_testkit::Moto;
use certfleet_vault::{AwsKms, AwsKmsConfig, EncryptionContext, LocalMasterKey, Vault, VaultError};
use zeroize::Zeroizing;

const SECRET: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn config(moto: &Moto, key_id: &str) -> AwsKmsConfig {
    AwsKmsConfig {
        key_id: key_id.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint_url: Some(moto.endpoint_url()),
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: Zeroizing::new(SECRET_ACCESS_KEY.to_owned()),
        session_token: None,
    }
}

fn kms_vault(moto: &Moto, key_id: &str) -> Vault {
    Vault::new(Arc::new(AwsKms::new(&config(moto, key_id)).unwrap()))
}

fn ctx() -> EncryptionContext {
    EncryptionContext::private_key("org-1", "cert-1")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn round_trip_records_the_key_arn() {
    let moto = Moto::start().await.unwrap();
    let key_id = moto.create_kms_key().await.unwrap();
    let vault = kms_vault(&moto, &key_id);
    assert_eq!(vault.key_id(), format!("aws-kms:{key_id}"));

    let blob = vault.seal(&ctx(), SECRET).await.unwrap();
    assert!(blob.starts_with(b"CFV1"));
    assert!(contains(&blob, b"aws-kms:arn:aws:kms:us-east-1:"));
    assert!(contains(&blob, format!(":key/{key_id}").as_bytes()));
    assert!(!contains(&blob, &SECRET[30..60]));
    assert_eq!(vault.open(&ctx(), &blob).await.unwrap().as_slice(), SECRET);

    // Two seals use two data keys.
    let again = vault.seal(&ctx(), SECRET).await.unwrap();
    assert_ne!(blob, again);
}

#[tokio::test]
async fn an_alias_seals_and_a_blob_opens_after_the_alias_moved() {
    let moto = Moto::start().await.unwrap();
    let first = moto.create_kms_key().await.unwrap();
    moto.create_kms_alias("alias/certfleet", &first)
        .await
        .unwrap();
    let vault = kms_vault(&moto, "alias/certfleet");
    assert_eq!(vault.key_id(), "aws-kms:alias/certfleet");
    let blob = vault.seal(&ctx(), SECRET).await.unwrap();
    assert!(contains(&blob, first.as_bytes()));

    // A vault configured with another key still opens it: the blob names the key.
    let second = moto.create_kms_key().await.unwrap();
    let other = kms_vault(&moto, &second);
    assert_eq!(other.open(&ctx(), &blob).await.unwrap().as_slice(), SECRET);
}

#[tokio::test]
async fn another_context_is_refused_by_the_key_service() {
    let moto = Moto::start().await.unwrap();
    let key_id = moto.create_kms_key().await.unwrap();
    let vault = kms_vault(&moto, &key_id);
    let blob = vault.seal(&ctx(), SECRET).await.unwrap();
    for wrong in [
        EncryptionContext::private_key("org-2", "cert-1"),
        EncryptionContext::private_key("org-1", "cert-2"),
        EncryptionContext::acme_account("org-1", "cert-1"),
    ] {
        let error = vault.open(&wrong, &blob).await.unwrap_err();
        assert!(
            matches!(error, VaultError::Refused(_)),
            "{wrong:?}: {error}"
        );
        assert!(!error.is_transient());
        assert!(
            error.to_string().contains(
                "the key service refused to decrypt: the encryption context does not match"
            ),
            "{error}"
        );
    }
}

#[tokio::test]
async fn tampered_blobs_are_refused() {
    let moto = Moto::start().await.unwrap();
    let key_id = moto.create_kms_key().await.unwrap();
    let vault = kms_vault(&moto, &key_id);
    let blob = vault.seal(&ctx(), SECRET).await.unwrap();

    // The last byte is the secret's tag: the data key opens, the secret does not.
    let mut tampered = blob.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let error = vault.open(&ctx(), &tampered).await.unwrap_err();
    assert!(matches!(error, VaultError::Decrypt), "{error}");

    // A byte of the wrapped key (just after its u32 length): KMS refuses it.
    let key_id_len = usize::from(u16::from_be_bytes([blob[4], blob[5]]));
    let wrapped_start = 4 + 2 + key_id_len + 4;
    for offset in [0, 20, 40] {
        let mut tampered = blob.clone();
        tampered[wrapped_start + offset] ^= 0x01;
        let error = vault.open(&ctx(), &tampered).await.unwrap_err();
        assert!(matches!(error, VaultError::Refused(_)), "{error}");
    }

    // Every byte, the key ARN's too: each flip is refused one way or another.
    for index in 0..blob.len() {
        let mut tampered = blob.clone();
        tampered[index] ^= 0x01;
        assert!(
            vault.open(&ctx(), &tampered).await.is_err(),
            "byte {index} flipped"
        );
    }
}

#[tokio::test]
async fn blobs_of_the_other_wrapper_name_the_key() {
    let moto = Moto::start().await.unwrap();
    let key_id = moto.create_kms_key().await.unwrap();
    let kms = kms_vault(&moto, &key_id);
    let local = Vault::new(Arc::new(LocalMasterKey::generate().unwrap()));

    let local_blob = local.seal(&ctx(), SECRET).await.unwrap();
    let error = kms.open(&ctx(), &local_blob).await.unwrap_err();
    assert!(matches!(error, VaultError::WrongKey { .. }), "{error}");
    assert!(error.to_string().contains(local.key_id()), "{error}");
    assert!(error.to_string().contains(kms.key_id()), "{error}");

    let kms_blob = kms.seal(&ctx(), SECRET).await.unwrap();
    let error = local.open(&ctx(), &kms_blob).await.unwrap_err();
    assert!(matches!(error, VaultError::WrongKey { .. }), "{error}");
    assert!(
        error.to_string().contains(&format!(
            "aws-kms:arn:aws:kms:us-east-1:123456789012:key/{key_id}"
        )),
        "{error}"
    );

    // Rotation between the two works both ways.
    let moved = local.rewrap(&ctx(), &local_blob, &kms).await.unwrap();
    assert_eq!(kms.open(&ctx(), &moved).await.unwrap().as_slice(), SECRET);
}

#[tokio::test]
async fn an_unknown_key_is_named() {
    let moto = Moto::start().await.unwrap();
    let vault = kms_vault(&moto, "alias/nobody-made-this");
    let error = vault.seal(&ctx(), SECRET).await.unwrap_err();
    assert!(matches!(error, VaultError::Refused(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("the key service does not know the key aws-kms:alias/nobody-made-this"),
        "{error}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_refused_in_plain_words() {
    // One unchecked call: creating the key.
    let moto = Moto::start_checking_credentials(1).await.unwrap();
    let key_id = moto.create_kms_key().await.unwrap();
    let vault = kms_vault(&moto, &key_id);
    let error = vault.seal(&ctx(), SECRET).await.unwrap_err();
    assert!(matches!(error, VaultError::Refused(_)), "{error}");
    assert!(!error.is_transient());
    let text = error.to_string();
    assert!(
        text.contains("the key service refused the credentials"),
        "{text}"
    );
    assert!(!text.contains(SECRET_ACCESS_KEY), "{text}");
}

#[tokio::test]
async fn an_unreachable_service_is_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = AwsKmsConfig {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        ..config_without_moto()
    };
    let vault = Vault::new(Arc::new(AwsKms::new(&config).unwrap()));
    let error = vault.seal(&ctx(), SECRET).await.unwrap_err();
    assert!(matches!(error, VaultError::Unavailable(_)), "{error}");
    assert!(error.is_transient());
    assert!(
        error.to_string().contains("cannot reach the key service"),
        "{error}"
    );
}

fn config_without_moto() -> AwsKmsConfig {
    AwsKmsConfig {
        key_id: "alias/certfleet".to_owned(),
        region: "us-east-1".to_owned(),
        endpoint_url: None,
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: Zeroizing::new(SECRET_ACCESS_KEY.to_owned()),
        session_token: None,
    }
}

#[tokio::test]
async fn rotation_from_the_local_key_to_kms_and_to_another_kms_key_then_the_old_key_is_gone() {
    let moto = Moto::start().await.unwrap();
    let local = Vault::new(Arc::new(LocalMasterKey::generate().unwrap()));
    let first = moto.create_kms_key().await.unwrap();
    let second = moto.create_kms_key().await.unwrap();
    let kms_first = kms_vault(&moto, &first);
    let kms_second = kms_vault(&moto, &second);

    let blob = local.seal(&ctx(), SECRET).await.unwrap();
    let under_first = local.rewrap(&ctx(), &blob, &kms_first).await.unwrap();
    assert!(contains(&under_first, first.as_bytes()));
    let under_second = kms_first
        .rewrap(&ctx(), &under_first, &kms_second)
        .await
        .unwrap();
    assert!(contains(&under_second, second.as_bytes()));
    assert!(!contains(&under_second, first.as_bytes()));

    // The rewrapped blob names only the second key, and KMS decrypts it under
    // that key alone (moto refuses a Decrypt whose KeyId is not the key the
    // ciphertext belongs to), so the first key is no longer needed. moto does
    // not enforce a disabled key's state, so disabling it would prove nothing.
    let named = Vault::blob_key_id(&under_second).unwrap();
    assert!(
        named.starts_with("aws-kms:arn:") && named.ends_with(&second),
        "{named}"
    );
    assert_eq!(
        kms_second
            .open(&ctx(), &under_second)
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
    // A rewrap refused by the key service leaves nothing half-done: it errs.
    let other = EncryptionContext::private_key("org-2", "cert-1");
    assert!(
        kms_second
            .rewrap(&other, &under_second, &local)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_key_service_binds_the_certificate_version() {
    let moto = Moto::start().await.unwrap();
    let key_id = moto.create_kms_key().await.unwrap();
    let vault = kms_vault(&moto, &key_id);
    let first = EncryptionContext::private_key_version("org-1", "cert-1", 1);
    let blob = vault.seal(&first, SECRET).await.unwrap();
    assert_eq!(vault.open(&first, &blob).await.unwrap().as_slice(), SECRET);
    let second = EncryptionContext::private_key_version("org-1", "cert-1", 2);
    let err = vault.open(&second, &blob).await.unwrap_err();
    assert!(matches!(err, VaultError::Refused(_)), "{err}");
}
