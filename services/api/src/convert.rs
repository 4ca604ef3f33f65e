//! Conversions between store rows, core types and proto messages. Rows keep
//! Unix milliseconds; the proto messages carry Unix seconds (0 when unset).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certfleet_core::{
    CertificateStatus, ChallengeType, InputError, KeyType, RevocationReason, Role, validate_slug,
};
use certfleet_proto::v1 as pb;
use certfleet_store::{Certificate, CertificateVersion, PageCursor};

/// The caller's IP address as recorded in the audit log; `None` when the
/// transport gives none (in-process tests). The port is left out: it changes
/// with every connection and says nothing about who called.
pub fn remote_ip<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .remote_addr()
        .map(|address| address.ip().to_string())
}

/// Unix milliseconds to Unix seconds.
pub fn seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

pub fn optional_seconds(ms: Option<i64>) -> i64 {
    ms.map_or(0, seconds)
}

pub fn key_type_to_proto(key_type: KeyType) -> pb::KeyType {
    match key_type {
        KeyType::EcdsaP256 => pb::KeyType::EcdsaP256,
        KeyType::EcdsaP384 => pb::KeyType::EcdsaP384,
        KeyType::Rsa2048 => pb::KeyType::Rsa2048,
        KeyType::Rsa3072 => pb::KeyType::Rsa3072,
        KeyType::Rsa4096 => pb::KeyType::Rsa4096,
    }
}

/// The requested key type; UNSPECIFIED is ECDSA P-256.
pub fn key_type_from_proto(field: &str, value: i32) -> Result<KeyType, InputError> {
    match pb::KeyType::try_from(value) {
        Ok(pb::KeyType::Unspecified | pb::KeyType::EcdsaP256) => Ok(KeyType::EcdsaP256),
        Ok(pb::KeyType::EcdsaP384) => Ok(KeyType::EcdsaP384),
        Ok(pb::KeyType::Rsa2048) => Ok(KeyType::Rsa2048),
        Ok(pb::KeyType::Rsa3072) => Ok(KeyType::Rsa3072),
        Ok(pb::KeyType::Rsa4096) => Ok(KeyType::Rsa4096),
        Err(_) => Err(unknown_enum(field, value, "key type")),
    }
}

pub fn challenge_type_to_proto(challenge: ChallengeType) -> pb::ChallengeType {
    match challenge {
        ChallengeType::Http01 => pb::ChallengeType::Http01,
        ChallengeType::Dns01 => pb::ChallengeType::Dns01,
    }
}

/// The requested challenge type; UNSPECIFIED is HTTP-01.
pub fn challenge_type_from_proto(field: &str, value: i32) -> Result<ChallengeType, InputError> {
    match pb::ChallengeType::try_from(value) {
        Ok(pb::ChallengeType::Unspecified | pb::ChallengeType::Http01) => Ok(ChallengeType::Http01),
        Ok(pb::ChallengeType::Dns01) => Ok(ChallengeType::Dns01),
        Err(_) => Err(unknown_enum(field, value, "challenge type")),
    }
}

pub fn status_to_proto(status: CertificateStatus) -> pb::CertificateStatus {
    match status {
        CertificateStatus::Pending => pb::CertificateStatus::Pending,
        CertificateStatus::Issuing => pb::CertificateStatus::Issuing,
        CertificateStatus::Valid => pb::CertificateStatus::Valid,
        CertificateStatus::Renewing => pb::CertificateStatus::Renewing,
        CertificateStatus::Expired => pb::CertificateStatus::Expired,
        CertificateStatus::Revoked => pb::CertificateStatus::Revoked,
        CertificateStatus::Failed => pb::CertificateStatus::Failed,
    }
}

/// A status filter; UNSPECIFIED is no filter.
pub fn status_from_proto(field: &str, value: i32) -> Result<Option<CertificateStatus>, InputError> {
    match pb::CertificateStatus::try_from(value) {
        Ok(pb::CertificateStatus::Unspecified) => Ok(None),
        Ok(pb::CertificateStatus::Pending) => Ok(Some(CertificateStatus::Pending)),
        Ok(pb::CertificateStatus::Issuing) => Ok(Some(CertificateStatus::Issuing)),
        Ok(pb::CertificateStatus::Valid) => Ok(Some(CertificateStatus::Valid)),
        Ok(pb::CertificateStatus::Renewing) => Ok(Some(CertificateStatus::Renewing)),
        Ok(pb::CertificateStatus::Expired) => Ok(Some(CertificateStatus::Expired)),
        Ok(pb::CertificateStatus::Revoked) => Ok(Some(CertificateStatus::Revoked)),
        Ok(pb::CertificateStatus::Failed) => Ok(Some(CertificateStatus::Failed)),
        Err(_) => Err(unknown_enum(field, value, "certificate status")),
    }
}

