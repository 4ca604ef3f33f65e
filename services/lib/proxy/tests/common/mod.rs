//! Certificates for the proxy tests: a fresh self-signed key and
//! certificate per version, as rcgen makes them.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use certfleet_proxy::{Bundle, Served, verify_served};

pub const ORGANIZATION: &str = "0190f1b2-0000-7000-8000-000000000001";

pub fn bundle(certificate_id: &str, version: u32, names: &[&str]) -> Bundle {
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names.clone()).expect("rcgen certificate");
    Bundle {
        certificate_id: certificate_id.to_owned(),
        organization_id: ORGANIZATION.to_owned(),
        version,
        names,
        fullchain_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem().into(),
    }
}

/// Consecutive answers that count as settled: during a graceful reload old
/// workers may still take a connection or two.
const SETTLED: usize = 5;

/// Handshakes until the server serves `fingerprint` for `name` several times
/// in a row (a reload is asynchronous); panics with the last answer after
/// `within`.
pub async fn wait_served(
    address: SocketAddr,
    name: &str,
    fingerprint: &str,
    within: Duration,
) -> Served {
    let deadline = Instant::now() + within;
    let mut in_a_row = 0;
    loop {
        let answer = verify_served(address, name, Duration::from_secs(2)).await;
        match &answer {
            Ok(served) if served.fingerprint == fingerprint => {
                in_a_row += 1;
                if in_a_row >= SETTLED {
                    return served.clone();
                }
                continue;
            }
            _ => in_a_row = 0,
        }
        assert!(
            Instant::now() < deadline,
            "{address} did not serve {fingerprint} for {name} within {within:?}: last {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Handshakes until the server no longer serves `fingerprint` for `name`
/// several times in a row (a failed handshake counts as not serving it).
pub async fn wait_not_served(address: SocketAddr, name: &str, fingerprint: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let mut in_a_row = 0;
    loop {
        match verify_served(address, name, Duration::from_secs(2)).await {
            Ok(served) if served.fingerprint == fingerprint => in_a_row = 0,
            _ => {
                in_a_row += 1;
                if in_a_row >= SETTLED {
                    return;
                }
                continue;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{address} still serves {fingerprint} for {name} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("metadata of {}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}
