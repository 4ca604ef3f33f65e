//! The one error type of the crate. Messages name the file, command or URL
//! and what failed; they never contain key material.

use std::path::PathBuf;

/// Why installing, removing or checking a certificate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The input (a bundle, an id, a token, a name) is unusable; retrying
    /// the same input fails the same way.
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    /// A file or directory could not be read, written or removed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A command could not be run or did not finish in time.
    #[error("running {command}: {detail}")]
    Command { command: String, detail: String },
    /// The proxy's configuration test rejected the new configuration (which
    /// was rolled back); something in the configuration has to change first.
    #[error("{command} rejected the configuration: {output}")]
    ConfigRejected { command: String, output: String },
    /// The proxy accepted the configuration but failed to reload it.
    #[error("{command} failed to reload: {output}")]
    Reload { command: String, output: String },
    /// The proxy's admin API could not be reached or did not answer in time.
    #[error("admin API {method} {url} unreachable: {detail}")]
    AdminUnreachable {
        method: &'static str,
        url: String,
        detail: String,
    },
    /// The proxy's admin API answered with an error status.
    #[error("admin API {method} {url} answered {status}: {body}")]
    AdminRejected {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    /// The proxy accepted the change but its configuration does not show it.
    #[error("{target} does not show the installed certificate: {detail}")]
    NotApplied {
        target: &'static str,
        detail: String,
    },
    /// A TLS handshake with the proxy failed or timed out.
    #[error("tls handshake with {address} for {server_name} failed: {detail}")]
    Handshake {
        address: std::net::SocketAddr,
        server_name: String,
        detail: String,
    },
}

impl ProxyError {
    /// Whether trying the same operation again later may succeed: the proxy
    /// or its admin API being down, a reload failing, I/O errors. Invalid
    /// input and a configuration the proxy rejects are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Invalid { .. } | Self::ConfigRejected { .. } => false,
            Self::AdminRejected { status, .. } => *status >= 500 || *status == 429,
            Self::Io { .. }
            | Self::Command { .. }
            | Self::Reload { .. }
            | Self::AdminUnreachable { .. }
            | Self::NotApplied { .. }
            | Self::Handshake { .. } => true,
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
