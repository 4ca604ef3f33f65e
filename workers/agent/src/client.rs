//! The agent's gRPC client: the API endpoint, TLS (optionally mutual), and
//! its platform agent token on every call.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use certfleet_proto::Bearer;
use certfleet_proto::v1::certificate_service_client::CertificateServiceClient;
use certfleet_proto::v1::organization_service_client::OrganizationServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub type Certificates = CertificateServiceClient<InterceptedService<Channel, Bearer>>;
pub type Organizations = OrganizationServiceClient<InterceptedService<Channel, Bearer>>;

/// Where the API is and how to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Clients of both services over one lazily connected channel (the agent
/// starts while the API may still be away; calls fail until it answers).
pub fn clients(endpoint: &Endpoint, token: &str) -> anyhow::Result<(Certificates, Organizations)> {
    let bearer = Bearer::new(token)
        .ok_or_else(|| anyhow!("the agent token contains characters that cannot be sent"))?;
    let mut channel = Channel::from_shared(endpoint.url.clone())
        .map_err(|error| anyhow!("invalid --api-url {:?}: {error}", endpoint.url))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    if endpoint.url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = &endpoint.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        match (&endpoint.client_cert, &endpoint.client_key) {
            (Some(certificate), Some(key)) => {
                let certificate_pem = std::fs::read(certificate)
                    .with_context(|| format!("reading --client-cert {}", certificate.display()))?;
                let key_pem = std::fs::read(key)
                    .with_context(|| format!("reading --client-key {}", key.display()))?;
                tls = tls.identity(Identity::from_pem(certificate_pem, key_pem));
            }
            (None, None) => {}
            _ => bail!("--client-cert and --client-key go together"),
        }
        channel = channel
            .tls_config(tls)
            .with_context(|| format!("TLS settings for {}", endpoint.url))?;
    } else if endpoint.ca_cert.is_some() || endpoint.client_cert.is_some() {
        bail!(
            "--ca-cert, --client-cert and --client-key need an https:// --api-url, not {}",
            endpoint.url
        );
    }
    let channel = channel.connect_lazy();
    Ok((
        CertificateServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        OrganizationServiceClient::with_interceptor(channel, bearer),
    ))
}
