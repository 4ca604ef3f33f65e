//! Settings checks, zone checks and the response-code mapping of the rfc2136
//! provider (the updates themselves are tested against BIND in `tests/`).

use std::collections::BTreeMap;

use super::*;
use crate::DnsPolicy;

const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=";

fn parse(pairs: &[(&str, &str)]) -> Result<ProviderConfig, SettingError> {
    let values: BTreeMap<String, String> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    ProviderConfig::parse(ProviderKind::Rfc2136, values, &DnsPolicy::default())
}

fn error(pairs: &[(&str, &str)]) -> SettingError {
    parse(pairs).expect_err("the settings are wrong")
}

#[test]
fn defaults_port_ttl_and_algorithm() {
    let config = parse(&[
        ("server", "192.0.2.53"),
        ("tsig_key", "Update-Key."),
        ("tsig_secret", SECRET),
    ])
    .expect("valid settings");
    let provider = Rfc2136::from_config(&config).expect("valid settings");
    assert_eq!(provider.server, "192.0.2.53:53".parse().expect("address"));
    assert_eq!(provider.ttl, 60);
    let signer = provider.signer.as_ref().expect("signed");
    assert_eq!(signer.signer_name().to_string(), "update-key.");
    assert_eq!(*signer.algorithm(), TsigAlgorithm::HmacSha256);
    let shown = format!("{provider:?}");
    assert!(
        !shown.contains(SECRET) && shown.contains("update-key"),
        "{shown}"
    );
}

#[test]
fn accepts_port_algorithm_ttl_and_no_tsig() {
    let config = parse(&[
        ("server", "[2001:db8::53]:5353"),
        ("tsig_key", "k"),
        ("tsig_secret", SECRET),
        ("tsig_algorithm", "HMAC-SHA512"),
        ("ttl", "300"),
    ])
    .expect("valid settings");
    let provider = Rfc2136::from_config(&config).expect("valid settings");
    assert_eq!(provider.server.port(), 5353);
    assert_eq!(provider.ttl, 300);
    assert_eq!(
        provider.signer.as_ref().map(|s| s.algorithm().clone()),
        Some(TsigAlgorithm::HmacSha512)
    );
    let unsigned = parse(&[("server", "127.0.0.1")]).expect("valid settings");
    assert!(
        Rfc2136::from_config(&unsigned)
            .expect("valid")
            .signer
            .is_none()
    );
}

#[test]
fn bad_settings_name_the_field() {
    assert_eq!(error(&[]).field, "settings.server");
    assert_eq!(
        error(&[("server", "ns1.example.com")]).field,
        "settings.server"
    );
    let algorithm = error(&[
        ("server", "127.0.0.1"),
        ("tsig_key", "k"),
        ("tsig_secret", SECRET),
        ("tsig_algorithm", "hmac-md5"),
    ]);
    assert_eq!(algorithm.field, "settings.tsig_algorithm");
    assert!(
        algorithm
            .message
            .contains("hmac-sha256, hmac-sha384, hmac-sha512"),
        "{algorithm}"
    );
    assert_eq!(
        error(&[("server", "127.0.0.1"), ("ttl", "0")]).field,
        "settings.ttl"
    );
    assert_eq!(
        error(&[("server", "127.0.0.1"), ("ttl", "86401")]).field,
        "settings.ttl"
    );
    assert_eq!(
        error(&[("server", "127.0.0.1"), ("tsig_key", "k")]).field,
        "settings.tsig_secret"
    );
    assert_eq!(
        error(&[("server", "127.0.0.1"), ("tsig_secret", SECRET)]).field,
        "settings.tsig_key"
    );
    assert_eq!(
        error(&[
            ("server", "127.0.0.1"),
            ("tsig_key", "bad key"),
            ("tsig_secret", SECRET)
        ])
        .field,
        "settings.tsig_key"
    );
}

#[test]
fn a_secret_that_is_not_base64_is_not_echoed() {
    let wrong = error(&[
        ("server", "127.0.0.1"),
        ("tsig_key", "k"),
        ("tsig_secret", "not*base64!"),
    ]);
    assert_eq!(wrong.field, "settings.tsig_secret");
    assert!(wrong.message.contains("is not base64"), "{wrong}");
    assert!(!wrong.to_string().contains("not*base64!"), "{wrong}");
}

#[test]
fn the_zone_must_be_known_and_hold_the_name() {
    let config = parse(&[("server", "127.0.0.1")]).expect("valid settings");
    let provider = Rfc2136::from_config(&config).expect("valid settings");
    let mut record = TxtRecord {
        fqdn: "_acme-challenge.a.example.com".to_owned(),
        zone: None,
        value: "v".to_owned(),
    };
    assert!(matches!(
        provider.names(&record),
        Err(DnsError::NoZone { .. })
    ));
    record.zone = Some("example.org".to_owned());
    let outside = provider.names(&record).expect_err("outside the zone");
    assert!(
        outside
            .to_string()
            .contains("not inside the zone example.org"),
        "{outside}"
    );
    record.zone = Some("example.com".to_owned());
    let (fqdn, zone) = provider.names(&record).expect("inside the zone");
    assert_eq!(
        (fqdn.to_string().as_str(), zone.to_string().as_str()),
        ("_acme-challenge.a.example.com.", "example.com.")
    );
}

#[test]
fn response_codes_map_to_refused_or_unavailable() {
    assert!(answer_to_result(ResponseCode::NoError, "a.test").is_ok());
    let servfail = answer_to_result(ResponseCode::ServFail, "a.test").expect_err("fails");
    assert!(servfail.is_transient(), "{servfail}");
    for (code, words) in [
        (ResponseCode::Refused, "REFUSED"),
        (ResponseCode::NotAuth, "NOTAUTH"),
        (ResponseCode::NotZone, "NOTZONE"),
        (ResponseCode::BADSIG, "TSIG key or secret"),
        (ResponseCode::BADKEY, "TSIG key or secret"),
        (ResponseCode::YXDomain, "a condition of the update"),
    ] {
        let refused = answer_to_result(code, "a.test").expect_err("refused");
        assert!(matches!(refused, DnsError::Refused { .. }), "{refused}");
        assert!(refused.to_string().contains(words), "{refused}");
    }
}