pub fn reason_to_proto(reason: RevocationReason) -> pb::RevocationReason {
    match reason {
        RevocationReason::Unspecified => pb::RevocationReason::Unspecified,
        RevocationReason::KeyCompromise => pb::RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged => pb::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => pb::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => pb::RevocationReason::CessationOfOperation,
    }
}

pub fn reason_from_proto(field: &str, value: i32) -> Result<RevocationReason, InputError> {
    match pb::RevocationReason::try_from(value) {
        Ok(pb::RevocationReason::Unspecified) => Ok(RevocationReason::Unspecified),
        Ok(pb::RevocationReason::KeyCompromise) => Ok(RevocationReason::KeyCompromise),
        Ok(pb::RevocationReason::AffiliationChanged) => Ok(RevocationReason::AffiliationChanged),
        Ok(pb::RevocationReason::Superseded) => Ok(RevocationReason::Superseded),
        Ok(pb::RevocationReason::CessationOfOperation) => {
            Ok(RevocationReason::CessationOfOperation)
        }
        Err(_) => Err(unknown_enum(field, value, "revocation reason")),
    }
}

pub fn role_to_proto(role: Role) -> pb::Role {
    match role {
        Role::Read => pb::Role::Read,
        Role::Write => pb::Role::Write,
        Role::Bundle => pb::Role::Bundle,
        Role::Agent => pb::Role::Agent,
        // Admin tokens are made at start-up, never through the API.
        Role::Admin => pb::Role::Unspecified,
    }
}

/// A role a token can be created with; UNSPECIFIED is refused.
pub fn role_from_proto(field: &str, value: i32) -> Result<Role, InputError> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Read) => Ok(Role::Read),
        Ok(pb::Role::Write) => Ok(Role::Write),
        Ok(pb::Role::Bundle) => Ok(Role::Bundle),
        Ok(pb::Role::Agent) => Ok(Role::Agent),
        Ok(pb::Role::Unspecified) => Err(InputError::new(
            field,
            "ROLE_UNSPECIFIED",
            "is required; accepted values: read, write, bundle, agent",
        )),
        Err(_) => Err(unknown_enum(field, value, "role")),
    }
}

fn unknown_enum(field: &str, value: i32, what: &str) -> InputError {
    InputError::new(field, value.to_string(), format!("is not a valid {what}"))
}

/// A stored row as the API shows it; `current` is its current version, if loaded.
pub fn certificate_to_proto(
    row: &Certificate,
    current: Option<&CertificateVersion>,
) -> pb::Certificate {
    let key_type = KeyType::parse("key_type", &row.key_type)
        .map_or(pb::KeyType::Unspecified, key_type_to_proto);
    let challenge_type = ChallengeType::parse("challenge_type", &row.challenge_type)
        .map_or(pb::ChallengeType::Unspecified, challenge_type_to_proto);
    let status = CertificateStatus::parse("status", &row.status)
        .map_or(pb::CertificateStatus::Unspecified, status_to_proto);
    pb::Certificate {
        id: row.id.clone(),
        organization_id: row.organization_id.clone(),
        primary_name: row.primary_name.clone(),
        names: row.name_list(),
        key_type: key_type.into(),
        challenge_type: challenge_type.into(),
        status: status.into(),
        auto_renew: row.auto_renew,
        renew_before_expiry_seconds: optional_seconds(row.renew_before_ms),
        last_error: row.last_error.clone().unwrap_or_default(),
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        next_attempt_at: optional_seconds(row.next_attempt_at),
        renew_at: optional_seconds(row.renew_at),
        current: current.map(version_to_proto),
        created_at: seconds(row.created_at),
        updated_at: seconds(row.updated_at),
        dns_provider_id: row.dns_provider_id.clone().unwrap_or_default(),
        renew_reason: row.renew_reason.clone().unwrap_or_default(),
        waiting_reason: row.waiting_reason.clone().unwrap_or_default(),
        profile: row.profile.clone().unwrap_or_default(),
        installations: Vec::new(),
    }
}

