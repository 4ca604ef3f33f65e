//! The gRPC client of the CLI: endpoint, bearer token, and plain error text.

use anyhow::{Context as _, anyhow};
use certfleet_proto::v1::certificate_service_client::CertificateServiceClient;
use certfleet_proto::v1::dns_provider_service_client::DnsProviderServiceClient;
use certfleet_proto::v1::notification_service_client::NotificationServiceClient;
use certfleet_proto::v1::organization_service_client::OrganizationServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::args::ClientArgs;

pub use certfleet_proto::Bearer;

/// A bearer header for `token`; fails on characters a header cannot carry.
pub fn bearer(token: &str) -> anyhow::Result<Bearer> {
    Bearer::new(token).ok_or_else(|| anyhow!("the token contains characters that cannot be sent"))
}

pub(crate) type Certificates = CertificateServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type Organizations = OrganizationServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type DnsProviders = DnsProviderServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type Notifications = NotificationServiceClient<InterceptedService<Channel, Bearer>>;

async fn connect(args: &ClientArgs) -> anyhow::Result<(Channel, Bearer)> {
    let token = args
        .token
        .as_deref()
        .ok_or_else(|| anyhow!("no token: pass --token or set CERTFLEET_TOKEN"))?;
    let bearer = bearer(token)?;
    let endpoint = certfleet_proto::endpoint(
        &args.endpoint,
        "--endpoint",
        certfleet_proto::ClientTls {
            ca_cert: args.ca_cert.as_deref(),
            client_cert: args.client_cert.as_deref(),
            client_key: args.client_key.as_deref(),
        },
    )
    .map_err(|error| anyhow!(error))?;
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

pub(crate) async fn notifications(args: &ClientArgs) -> anyhow::Result<Notifications> {
    let (channel, bearer) = connect(args).await?;
    Ok(NotificationServiceClient::with_interceptor(channel, bearer))
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
