//! Asking a proxy which certificate it serves for a name: a real TLS
//! handshake, the served leaf's fingerprint read off the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::AsyncWriteExt as _;

use crate::ProxyError;
use crate::bundle::{fingerprint, serial_hex};

/// The leaf certificate a proxy served in a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Lower-case hex SHA-256 of the leaf's DER, as [`crate::Bundle::leaf_fingerprint`].
    pub fingerprint: String,
    /// As [`crate::Bundle::leaf_serial`].
    pub serial: String,
    pub not_after_unix: i64,
}

/// Connects to `address`, shakes hands with SNI `server_name` (for
/// `*.example.com`: `certfleet-check.example.com`) and reports the leaf the
/// server sent.
///
/// The chain is deliberately not verified against any root: the question is
/// whether the proxy serves the exact certificate that was installed, which
/// the fingerprint answers more strictly than path validation would, and it
/// must work for staging CAs and before a certificate is trusted anywhere.
/// The handshake signature is still checked, so the server holds the key.
pub async fn verify_served(
    address: SocketAddr,
    server_name: &str,
    timeout: Duration,
) -> Result<Served, ProxyError> {
    let sni = match server_name.strip_prefix("*.") {
        Some(rest) => format!("certfleet-check.{rest}"),
        None => server_name.to_owned(),
    };
    let handshake_error = |detail: String| ProxyError::Handshake {
        address,
        server_name: sni.clone(),
        detail,
    };
    let name = ServerName::try_from(sni.clone())
        .map_err(|error| ProxyError::invalid("server name", format!("{sni:?}: {error}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| handshake_error(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyChain {
            algorithms: provider.signature_verification_algorithms,
        }))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|error| handshake_error(format!("connecting: {error}")))?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|error| handshake_error(error.to_string()))
    };
    let mut stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_elapsed| handshake_error(format!("timed out after {timeout:?}")))??;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.clone().into_owned())
        .ok_or_else(|| handshake_error("the server sent no certificate".to_owned()))?;
    // A polite close; the answer is already known, so failures do not matter.
    let _ignored = tokio::time::timeout(Duration::from_millis(200), stream.shutdown()).await;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|error| handshake_error(format!("unparsable leaf: {error}")))?;
    Ok(Served {
        fingerprint: fingerprint(&leaf),
        serial: serial_hex(&parsed),
        not_after_unix: parsed.validity().not_after.timestamp(),
    })
}

/// Accepts any chain; see [`verify_served`] for why.
#[derive(Debug)]
struct AnyChain {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
