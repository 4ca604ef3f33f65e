//! Trust for the TLS connections of both channels: the platform's roots plus
//! the channel's own root, if it has one.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::channel::ValidationError;

/// The certificates in a `root_ca_pem` setting; at least one.
pub(crate) fn parse_roots(pem: &str) -> Result<Vec<CertificateDer<'static>>, ValidationError> {
    let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ValidationError::new("root_ca_pem", format!("is not PEM ({error})")))?;
    if roots.is_empty() {
        return Err(ValidationError::new(
            "root_ca_pem",
            "holds no CERTIFICATE block",
        ));
    }
    Ok(roots)
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// A client config verifying with the platform verifier and `extra` roots.
/// Without extra roots (most channels) one config is built and shared, so
/// the platform's roots are not loaded again for every delivery.
pub(crate) fn client_config(
    extra: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, String> {
    static PLATFORM_ONLY: OnceLock<rustls::ClientConfig> = OnceLock::new();
    if !extra.is_empty() {
        return build_client_config(extra);
    }
    if let Some(config) = PLATFORM_ONLY.get() {
        return Ok(config.clone());
    }
    let config = build_client_config(Vec::new())?;
    Ok(PLATFORM_ONLY.get_or_init(|| config).clone())
}

fn build_client_config(
    extra: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|error| format!("preparing certificate verification: {error}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("choosing tls versions: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}
