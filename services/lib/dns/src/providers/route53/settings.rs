//! The Route 53 settings: checked, then turned into an SDK client with static
//! credentials, the region and an optional endpoint (moto, a proxy). Secret
//! values are never repeated in errors.

use std::time::Duration;

use aws_sdk_route53::Client;
use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};

use super::{Route53, SYNC_TIMEOUT};
use crate::settings::Settings;
use crate::{ProviderConfig, SettingError};

impl Route53 {
    /// Checks the settings and builds the SDK client (no I/O).
    pub fn from_config(config: &ProviderConfig) -> Result<Route53, SettingError> {
        let settings = &config.settings;
        let why = "for the route53 provider";
        let access_key_id = settings.required("access_key_id", why)?;
        if !is_token(access_key_id) {
            return Err(SettingError::new(
                &Settings::field("access_key_id"),
                access_key_id,
                "is not an AWS access key id (letters and digits)",
            ));
        }
        let secret_access_key = settings.required("secret_access_key", why)?;
        if !is_header_safe(secret_access_key) {
            return Err(SettingError::secret(
                &Settings::field("secret_access_key"),
                "contains spaces or control characters",
            ));
        }
        let session_token = settings.optional("session_token");
        if session_token.is_some_and(|token| !is_header_safe(token)) {
            return Err(SettingError::secret(
                &Settings::field("session_token"),
                "contains spaces or control characters",
            ));
        }
        let region = settings.optional("region").unwrap_or("us-east-1");
        let region_ok = region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(SettingError::new(
                &Settings::field("region"),
                region,
                "is not an AWS region name (like us-east-1)",
            ));
        }
        let endpoint_url = settings
            .optional("endpoint_url")
            .map(|url| settings.url("endpoint_url", url))
            .transpose()?;
        let hosted_zone_id = settings
            .optional("hosted_zone_id")
            .map(|id| {
                let bare = id.strip_prefix("/hostedzone/").unwrap_or(id);
                if is_token(bare) {
                    Ok(bare.to_owned())
                } else {
                    Err(SettingError::new(
                        &Settings::field("hosted_zone_id"),
                        id,
                        "is not a hosted zone id (like Z0123456789ABCDEFGHIJ)",
                    ))
                }
            })
            .transpose()?;
        let ttl = settings.number("ttl", 60, 1, 86_400)?;

        let credentials = Credentials::new(
            access_key_id,
            secret_access_key,
            session_token.map(str::to_owned),
            None,
            "certfleet-settings",
        );
        let timeouts = aws_sdk_route53::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(30))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let mut builder = aws_sdk_route53::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(credentials)
            .timeout_config(timeouts);
        if let Some(endpoint_url) = endpoint_url {
            builder = builder.endpoint_url(endpoint_url);
        }
        Ok(Route53 {
            client: Client::from_conf(builder.build()),
            hosted_zone_id,
            ttl: i64::try_from(ttl).unwrap_or(60),
            sync_timeout: SYNC_TIMEOUT,
        })
    }
}

fn is_token(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_header_safe(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_graphic())
}
