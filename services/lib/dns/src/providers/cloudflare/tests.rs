//! Settings checks and the pure helpers of the Cloudflare provider.

use std::collections::BTreeMap;

use super::*;
use crate::DnsPolicy;

const TOKEN: &str = "Xk2-example-cloudflare-token_0123456789";

fn parse(pairs: &[(&str, &str)]) -> Result<ProviderConfig, SettingError> {
    let values: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    ProviderConfig::parse(ProviderKind::Cloudflare, values, &DnsPolicy::default())
}

fn error_of(pairs: &[(&str, &str)]) -> SettingError {
    parse(pairs).expect_err("settings are refused")
}

#[test]
fn minimal_settings_build() {
    let config = parse(&[("api_token", TOKEN)]).expect("valid settings");
    let provider = Cloudflare::from_config(&config).expect("provider builds");
    assert_eq!(provider.ttl, 120);
    assert_eq!(provider.zone_id, None);
    let shown = format!("{provider:?}");
    assert!(shown.contains(DEFAULT_API_URL), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[test]
fn all_settings_build() {
    let config = parse(&[
        ("api_token", TOKEN),
        ("api_url", "http://127.0.0.1:8080/client/v4/"),
        ("zone_id", "023e105f4ecef8ad9ca31a8372d0c353"),
        ("ttl", "1"),
    ])
    .expect("valid settings");
    let provider = Cloudflare::from_config(&config).expect("provider builds");
    assert_eq!(
        provider.zone_id.as_deref(),
        Some("023e105f4ecef8ad9ca31a8372d0c353")
    );
    assert_eq!(provider.ttl, 1);
    assert!(format!("{provider:?}").contains("http://127.0.0.1:8080/client/v4\""));
}

#[test]
fn missing_token_names_the_setting() {
    let error = error_of(&[("zone_id", "023e105f4ecef8ad9ca31a8372d0c353")]);
    assert_eq!(error.field, "settings.api_token");
    assert!(error.message.contains("required"), "{error}");
}

#[test]
fn bad_token_is_not_echoed() {
    let error = error_of(&[("api_token", "secret token\twith tab")]);
    assert_eq!(error.field, "settings.api_token");
    assert!(!error.to_string().contains("secret token"), "{error}");
}

#[test]
fn bad_plain_settings_name_the_setting_and_value() {
    for (key, value) in [
        ("api_url", "api.cloudflare.com"),
        ("zone_id", "../zones"),
        ("ttl", "0"),
        ("ttl", "10"),
        ("ttl", "86401"),
    ] {
        let error = error_of(&[("api_token", TOKEN), (key, value)]);
        assert_eq!(error.field, format!("settings.{key}"), "{error}");
        assert!(error.message.contains(value), "{error}");
    }
}

#[test]
fn content_is_compared_without_quotes() {
    assert_eq!(unquote("\"abc\""), "abc");
    assert_eq!(unquote("abc"), "abc");
    assert_eq!(unquote("\""), "\"");
}
