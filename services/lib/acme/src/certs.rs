//! Keys, CSRs and the certificates a CA returns: generated and read here, so
//! that validity, serial and names come from the certificate itself.

use certfleet_core::KeyType;
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use zeroize::Zeroizing;

use crate::AcmeError;

/// A fresh private key of the requested type.
pub fn generate_key(key_type: KeyType) -> Result<KeyPair, AcmeError> {
    let generated = match key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyType::Rsa3072 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        }
        KeyType::Rsa4096 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
    };
    generated.map_err(|error| AcmeError::Key(error.to_string()))
}

/// A DER CSR for `names` signed by `key`.
pub(crate) fn csr_der(names: &[String], key: &KeyPair) -> Result<Vec<u8>, AcmeError> {
    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|error| AcmeError::Key(error.to_string()))?;
    params.distinguished_name = DistinguishedName::new();
    let request = params
        .serialize_request(key)
        .map_err(|error| AcmeError::Key(error.to_string()))?;
    Ok(request.der().to_vec())
}

/// The PKCS#8 PEM of a key, wiped from memory when dropped.
pub(crate) fn key_pem(key: &KeyPair) -> Zeroizing<String> {
    Zeroizing::new(key.serialize_pem())
}

/// What certfleet keeps of an issued certificate.
#[derive(Debug, Clone)]
pub struct ParsedCertificate {
    pub leaf_pem: String,
    /// Intermediates, without the leaf.
    pub chain_pem: String,
    pub leaf_der: Vec<u8>,
    /// Upper-case hexadecimal, no separators.
    pub serial: String,
    pub fingerprint_sha256: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    pub names: Vec<String>,
    /// DER SubjectPublicKeyInfo of the leaf.
    pub public_key_der: Vec<u8>,
}

/// Splits a PEM chain (leaf first) and reads the leaf.
pub fn parse_chain(chain: &str) -> Result<ParsedCertificate, AcmeError> {
    let mut blocks = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes()) {
        let pem = pem.map_err(|error| AcmeError::BadCertificate(error.to_string()))?;
        if pem.label == "CERTIFICATE" {
            blocks.push(pem.contents);
        }
    }
    let Some(leaf_der) = blocks.first() else {
        return Err(AcmeError::BadCertificate(
            "no certificate in the chain".to_owned(),
        ));
    };
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|error| AcmeError::BadCertificate(error.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(extension)) = leaf.subject_alternative_name() {
        for name in &extension.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    let validity = leaf.validity();
    let parsed = ParsedCertificate {
        leaf_pem: to_pem(leaf_der),
        chain_pem: blocks[1..].iter().map(|der| to_pem(der)).collect(),
        leaf_der: leaf_der.clone(),
        serial: hex::encode_upper(leaf.raw_serial()),
        fingerprint_sha256: hex::encode(Sha256::digest(leaf_der)),
        not_before_ms: validity.not_before.timestamp().saturating_mul(1000),
        not_after_ms: validity.not_after.timestamp().saturating_mul(1000),
        names,
        public_key_der: leaf.public_key().raw.to_vec(),
    };
    Ok(parsed)
}

/// The RFC 9773 identifier of the leaf in `leaf_pem`: its authority key
/// identifier and serial number. `None` when it has no authority key
/// identifier or cannot be read.
pub(crate) fn ari_certificate_id(
    leaf_pem: &str,
) -> Option<instant_acme::CertificateIdentifier<'static>> {
    let pem = x509_parser::pem::Pem::iter_from_buffer(leaf_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, certificate) = X509Certificate::from_der(&pem.contents).ok()?;
    let key_identifier = certificate.extensions().iter().find_map(|extension| {
        match extension.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        }
    })?;
    let serial = certificate.tbs_certificate.raw_serial().to_vec();
    Some(
        instant_acme::CertificateIdentifier::new(
            rustls_pki_types::Der::from(key_identifier.as_slice()),
            rustls_pki_types::Der::from(serial.as_slice()),
        )
        .into_owned(),
    )
}

fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(encoded.len() + encoded.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_type_sign_a_csr() {
        for key_type in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048] {
            let key = generate_key(key_type).unwrap_or_else(|error| panic!("{key_type}: {error}"));
            let csr = csr_der(&["a.example.com".to_owned()], &key);
            assert!(csr.is_ok_and(|der| !der.is_empty()), "{key_type}");
            assert!(key_pem(&key).starts_with("-----BEGIN PRIVATE KEY-----"));
        }
    }

    #[test]
    fn reads_a_certificate_chain() {
        let key = generate_key(KeyType::EcdsaP256).unwrap_or_else(|error| panic!("{error}"));
        let params =
            CertificateParams::new(vec!["a.example.com".to_owned(), "b.example.com".to_owned()])
                .unwrap_or_else(|error| panic!("{error}"));
        let certificate = params
            .self_signed(&key)
            .unwrap_or_else(|error| panic!("{error}"));
        let chain = format!("{}{}", certificate.pem(), certificate.pem());
        let parsed = parse_chain(&chain).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(parsed.names, ["a.example.com", "b.example.com"]);
        assert_eq!(
            parsed.public_key_der,
            rcgen::PublicKeyData::subject_public_key_info(&key)
        );
        assert!(parsed.not_after_ms > parsed.not_before_ms);
        assert_eq!(parsed.chain_pem.matches("BEGIN CERTIFICATE").count(), 1);
        assert_eq!(
            parse_chain(&parsed.leaf_pem).map(|again| again.serial).ok(),
            Some(parsed.serial)
        );
        assert!(parse_chain("nothing here").is_err());
    }
}
