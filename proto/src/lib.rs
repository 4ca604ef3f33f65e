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
