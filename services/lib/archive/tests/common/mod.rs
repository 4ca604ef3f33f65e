//! Sample copies shared by the provider tests.

use certfleet_archive::{CertificateMeta, OrganizationMeta, VersionCopy, VersionMeta};

/// A complete copy of version `serial` of `certificate_id` owned by
/// `organization_id`; the sealed key holds bytes that are not UTF-8.
pub fn sample(organization_id: &str, certificate_id: &str, serial: &str) -> VersionCopy {
    VersionCopy {
        organization: OrganizationMeta {
            id: organization_id.to_owned(),
            slug: format!("slug-{organization_id}"),
            name: "Example Org".to_owned(),
            contact_email: "ops@example.com".to_owned(),
            created_at: 1_700_000_000_000,
        },
        certificate: CertificateMeta {
            id: certificate_id.to_owned(),
            primary_name: "example.com".to_owned(),
            names: vec!["example.com".to_owned(), "*.example.com".to_owned()],
            wildcard: true,
            key_type: "ecdsa-p256".to_owned(),
            challenge_type: "dns-01".to_owned(),
            dns_provider_id: Some("dns-1".to_owned()),
            directory_url: "https://acme.example/directory".to_owned(),
            profile: None,
            auto_renew: true,
            renew_before_ms: None,
            created_at: 1_700_000_000_001,
        },
        version: VersionMeta {
            id: format!("ver-{serial}"),
            version: 2,
            serial: serial.to_owned(),
            fingerprint_sha256: "cd".repeat(32),
            not_before: 1_700_000_000_000,
            not_after: 1_707_776_000_000,
            key_type: "ecdsa-p256".to_owned(),
            order_url: "https://acme.example/order/7".to_owned(),
            created_at: 1_700_000_000_002,
            revoked_at: None,
            revocation_reason: None,
            issuer: None,
        },
        leaf_pem: format!("-----BEGIN CERTIFICATE-----\nLEAF{serial}\n-----END CERTIFICATE-----\n"),
        chain_pem: "-----BEGIN CERTIFICATE-----\nINTERMEDIATE\n-----END CERTIFICATE-----\n"
            .to_owned(),
        key_sealed: [
            b"CFV1".as_slice(),
            &[0, 0xfe, 0xff, 0x80],
            serial.as_bytes(),
        ]
        .concat(),
    }
}
