//! External Account Binding credentials of an organization at a CA: set and
//! deleted by platform admins. The HMAC key is sealed by the vault at once and
//! never logged, audited or returned.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use certfleet_core::{InputError, validate_directory_url, validate_slug};
use certfleet_proto::v1 as pb;
use certfleet_store::{AuditEntry, EabCredential};
use certfleet_vault::EncryptionContext;
use zeroize::Zeroizing;

use super::{Admin, OrganizationApi};
use crate::ApiError;
use crate::convert::seconds;

const MAX_KEY_ID_CHARS: usize = 256;
/// RFC 8555 asks for an HMAC key of the CA's choosing; anything shorter than
/// 128 bits is more likely a truncated copy than a key.
const MIN_HMAC_BYTES: usize = 16;
/// What an error about the HMAC key shows instead of the key.
const SECRET_SHOWN: &str = "(secret, not shown)";

/// base64url as CAs hand it out, with or without `=` padding.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl OrganizationApi {
    pub(super) async fn set_eab(
        &self,
        actor: &Admin,
        mut request: pb::SetExternalAccountBindingRequest,
    ) -> Result<pb::ExternalAccountBinding, ApiError> {
        let hmac_key = Zeroizing::new(std::mem::take(&mut request.hmac_key));
        validate_slug("organization", &request.organization)?;
        validate_directory_url("directory_url", &request.directory_url)?;
        check_key_id(&request.key_id)?;
        let hmac = decode_hmac_key(&hmac_key)?;
        drop(hmac_key);
        let organization = self.organization(&request.organization).await?;
        let context = EncryptionContext::eab(&organization.id, &request.directory_url);
        let sealed = self
            .state
            .vault
            .seal(&context, &hmac)
            .await
            .map_err(|error| ApiError::vault("seal eab hmac key", error))?;
        drop(hmac);
        let now = self.state.clock.now_ms();
        let mut audit = AuditEntry::new(
            Some(&organization.id),
            &actor.token_id,
            "organization.eab_set",
            Some(&organization.id),
            now,
        )
        .from_remote(actor.remote_addr.as_deref());
        audit.details = format!(
            "directory {} key id {}",
            request.directory_url, request.key_id
        );
        let stored = self
            .state
            .store
            .set_eab_credential(
                &organization.id,
                &request.directory_url,
                &request.key_id,
                &sealed,
                now,
                audit,
            )
            .await
            .map_err(|error| ApiError::store("set external account binding", error))?;
        tracing::info!(
            organization_id = %organization.id,
            directory = %stored.directory_url,
            key_id = %stored.key_id,
            "external account binding set"
        );
        Ok(eab_to_proto(stored))
    }

    pub(super) async fn delete_eab(
        &self,
        actor: &Admin,
        request: pb::DeleteExternalAccountBindingRequest,
    ) -> Result<pb::DeleteExternalAccountBindingResponse, ApiError> {
        validate_slug("organization", &request.organization)?;
        validate_directory_url("directory_url", &request.directory_url)?;
        let organization = self.organization(&request.organization).await?;
        let now = self.state.clock.now_ms();
        let mut audit = AuditEntry::new(
            Some(&organization.id),
            &actor.token_id,
            "organization.eab_deleted",
            Some(&organization.id),
            now,
        )
        .from_remote(actor.remote_addr.as_deref());
        audit.details = format!("directory {}", request.directory_url);
        let deleted = self
            .state
            .store
            .delete_eab_credential(&organization.id, &request.directory_url, audit)
            .await
            .map_err(|error| ApiError::store("delete external account binding", error))?;
        if !deleted {
            return Err(ApiError::NotFound(format!(
                "organization {:?} has no external account binding for {:?}",
                organization.slug, request.directory_url
            )));
        }
        tracing::info!(
            organization_id = %organization.id,
            directory = %request.directory_url,
            "external account binding deleted"
        );
        Ok(pb::DeleteExternalAccountBindingResponse {})
    }
}

fn eab_to_proto(stored: EabCredential) -> pb::ExternalAccountBinding {
    pb::ExternalAccountBinding {
        organization_id: stored.organization_id,
        directory_url: stored.directory_url,
        key_id: stored.key_id,
        created_at: seconds(stored.created_at),
        updated_at: seconds(stored.updated_at),
    }
}

/// The key id as the CA gave it: printable ASCII, no spaces.
fn check_key_id(value: &str) -> Result<(), InputError> {
    if value.is_empty() {
        return Err(InputError::new("key_id", value, "is empty"));
    }
    if value.chars().count() > MAX_KEY_ID_CHARS {
        return Err(InputError::new(
            "key_id",
            value.chars().take(40).collect::<String>() + "…",
            format!("is longer than {MAX_KEY_ID_CHARS} characters"),
        ));
    }
    if !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(InputError::new(
            "key_id",
            value.escape_default().to_string(),
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// The raw HMAC key from its base64url form; errors never show the value.
fn decode_hmac_key(value: &str) -> Result<Zeroizing<Vec<u8>>, InputError> {
    let fail = |reason: String| Err(InputError::new("hmac_key", SECRET_SHOWN, reason));
    if value.is_empty() {
        return fail("is empty".to_owned());
    }
    let decoded = match BASE64URL_ANY_PADDING.decode(value) {
        Ok(decoded) => Zeroizing::new(decoded),
        Err(_) => {
            return fail(
                "is not valid base64url (A-Z a-z 0-9 - _, with or without = padding)".to_owned(),
            );
        }
    };
    if decoded.len() < MIN_HMAC_BYTES {
        return fail(format!(
            "decodes to {} bytes; an EAB HMAC key has at least {MIN_HMAC_BYTES}",
            decoded.len()
        ));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_urls() {
        assert!(
            validate_directory_url("directory_url", "https://acme.zerossl.com/v2/DV90").is_ok()
        );
        assert!(validate_directory_url("directory_url", "https://127.0.0.1:14000/dir").is_ok());
        assert!(validate_directory_url("directory_url", "").is_err());
        assert!(validate_directory_url("directory_url", "http://ca/dir").is_err());
        assert!(validate_directory_url("directory_url", "https:///dir").is_err());
        assert!(validate_directory_url("directory_url", "https://ca/dir x").is_err());
    }

    #[test]
    fn key_ids() {
        assert!(check_key_id("kid-1_AbC").is_ok());
        assert!(check_key_id("").is_err());
        assert!(check_key_id("a b").is_err());
        assert!(check_key_id("a\nb").is_err());
    }

    #[test]
    fn hmac_keys_with_or_without_padding() {
        let raw = [7u8; 32];
        let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let padded = base64::engine::general_purpose::URL_SAFE.encode(raw);
        assert_eq!(
            decode_hmac_key(&unpadded).map(|k| k.to_vec()),
            Ok(raw.to_vec())
        );
        assert_eq!(
            decode_hmac_key(&padded).map(|k| k.to_vec()),
            Ok(raw.to_vec())
        );
        let short = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 15]);
        let error = decode_hmac_key(&short).err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("15 bytes") && !e.contains(&short)));
        // Standard base64's '+' and '/' are not base64url.
        assert!(decode_hmac_key("ab+/ab+/ab+/ab+/ab+/ab+/").is_err());
    }
}
