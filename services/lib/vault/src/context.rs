//! What a sealed secret belongs to; bound into every encryption as AAD.

use std::collections::BTreeMap;

const PURPOSE_CERTIFICATE_KEY: &str = "certificate-key";
const PURPOSE_ACME_ACCOUNT: &str = "acme-account";
const PURPOSE_DNS_PROVIDER: &str = "dns-provider";
const PURPOSE_EAB_HMAC: &str = "eab-hmac";
const PURPOSE_NOTIFICATION_CHANNEL: &str = "notification-channel";
const CANONICAL_TAG: &[u8] = b"certfleet-ctx-v1";

/// The owner and use of a secret. Opening requires the same context that sealed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptionContext {
    pub organization_id: String,
    pub purpose: String,
    pub resource_id: String,
    /// The certificate version a private key belongs to; `None` for other
    /// secrets and for keys sealed before versions were bound.
    pub version: Option<i32>,
}

impl EncryptionContext {
    pub fn new(
        organization_id: impl Into<String>,
        purpose: impl Into<String>,
        resource_id: impl Into<String>,
    ) -> Self {
        Self {
            organization_id: organization_id.into(),
            purpose: purpose.into(),
            resource_id: resource_id.into(),
            version: None,
        }
    }

    /// The context of a certificate version's private key.
    pub fn private_key(
        organization_id: impl Into<String>,
        certificate_id: impl Into<String>,
    ) -> Self {
        Self::new(organization_id, PURPOSE_CERTIFICATE_KEY, certificate_id)
    }

    /// The context of the private key of a certificate's version `version`
    /// (the number, 1 for the first issuance).
    pub fn private_key_version(
        organization_id: impl Into<String>,
        certificate_id: impl Into<String>,
        version: i32,
    ) -> Self {
        Self {
            version: Some(version),
            ..Self::private_key(organization_id, certificate_id)
        }
    }

    /// This context without the version: the one keys were sealed with
    /// before versions were bound.
    pub fn without_version(&self) -> Self {
        Self {
            version: None,
            ..self.clone()
        }
    }

    /// The context of an organization's ACME account credentials at one CA.
    pub fn acme_account(
        organization_id: impl Into<String>,
        directory_url: impl Into<String>,
    ) -> Self {
        Self::new(organization_id, PURPOSE_ACME_ACCOUNT, directory_url)
    }

    /// The context of a DNS provider's secret settings.
    pub fn dns_provider(
        organization_id: impl Into<String>,
        provider_id: impl Into<String>,
    ) -> Self {
        Self::new(organization_id, PURPOSE_DNS_PROVIDER, provider_id)
    }

    /// The context of a notification channel's secret settings (SMTP
    /// password, webhook signing secret).
    pub fn notification_channel(
        organization_id: impl Into<String>,
        channel_id: impl Into<String>,
    ) -> Self {
        Self::new(organization_id, PURPOSE_NOTIFICATION_CHANNEL, channel_id)
    }

    /// The context of an organization's External Account Binding HMAC key
    /// at one CA.
    pub fn eab(organization_id: impl Into<String>, directory_url: impl Into<String>) -> Self {
        Self::new(organization_id, PURPOSE_EAB_HMAC, directory_url)
    }

    /// Unambiguous byte form used as AES-GCM associated data: a version tag,
    /// then each field as a big-endian u32 length and its bytes (the
    /// certificate version, when set, as a fourth field in decimal), so no two
    /// different contexts share an encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let version = self.version.map(|version| version.to_string());
        let mut fields = vec![
            self.organization_id.as_bytes(),
            self.purpose.as_bytes(),
            self.resource_id.as_bytes(),
        ];
        if let Some(version) = &version {
            fields.push(version.as_bytes());
        }
        let len = CANONICAL_TAG.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(CANONICAL_TAG);
        for field in fields {
            let field_len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&field_len.to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Key/value form for a KMS encryption context.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::from([
            ("organization_id".to_owned(), self.organization_id.clone()),
            ("purpose".to_owned(), self.purpose.clone()),
            ("resource_id".to_owned(), self.resource_id.clone()),
        ]);
        if let Some(version) = self.version {
            map.insert("version".to_owned(), version.to_string());
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_purpose() {
        let key = EncryptionContext::private_key("org1", "cert1");
        assert_eq!(key.purpose, "certificate-key");
        assert_eq!(key.resource_id, "cert1");
        let account = EncryptionContext::acme_account("org1", "https://ca/dir");
        assert_eq!(account.purpose, "acme-account");
        assert_eq!(account.to_map()["resource_id"], "https://ca/dir");
        assert_eq!(account.to_map()["organization_id"], "org1");
        let eab = EncryptionContext::eab("org1", "https://ca/dir");
        assert_eq!(eab.purpose, "eab-hmac");
        assert_eq!(eab.resource_id, "https://ca/dir");
        assert_ne!(eab.canonical_bytes(), account.canonical_bytes());
    }

    #[test]
    fn the_version_is_a_field_of_its_own() {
        let legacy = EncryptionContext::private_key("org1", "cert1");
        let first = EncryptionContext::private_key_version("org1", "cert1", 1);
        let second = EncryptionContext::private_key_version("org1", "cert1", 2);
        assert_ne!(first.canonical_bytes(), second.canonical_bytes());
        assert_ne!(first.canonical_bytes(), legacy.canonical_bytes());
        assert_eq!(first.without_version(), legacy);
        assert_eq!(first.to_map()["version"], "1");
        assert!(!legacy.to_map().contains_key("version"));
        // A resource id ending in a digit cannot pass for a version.
        let shifted = EncryptionContext::private_key("org1", "cert11");
        assert_ne!(shifted.canonical_bytes(), first.canonical_bytes());
    }

    #[test]
    fn shifting_bytes_between_fields_changes_the_encoding() {
        let a = EncryptionContext::new("ab", "c", "d");
        let b = EncryptionContext::new("a", "bc", "d");
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        assert_eq!(a.canonical_bytes(), a.clone().canonical_bytes());
    }
}
