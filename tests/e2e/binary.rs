//! The CLI against a running certfleet: bad input exits non-zero with the
//! server's message; download writes the files with the right modes.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions};
use certfleet_e2e::{DevProcess, certfleet_binary, organization};

fn cli(grpc: SocketAddr, token: &str, arguments: &[&str]) -> std::process::Output {
    std::process::Command::new(certfleet_binary())
        .args(arguments)
        .env("CERTFLEET_ENDPOINT", format!("http://{grpc}"))
        .env("CERTFLEET_TOKEN", token)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_requests_downloads_and_reports_bad_input() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
    let process = DevProcess::spawn_on_free_port(&pebble, &data_dir, http01, "cli.log")
        .await
        .unwrap();
    let grpc = process.grpc;
    let admin_path = data_dir.join("admin-token");
    assert_eq!(
        std::fs::metadata(&admin_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        process.log().contains("admin token (shown once"),
        "{}",
        process.log()
    );
    let admin = std::fs::read_to_string(&admin_path).unwrap();
    let (write, bundle) = organization(grpc, &admin, "cli").await;

    let bad = cli(
        grpc,
        &write,
        &["cert", "request", "ok.cli.test", "exa mple.com"],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains(r#"names[1]: "exa mple.com" is not a valid DNS name"#),
        "{stderr}"
    );
    let wildcard = cli(grpc, &write, &["cert", "request", "*.cli.test"]);
    assert!(!wildcard.status.success());
    assert!(String::from_utf8_lossy(&wildcard.stderr).contains("DNS-01"));

    let requested = cli(
        grpc,
        &write,
        &[
            "cert",
            "request",
            "ok.cli.test",
            "www.cli.test",
            "--wait",
            "--timeout",
            "60",
            "--output",
            "json",
        ],
    );
    assert!(
        requested.status.success(),
        "{}",
        String::from_utf8_lossy(&requested.stderr)
    );
    let certificate: serde_json::Value = serde_json::from_slice(&requested.stdout).unwrap();
    assert_eq!(certificate["status"], "valid");
    assert_eq!(
        certificate["names"],
        serde_json::json!(["ok.cli.test", "www.cli.test"])
    );
    let id = certificate["id"].as_str().unwrap().to_owned();
    assert!(
        !certificate["current"]["serial"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    let again = cli(
        grpc,
        &write,
        &["cert", "request", "www.cli.test", "ok.cli.test"],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains(&id),
        "ALREADY_EXISTS names the existing id"
    );

    let out = root.path().join("download");
    let denied = cli(
        grpc,
        &write,
        &["cert", "download", &id, "--out", out.to_str().unwrap()],
    );
    assert!(!denied.status.success(), "a write token cannot read keys");
    let downloaded = cli(
        grpc,
        &bundle,
        &["cert", "download", &id, "--out", out.to_str().unwrap()],
    );
    assert!(
        downloaded.status.success(),
        "{}",
        String::from_utf8_lossy(&downloaded.stderr)
    );
    for (file, mode) in [
        ("cert.pem", 0o644),
        ("chain.pem", 0o644),
        ("fullchain.pem", 0o644),
        ("privkey.pem", 0o600),
    ] {
        let metadata = std::fs::metadata(out.join(file)).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, mode, "{file}");
        assert!(metadata.len() > 100, "{file}");
    }
    let key = std::fs::read_to_string(out.join("privkey.pem")).unwrap();
    let leaf = std::fs::read_to_string(out.join("cert.pem")).unwrap();
    assert_eq!(
        certfleet_e2e::public_key_of(&key),
        certfleet_e2e::leaf_facts(&leaf).public_key_der
    );

    let listed = cli(grpc, &write, &["cert", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    let unknown = cli(
        grpc,
        &write,
        &["cert", "show", "01900000-0000-7000-8000-000000000000"],
    );
    assert!(!unknown.status.success());
    tokio::time::sleep(Duration::from_millis(10)).await;
}
