//! The gRPC client of the CLI: endpoint, bearer token, and plain error text.

use anyhow::{Context as _, anyhow, bail};
use certfleet_proto::v1::certificate_service_client::CertificateServiceClient;
use certfleet_proto::v1::dns_provider_service_client::DnsProviderServiceClient;
use certfleet_proto::v1::organization_service_client::OrganizationServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::args::ClientArgs;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// A bearer header for `token`; fails on characters a header cannot carry.
    pub fn new(token: &str) -> anyhow::Result<Bearer> {
        MetadataValue::try_from(format!("Bearer {}", token.trim()))
            .map(Bearer)
            .map_err(|_| anyhow!("the token contains characters that cannot be sent"))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub(crate) type Certificates = CertificateServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type Organizations = OrganizationServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type DnsProviders = DnsProviderServiceClient<InterceptedService<Channel, Bearer>>;

async fn connect(args: &ClientArgs) -> anyhow::Result<(Channel, Bearer)> {
    let token = args
        .token
        .as_deref()
        .ok_or_else(|| anyhow!("no token: pass --token or set CERTFLEET_TOKEN"))?;
    let bearer = Bearer::new(token)?;
    let mut endpoint = Channel::from_shared(args.endpoint.clone())
        .map_err(|error| anyhow!("invalid --endpoint {:?}: {error}", args.endpoint))?
        .connect_timeout(std::time::Duration::from_secs(5));
    if args.endpoint.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS settings for {}", args.endpoint))?;
    } else if args.ca_cert.is_some() {
        bail!(
            "--ca-cert needs an https:// endpoint, not {}",
            args.endpoint
        );
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach certfleet at {}", args.endpoint))?;
    Ok((channel, bearer))
}

pub(crate) async fn certificates(args: &ClientArgs) -> anyhow::Result<Certificates> {
    let (channel, bearer) = connect(args).await?;
    Ok(CertificateServiceClient::with_interceptor(channel, bearer))
}

pub(crate) async fn organizations(args: &ClientArgs) -> anyhow::Result<Organizations> {
    let (channel, bearer) = connect(args).await?;
    Ok(OrganizationServiceClient::with_interceptor(channel, bearer))
}

pub(crate) async fn dns_providers(args: &ClientArgs) -> anyhow::Result<DnsProviders> {
    let (channel, bearer) = connect(args).await?;
    Ok(DnsProviderServiceClient::with_interceptor(channel, bearer))
}

/// The server's message, which already names the field and value where it matters.
pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    let message = status.message();
    // What a plaintext client sees when the server speaks TLS.
    let looks_like_tls = [
        "h2 protocol error",
        "operation was canceled",
        "transport error",
    ]
    .iter()
    .any(|sign| message.contains(sign));
    if looks_like_tls {
        return anyhow!(
            "{message} (does the server speak TLS? then use an https:// endpoint, with --ca-cert for a private CA)"
        );
    }
    anyhow!("{message}")
}
