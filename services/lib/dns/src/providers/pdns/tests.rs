//! Settings checks and the pure helpers of the PowerDNS provider (the API
//! calls are tested against PowerDNS in `tests/`).

use std::collections::BTreeMap;

use super::*;
use crate::DnsPolicy;

fn parse(pairs: &[(&str, &str)]) -> Result<ProviderConfig, SettingError> {
    let values: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    ProviderConfig::parse(ProviderKind::Pdns, values, &DnsPolicy::default())
}

fn error(pairs: &[(&str, &str)]) -> SettingError {
    parse(pairs).expect_err("the settings are wrong")
}

#[test]
fn defaults_server_id_and_ttl() {
    let config = parse(&[("api_url", "http://127.0.0.1:8081/"), ("api_key", "k3y")])
        .expect("valid settings");
    let provider = PowerDns::from_config(&config).expect("valid settings");
    assert_eq!(provider.api_url, "http://127.0.0.1:8081");
    assert_eq!(provider.server_id, "localhost");
    assert_eq!(provider.ttl, 60);
    assert_eq!(
        provider.zones_url(),
        "http://127.0.0.1:8081/api/v1/servers/localhost/zones"
    );
    assert!(!format!("{provider:?}").contains("k3y"));
}

#[test]
fn bad_settings_name_the_field() {
    assert_eq!(error(&[("api_key", "k")]).field, "settings.api_url");
    assert_eq!(
        error(&[("api_url", "127.0.0.1:8081"), ("api_key", "k")]).field,
        "settings.api_url"
    );
    assert_eq!(
        error(&[("api_url", "http://127.0.0.1:8081")]).field,
        "settings.api_key"
    );
    let key = error(&[("api_url", "http://h"), ("api_key", "a\nb")]);
    assert_eq!(key.field, "settings.api_key");
    assert!(!key.message.contains("a\nb"), "{key}");
    let server = error(&[
        ("api_url", "http://h"),
        ("api_key", "k"),
        ("server_id", "a/b"),
    ]);
    assert_eq!(server.field, "settings.server_id");
    assert_eq!(
        error(&[("api_url", "http://h"), ("api_key", "k"), ("ttl", "0")]).field,
        "settings.ttl"
    );
}

#[test]
fn names_fall_in_their_zone_only() {
    assert!(in_zone("_acme-challenge.example.com", "example.com"));
    assert!(in_zone("example.com", "example.com"));
    assert!(!in_zone("_acme-challenge.badexample.com", "example.com"));
    assert!(!in_zone("example.org", "example.com"));
}

#[test]
fn txt_content_is_quoted_and_read_back() {
    assert_eq!(quote("abc"), "\"abc\"");
    assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(txt_value(&quote("a\"b\\c")), "a\"b\\c");
    assert_eq!(txt_value(r#""ab" "cd""#), "abcd");
}

#[test]
fn api_errors_are_refused_or_unavailable() {
    let answer = |status: u16, body: &'static str| HttpAnswer {
        status: http::StatusCode::from_u16(status).expect("status"),
        body: Bytes::from_static(body.as_bytes()),
    };
    let unauthorized = api_error(&answer(401, "Unauthorized"));
    assert!(
        matches!(unauthorized, DnsError::Refused { .. }),
        "{unauthorized}"
    );
    assert!(
        unauthorized
            .to_string()
            .contains("API key was not accepted"),
        "{unauthorized}"
    );
    let invalid = api_error(&answer(
        422,
        r#"{"error": "RRset x. IN TXT: Name is out of zone"}"#,
    ));
    assert!(
        invalid.to_string().contains("Name is out of zone"),
        "{invalid}"
    );
    assert!(matches!(invalid, DnsError::Refused { .. }));
    let failed = api_error(&answer(500, r#"{"error": "database locked"}"#));
    assert!(failed.is_transient(), "{failed}");
}

#[test]
fn only_dns_name_characters_go_into_urls() {
    assert!(check_name("_acme-challenge.example.com").is_ok());
    assert!(check_name("a b").is_err());
    assert!(check_name("x&rrset_type=A").is_err());
}

#[tokio::test]
async fn a_given_zone_is_used_when_it_holds_the_name() {
    let config = parse(&[
        ("api_url", "http://127.0.0.1:9"),
        ("api_key", "k"),
        ("zone", "example.com"),
    ])
    .expect("valid settings");
    let provider = PowerDns::from_config(&config).expect("valid settings");
    let mut record = TxtRecord {
        fqdn: "_acme-challenge.www.example.com".to_owned(),
        zone: None,
        value: "v".to_owned(),
    };
    let zone = provider.zone_of(&record).await.expect("configured zone");
    assert_eq!(
        zone,
        Zone {
            name: "example.com".to_owned(),
            id: "example.com.".to_owned()
        }
    );
    record.zone = Some("example.org".to_owned());
    let outside = provider
        .zone_of(&record)
        .await
        .expect_err("outside the zone");
    assert!(matches!(outside, DnsError::NoZone { .. }), "{outside}");
}
