//! The certfleet gRPC and event contract, generated from `proto/certfleet/v1`.

#[allow(clippy::all, clippy::pedantic, reason = "generated code")]
pub mod v1 {
    tonic::include_proto!("certfleet.v1");

    /// Encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("certfleet_descriptor");
}

/// Adds `authorization: Bearer <token>` to every call of a client
/// (`XServiceClient::with_interceptor(channel, bearer)`).
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// A bearer header for `token` (surrounding whitespace dropped); `None`
    /// when the token holds characters a header cannot carry.
    pub fn new(token: &str) -> Option<Bearer> {
        tonic::metadata::MetadataValue::try_from(format!("Bearer {}", token.trim()))
            .ok()
            .map(Bearer)
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
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

/// The TLS files a client may be given for an `https://` endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTls<'a> {
    /// A CA certificate (PEM) to trust besides the system's roots.
    pub ca_cert: Option<&'a std::path::Path>,
    /// A client certificate and key (PEM) for mutual TLS; both or neither.
    pub client_cert: Option<&'a std::path::Path>,
    pub client_key: Option<&'a std::path::Path>,
}

/// The endpoint of a certfleet API at `url` (given as `flag`, which the
/// errors name), with TLS set up from `tls` for `https://` and a 5 s connect
/// timeout. The files are read and the client identity parsed here, so a bad
/// one is named before any connection is tried.
pub fn endpoint(
    url: &str,
    flag: &str,
    tls: ClientTls<'_>,
) -> Result<tonic::transport::Endpoint, String> {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|error| format!("reading {flag} {}: {error}", path.display()))
    };
    let endpoint = Channel::from_shared(url.to_owned())
        .map_err(|error| format!("invalid {flag} {url:?}: {error}"))?
        .connect_timeout(std::time::Duration::from_secs(5));
    let identity = match (tls.client_cert, tls.client_key) {
        (Some(certificate), Some(key)) => Some((certificate, key)),
        (None, None) => None,
        _ => {
            return Err(
                "--client-cert and --client-key (CERTFLEET_CLIENT_CERT, CERTFLEET_CLIENT_KEY) go together"
                    .to_owned(),
            );
        }
    };
    if !url.starts_with("https://") {
        if tls.ca_cert.is_some() {
            return Err(format!("--ca-cert needs an https:// endpoint, not {url}"));
        }
        if identity.is_some() {
            return Err(format!(
                "--client-cert and --client-key need an https:// endpoint, not {url}"
            ));
        }
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new().with_native_roots();
    if let Some(path) = tls.ca_cert {
        config = config.ca_certificate(Certificate::from_pem(read("--ca-cert", path)?));
    }
    if let Some((certificate, key)) = identity {
        let identity = Identity::from_pem(
            read("--client-cert", certificate)?,
            read("--client-key", key)?,
        );
        // Parsed here so that the error names the files, not the endpoint.
        Channel::from_static("https://certfleet.invalid")
            .tls_config(ClientTlsConfig::new().identity(identity.clone()))
            .map_err(|_| {
                format!(
                    "--client-cert {} / --client-key {}: not a usable certificate and key",
                    certificate.display(),
                    key.display()
                )
            })?;
        config = config.identity(identity);
    }
    endpoint
        .tls_config(config)
        .map_err(|error| format!("TLS settings for {url}: {error}"))
}
