//! One certificate version as it gets installed, and the checks every
//! target runs on it before touching a file.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::ProxyError;

/// What gets installed: one certificate version.
#[derive(Clone)]
pub struct Bundle {
    /// UUID text; used as a file name, so only `[A-Za-z0-9-]` is accepted.
    pub certificate_id: String,
    pub organization_id: String,
    pub version: u32,
    /// DNS names, the first is the primary; `*.example.com` is allowed.
    pub names: Vec<String>,
    /// The leaf first, then the intermediates.
    pub fullchain_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Bundle")
            .field("certificate_id", &self.certificate_id)
            .field("organization_id", &self.organization_id)
            .field("version", &self.version)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Bundle {
    /// Lower-case hex SHA-256 of the leaf's DER, as [`crate::Served`] reports it.
    pub fn leaf_fingerprint(&self) -> Result<String, ProxyError> {
        Ok(fingerprint(&self.leaf_der()?))
    }

    /// The leaf's serial number: lower-case hex of the DER integer's bytes
    /// (x509-parser's `raw_serial`), no colons; the store keeps the same
    /// digits in upper case.
    pub fn leaf_serial(&self) -> Result<String, ProxyError> {
        serial(&self.leaf_der()?)
    }

    /// Checks everything a target relies on: the id is a safe file name, the
    /// names are DNS names (they go into proxy configuration files), the
    /// chain and key parse and the key belongs to the leaf.
    pub fn validate(&self) -> Result<(), ProxyError> {
        validate_certificate_id(&self.certificate_id)?;
        if self.names.is_empty() {
            return Err(ProxyError::invalid(
                "names",
                format!("certificate {} has no DNS names", self.certificate_id),
            ));
        }
        for name in &self.names {
            validate_dns_name(name)?;
        }
        let chain = self.chain()?;
        let key = self.private_key()?;
        let signing_key =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|error| {
                ProxyError::invalid(
                    "private key",
                    format!("certificate {}: {error}", self.certificate_id),
                )
            })?;
        CertifiedKey::new(chain, Arc::clone(&signing_key))
            .keys_match()
            .map_err(|error| {
                ProxyError::invalid(
                    "private key",
                    format!(
                        "certificate {}: key does not match the leaf ({error})",
                        self.certificate_id
                    ),
                )
            })
    }

    pub(crate) fn chain(&self) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
        let chain: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut self.fullchain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|error| {
                    ProxyError::invalid(
                        "certificate chain",
                        format!("certificate {}: {error}", self.certificate_id),
                    )
                })?;
        if chain.is_empty() {
            return Err(ProxyError::invalid(
                "certificate chain",
                format!("certificate {}: no PEM certificate", self.certificate_id),
            ));
        }
        Ok(chain)
    }

    fn leaf_der(&self) -> Result<CertificateDer<'static>, ProxyError> {
        self.chain()?.into_iter().next().ok_or_else(|| {
            ProxyError::invalid("certificate chain", "no PEM certificate".to_owned())
        })
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, ProxyError> {
        // The parser's error never contains key bytes, only what was wrong.
        rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .map_err(|error| {
                ProxyError::invalid(
                    "private key",
                    format!("certificate {}: {error}", self.certificate_id),
                )
            })?
            .ok_or_else(|| {
                ProxyError::invalid(
                    "private key",
                    format!("certificate {}: no PEM private key", self.certificate_id),
                )
            })
    }
}

pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn serial(der: &[u8]) -> Result<String, ProxyError> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| ProxyError::invalid("certificate", error.to_string()))?;
    Ok(serial_hex(&certificate))
}

/// The serial as [`Bundle::leaf_serial`] and [`crate::Served`] report it.
pub(crate) fn serial_hex(certificate: &x509_parser::certificate::X509Certificate<'_>) -> String {
    hex::encode(certificate.raw_serial())
}

/// Accepts a certificate id only when it is a non-empty run of at most 64
/// `[A-Za-z0-9-]`: it becomes a file name and part of proxy configuration.
pub fn validate_certificate_id(certificate_id: &str) -> Result<(), ProxyError> {
    let valid = !certificate_id.is_empty()
        && certificate_id.len() <= 64
        && certificate_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(ProxyError::invalid(
            "certificate id",
            format!("{certificate_id:?} is not 1 to 64 of [A-Za-z0-9-]"),
        ))
    }
}

/// A DNS name as it may appear in `server_name`: labels of letters, digits,
/// `-` and `_`, optionally `*.` in front. Anything else could change the
/// meaning of the generated configuration.
fn validate_dns_name(name: &str) -> Result<(), ProxyError> {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    let valid = !rest.is_empty()
        && name.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        });
    if valid {
        Ok(())
    } else {
        Err(ProxyError::invalid(
            "dns name",
            format!("{name:?} is not a DNS name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_ids_are_file_name_safe() {
        assert!(validate_certificate_id("0190f1b2-7c3e-7aa0-9b1e-1f2e3d4c5b6a").is_ok());
        for bad in ["", "../x", "a/b", "a b", "a.b", &"a".repeat(65)] {
            let error = validate_certificate_id(bad).expect_err(bad);
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
            assert!(!error.is_retryable());
        }
    }

    #[test]
    fn dns_names_cannot_inject_configuration() {
        for good in ["a.test", "*.example.com", "x_y.example.com", "localhost"] {
            assert!(validate_dns_name(good).is_ok(), "{good}");
        }
        for bad in ["", "*.", "a..b", "a.test; include /x", "a.*.b", "a\nb", "*"] {
            assert!(validate_dns_name(bad).is_err(), "{bad:?}");
        }
    }
}
