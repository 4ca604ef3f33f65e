//! The throwaway CA and `localhost`/`127.0.0.1` certificate Pebble serves its
//! HTTPS listeners with (the Debian package ships none).

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// PEM texts of the listener CA and of the listener certificate and key.
pub(crate) struct ListenerCertificates {
    pub(crate) ca_pem: String,
    pub(crate) certificate_pem: String,
    pub(crate) private_key_pem: String,
}

impl ListenerCertificates {
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .context("generating the listener ca key")?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = distinguished_name("certfleet testkit pebble listener CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_certificate = ca_params
            .self_signed(&ca_key)
            .context("signing the listener ca certificate")?;
        let issuer = Issuer::new(ca_params, ca_key);

        let listener_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .context("generating the listener key")?;
        let mut listener_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .context("building the listener certificate parameters")?;
        listener_params.distinguished_name = distinguished_name("localhost");
        listener_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        listener_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        listener_params.use_authority_key_identifier_extension = true;
        let listener_certificate = listener_params
            .signed_by(&listener_key, &issuer)
            .context("signing the listener certificate")?;

        Ok(Self {
            ca_pem: ca_certificate.pem(),
            certificate_pem: listener_certificate.pem(),
            private_key_pem: listener_key.serialize_pem(),
        })
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}