pub fn version_to_proto(version: &CertificateVersion) -> pb::CertificateVersion {
    let revocation_reason = version
        .revocation_reason
        .as_deref()
        .and_then(|reason| RevocationReason::parse("revocation_reason", reason).ok())
        .map_or(pb::RevocationReason::Unspecified, reason_to_proto);
    pb::CertificateVersion {
        id: version.id.clone(),
        version: u32::try_from(version.version).unwrap_or(0),
        serial: version.serial.clone(),
        fingerprint_sha256: version.fingerprint_sha256.clone(),
        not_before: seconds(version.not_before),
        not_after: seconds(version.not_after),
        order_url: version.order_url.clone(),
        revoked_at: optional_seconds(version.revoked_at),
        revocation_reason: revocation_reason.into(),
        issued_at: seconds(version.created_at),
        backup_location: version.backup_location.clone().unwrap_or_default(),
        backup_at: optional_seconds(version.backup_at),
        backup_error: version.backup_error.clone().unwrap_or_default(),
        backup_attempts: u32::try_from(version.backup_attempts).unwrap_or(0),
        backup_next_at: optional_seconds(version.backup_next_at),
        issuer: version.issuer.clone().unwrap_or_default(),
        ari_window_start: optional_seconds(version.ari_start),
        ari_window_end: optional_seconds(version.ari_end),
    }
}

/// The opaque page token after `cursor`: base64url of `created_at:id`.
pub fn encode_page_token(cursor: &PageCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", cursor.created_at, cursor.id))
}

/// Reads a page token made by [`encode_page_token`]; empty means the first page.
pub fn decode_page_token(field: &str, token: &str) -> Result<Option<PageCursor>, InputError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || InputError::new(field, token, "is not a valid page token");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (created_at, id) = text.split_once(':').ok_or_else(invalid)?;
    let created_at = created_at.parse::<i64>().map_err(|_| invalid())?;
    if id.is_empty() {
        return Err(invalid());
    }
    Ok(Some(PageCursor {
        created_at,
        id: id.to_owned(),
    }))
}

/// Names of an organization's resources (DNS providers, notification
/// channels) follow the organization slug rules, and must not look like an
/// id: calls take either, so a name must never shadow an id.
pub(crate) fn check_name(name: &str) -> Result<(), InputError> {
    validate_slug("name", name)?;
    if looks_like_uuid(name) {
        return Err(InputError::new(
            "name",
            name,
            "looks like an id; choose a name that is not a UUID",
        ));
    }
    Ok(())
}

fn looks_like_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(index, c)| match index {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        let cursor = PageCursor {
            created_at: 1_700_000_000_123,
            id: "0190-abc".to_owned(),
        };
        let token = encode_page_token(&cursor);
        assert_eq!(
            decode_page_token("page_token", &token).unwrap(),
            Some(cursor)
        );
        assert_eq!(decode_page_token("page_token", "").unwrap(), None);
        for bad in ["!!!", "bm9jb2xvbg", "eDpp", "MTI6"] {
            let error = decode_page_token("page_token", bad).unwrap_err();
            assert_eq!(error.field, "page_token", "{bad}");
        }
    }

    #[test]
    fn enum_defaults() {
        assert_eq!(key_type_from_proto("k", 0).unwrap(), KeyType::EcdsaP256);
        assert_eq!(
            challenge_type_from_proto("c", 0).unwrap(),
            ChallengeType::Http01
        );
        assert_eq!(status_from_proto("s", 0).unwrap(), None);
        assert!(role_from_proto("role", 0).is_err());
        assert!(key_type_from_proto("key_type", 99).is_err());
        assert!(reason_from_proto("reason", 2).is_err());
    }

    #[test]
    fn enums_round_trip() {
        for key_type in KeyType::ALL {
            let wire = key_type_to_proto(*key_type) as i32;
            assert_eq!(key_type_from_proto("k", wire).unwrap(), *key_type);
        }
        for status in CertificateStatus::ALL {
            let wire = status_to_proto(*status) as i32;
            assert_eq!(status_from_proto("s", wire).unwrap(), Some(*status));
        }
        for reason in RevocationReason::ALL {
            let wire = reason_to_proto(*reason) as i32;
            assert_eq!(reason_from_proto("r", wire).unwrap(), *reason);
            assert_eq!(i32::from(reason.code()), wire);
        }
        for role in [Role::Read, Role::Write, Role::Bundle, Role::Agent] {
            let wire = role_to_proto(role) as i32;
            assert_eq!(role_from_proto("role", wire).unwrap(), role);
        }
    }

    #[test]
    fn milliseconds_become_seconds() {
        assert_eq!(seconds(1_999), 1);
        assert_eq!(optional_seconds(None), 0);
        assert_eq!(optional_seconds(Some(5_000)), 5);
    }
}
