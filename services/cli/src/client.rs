//! The gRPC client of the CLI: endpoint, bearer token, and plain error text.

use anyhow::{Context as _, anyhow, bail};
use certfleet_proto::v1::certificate_service_client::CertificateServiceClient;
use certfleet_proto::v1::dns_provider_service_client::DnsProviderServiceClient;
use certfleet_proto::v1::organization_service_client::OrganizationServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::args::ClientArgs;

pub use certfleet_proto::Bearer;

/// A bearer header for `token`; fails on characters a header cannot carry.
pub fn bearer(token: &str) -> anyhow::Result<Bearer> {
    Bearer::new(token).ok_or_else(|| anyhow!("the token contains characters that cannot be sent"))
}

pub(crate) type Certificates = CertificateServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type Organizations = OrganizationServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type DnsProviders = DnsProviderServiceClient<InterceptedService<Channel, Bearer>>;

pub(crate) async fn connect(args: &ClientArgs) -> anyhow::Result<(Channel, Bearer)> {
    let token = args
        .token
        .as_deref()
        .ok_or_else(|| anyhow!("no token: pass --token or set CERTFLEET_TOKEN"))?;
    let bearer = bearer(token)?;
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
        if let Some(identity) = client_identity(args)? {
            tls = tls.identity(identity);
        }
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS settings for {}", args.endpoint))?;
    } else if args.ca_cert.is_some() {
        bail!(
            "--ca-cert needs an https:// endpoint, not {}",
            args.endpoint
        );
    } else if args.client_cert.is_some() || args.client_key.is_some() {
        bail!(
            "--client-cert and --client-key need an https:// endpoint, not {}",
            args.endpoint
        );
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach certfleet at {}", args.endpoint))?;
    Ok((channel, bearer))
}

/// The client certificate and key for mutual TLS, checked before connecting.
fn client_identity(args: &ClientArgs) -> anyhow::Result<Option<Identity>> {
    let (certificate, key) = match (&args.client_cert, &args.client_key) {
        (Some(certificate), Some(key)) => (certificate, key),
        (None, None) => return Ok(None),
        _ => bail!(
            "--client-cert and --client-key (CERTFLEET_CLIENT_CERT, CERTFLEET_CLIENT_KEY) go together"
        ),
    };
    let certificate_pem = std::fs::read(certificate)
        .with_context(|| format!("reading --client-cert {}", certificate.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading --client-key {}", key.display()))?;
    let identity = Identity::from_pem(certificate_pem, key_pem);
    // Parsed here so that the error names the files, not the endpoint.
    Channel::from_static("https://certfleet.invalid")
        .tls_config(ClientTlsConfig::new().identity(identity.clone()))
        .with_context(|| {
            format!(
                "--client-cert {} / --client-key {}: not a usable certificate and key",
                certificate.display(),
                key.display()
            )
        })?;
    Ok(Some(identity))
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
    // Under TLS 1.3 a server that refuses the client's certificate (none, or
    // one from another CA) closes the connection after the handshake, with
    // the same signs.
    if looks_like_tls {
        return anyhow!(
            "{message} (does the server speak TLS? then use an https:// endpoint, with --ca-cert for a private CA; does it require a client certificate? then pass --client-cert and --client-key)"
        );
    }
    anyhow!("{message}")
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::Cli;

    fn client_args(args: &[&str]) -> ClientArgs {
        let line = ["certfleet", "--token", "cf1.a.b"]
            .into_iter()
            .chain(args.iter().copied())
            .chain([
                "org",
                "create",
                "a",
                "--name",
                "A",
                "--email",
                "a@a.example",
            ]);
        Cli::try_parse_from(line).unwrap().client
    }

    async fn connect_error(args: &ClientArgs) -> String {
        match connect(args).await {
            Ok(_) => panic!("connected"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[tokio::test]
    async fn the_client_certificate_and_key_go_together() {
        for half in [
            &["--client-cert", "/etc/certfleet/agent.pem"][..],
            &["--client-key", "/etc/certfleet/agent-key.pem"][..],
        ] {
            let args = client_args(&[&["--endpoint", "https://127.0.0.1:1"][..], half].concat());
            let error = connect_error(&args).await;
            assert_eq!(
                error,
                "--client-cert and --client-key (CERTFLEET_CLIENT_CERT, CERTFLEET_CLIENT_KEY) go together"
            );
        }
    }

    #[tokio::test]
    async fn a_client_certificate_is_checked_before_connecting() {
        let directory = tempfile::tempdir().unwrap();
        let certificate = directory.path().join("agent.pem");
        let key = directory.path().join("agent-key.pem");
        std::fs::write(&certificate, "not a certificate\n").unwrap();
        let both = [
            "--client-cert",
            certificate.to_str().unwrap(),
            "--client-key",
            key.to_str().unwrap(),
        ];
        let args = client_args(&[&["--endpoint", "https://127.0.0.1:1"][..], &both[..]].concat());
        let error = connect_error(&args).await;
        assert!(error.starts_with("reading --client-key "), "{error}");
        assert!(error.contains("agent-key.pem"), "{error}");

        std::fs::write(&key, "not a key\n").unwrap();
        let error = connect_error(&args).await;
        assert!(
            error.starts_with("--client-cert ")
                && error.contains("not a usable certificate and key"),
            "{error}"
        );

        let args = client_args(&[&["--endpoint", "http://127.0.0.1:1"][..], &both[..]].concat());
        let error = connect_error(&args).await;
        assert_eq!(
            error,
            "--client-cert and --client-key need an https:// endpoint, not http://127.0.0.1:1"
        );
    }
}
