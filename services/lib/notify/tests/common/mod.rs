//! What the email and webhook tests share: a notice and a throwaway CA.

use certfleet_notify::{Notice, NoticeKind};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
};

// 2026-12-14 10:00:00 UTC
pub const NOT_AFTER: i64 = 1_797_242_400;

pub fn expiring_notice(event_id: &str) -> Notice {
    Notice {
        event_id: event_id.to_owned(),
        kind: NoticeKind::Expiring,
        organization: "acme".to_owned(),
        certificate_id: "cert-0001".to_owned(),
        names: vec!["example.com".to_owned(), "www.example.com".to_owned()],
        serial: "04ab11".to_owned(),
        not_after: Some(NOT_AFTER),
        reason: "7 days left".to_owned(),
        error: String::new(),
        time: (NOT_AFTER - 7 * 86_400 - 60) * 1000,
    }
}

pub fn failed_notice(event_id: &str) -> Notice {
    Notice {
        kind: NoticeKind::Failed,
        reason: "will retry".to_owned(),
        error: "dns-01 challenge failed: NXDOMAIN".to_owned(),
        ..expiring_notice(event_id)
    }
}

/// A CA (PEM) and a certificate and key for `127.0.0.1` and `localhost`
/// signed by it.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn test_pki() -> TestPki {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("ca key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "certfleet notify test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server parameters");
    let certificate = params.signed_by(&key, &issuer).expect("server certificate");
    TestPki {
        ca_pem: ca.pem(),
        cert_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    }
}
