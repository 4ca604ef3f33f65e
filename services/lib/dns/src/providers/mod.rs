//! The providers. Each module has `from_config`, which checks the settings
//! (no I/O) and builds the provider.

use std::sync::Arc;

use crate::{DnsPolicy, DnsProvider, ProviderConfig, ProviderKind, SettingError};

pub mod cloudflare;
pub mod exec;
mod locks;
pub mod pdns;
pub mod rfc2136;
pub mod route53;
pub mod webhook;

/// Checks the kind's settings without building anything lasting.
pub(crate) fn check(config: &ProviderConfig, policy: &DnsPolicy) -> Result<(), SettingError> {
    build(config, policy).map(drop)
}

/// The provider `config` describes.
pub fn build(
    config: &ProviderConfig,
    policy: &DnsPolicy,
) -> Result<Arc<dyn DnsProvider>, SettingError> {
    Ok(match config.kind {
        ProviderKind::Rfc2136 => Arc::new(rfc2136::Rfc2136::from_config(config)?),
        ProviderKind::Pdns => Arc::new(pdns::PowerDns::from_config(config)?),
        ProviderKind::Route53 => Arc::new(route53::Route53::from_config(config)?),
        ProviderKind::Cloudflare => Arc::new(cloudflare::Cloudflare::from_config(config)?),
        ProviderKind::Exec => Arc::new(exec::Exec::from_config(config, policy)?),
        ProviderKind::Webhook => Arc::new(webhook::Webhook::from_config(config)?),
    })
}
