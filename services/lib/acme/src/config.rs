//! Settings of the issuance engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The ACME directory URL of the CA.
    pub directory_url: String,
    /// A PEM root to trust for the CA's HTTPS instead of the public roots
    /// (a private or test CA such as Pebble).
    pub ca_root: Option<PathBuf>,
    /// Limit of any single request to the CA.
    pub request_timeout: Duration,
    /// How long to wait for the CA to validate an order or issue a certificate.
    pub order_timeout: Duration,
    pub self_check: SelfCheckConfig,
    /// DNS-01: resolver, propagation timeout and interval, allowed programs.
    pub dns: certfleet_dns::DnsSettings,
}

impl AcmeConfig {
    pub fn new(directory_url: impl Into<String>) -> AcmeConfig {
        AcmeConfig {
            directory_url: directory_url.into(),
            ca_root: None,
            request_timeout: Duration::from_secs(30),
            order_timeout: Duration::from_secs(120),
            self_check: SelfCheckConfig::default(),
            dns: certfleet_dns::DnsSettings::default(),
        }
    }
}

/// The check of our own challenge URL before the CA is told to look.
#[derive(Debug, Clone)]
pub struct SelfCheckConfig {
    pub enabled: bool,
    /// Connect here instead of the name's own address on port 80 (a load
    /// balancer, NAT, or a local test CA's HTTP-01 port); the Host header still
    /// carries the name.
    pub connect_addr: Option<SocketAddr>,
    /// How long to keep trying before the attempt fails (retryable).
    pub timeout: Duration,
}

impl Default for SelfCheckConfig {
    fn default() -> Self {
        SelfCheckConfig {
            enabled: true,
            connect_addr: None,
            timeout: Duration::from_secs(30),
        }
    }
}
