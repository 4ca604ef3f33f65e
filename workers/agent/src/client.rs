//! The agent's gRPC client: the API endpoint, TLS (optionally mutual), and
//! its platform agent token on every call.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use certfleet_proto::Bearer;
use certfleet_proto::v1::certificate_service_client::CertificateServiceClient;
use certfleet_proto::v1::organization_service_client::OrganizationServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

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
    let channel = certfleet_proto::endpoint(
        &endpoint.url,
        "--api-url",
        certfleet_proto::ClientTls {
            ca_cert: endpoint.ca_cert.as_deref(),
            client_cert: endpoint.client_cert.as_deref(),
            client_key: endpoint.client_key.as_deref(),
        },
    )
    .map_err(|error| anyhow!(error))?
    .timeout(Duration::from_secs(30));
    let channel = channel.connect_lazy();
    Ok((
        CertificateServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        OrganizationServiceClient::with_interceptor(channel, bearer),
    ))
}
