//! Installs issued certificates into the reverse proxies that serve them
//! (nginx, Traefik, Caddy), answers HTTP-01 challenges from a webroot, and
//! checks with a real TLS handshake which certificate a proxy serves.
//!
//! Every [`Target`] installs one [`Bundle`] all-or-nothing: files are written
//! atomically ([`write_atomically`]), the proxy is told, and when it refuses
//! the previous state is put back.

mod bundle;
mod caddy;
mod command;
mod error;
mod fs;
mod nginx;
mod traefik;
mod verify;
mod webroot;

pub use bundle::{Bundle, validate_certificate_id};
pub use caddy::CaddyTarget;
pub use error::ProxyError;
pub use fs::write_atomically;
pub use nginx::NginxTarget;
pub use traefik::TraefikTarget;
pub use verify::{Served, verify_served};
pub use webroot::Webroot;

/// What a target says is installed (for reconciling at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub certificate_id: String,
    pub version: u32,
}

/// A proxy that certificates are installed into.
#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// `"nginx"`, `"traefik"` or `"caddy"`.
    fn kind(&self) -> &'static str;
    /// Installs `bundle`, replacing any earlier version of the same
    /// certificate; all-or-nothing: on error the previous version stays.
    async fn install(&self, bundle: &Bundle) -> Result<(), ProxyError>;
    /// Removes a certificate; removing one that is absent is `Ok`.
    async fn remove(&self, certificate_id: &str) -> Result<(), ProxyError>;
    /// The certificates (and versions) this target has installed.
    async fn installed(&self) -> Result<Vec<Installed>, ProxyError>;
}

/// Default timeout for the commands and HTTP requests the targets make.
pub(crate) const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
