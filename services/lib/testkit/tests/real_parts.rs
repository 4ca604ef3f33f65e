//! The testkit against the real programs: Pebble, PostgreSQL, grpcurl.

use std::net::Ipv4Addr;

use certfleet_testkit::{Pebble, PebbleOptions, TestDatabase, free_port, grpcurl_path};

#[tokio::test]
async fn pebble_serves_directory_and_management_api() {
    let pebble = Pebble::start(PebbleOptions::default())
        .await
        .expect("pebble starts");

    let directory = tokio::process::Command::new("curl")
        .args(["-sSf", "--cacert"])
        .arg(pebble.listener_ca_path())
        .arg(pebble.directory_url())
        .output()
        .await
        .expect("curl runs");
    assert!(directory.status.success(), "{}", pebble.logs());
    let directory: serde_json::Value =
        serde_json::from_slice(&directory.stdout).expect("directory is json");
    assert!(directory["newOrder"].is_string(), "{directory}");

    let root = pebble.root_pem().await.expect("root");
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
    let intermediate = pebble.intermediate_pem().await.expect("intermediate");
    assert!(intermediate.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_ne!(root, intermediate);

    let unknown = pebble
        .cert_status("0123abcd")
        .await
        .expect_err("no such serial");
    assert!(unknown.to_string().contains("no certificate"), "{unknown}");

    pebble
        .add_a_record("elsewhere.certfleet.test", Ipv4Addr::new(127, 0, 0, 2))
        .await
        .expect("add-a");
    assert_ne!(pebble.http01_port(), 0);
}

#[tokio::test]
async fn pebble_uses_the_requested_http01_port() {
    let port = free_port();
    let options = PebbleOptions {
        http01_port: port,
        ..PebbleOptions::default()
    };
    let pebble = Pebble::start(options).await.expect("pebble starts");
    assert_eq!(pebble.http01_port(), port);
    let config = std::fs::read_to_string(pebble.state_dir().join("pebble-config.json"))
        .expect("config is readable");
    assert!(config.contains(&format!("\"httpPort\":{port}")), "{config}");
}

#[tokio::test]
async fn pebble_rejects_impossible_percentages() {
    let options = PebbleOptions {
        nonce_reject_percent: 101,
        ..PebbleOptions::default()
    };
    assert!(Pebble::start(options).await.is_err());
}

fn database_exists(name: &str) -> bool {
    let output = std::process::Command::new("psql")
        .args([
            "postgres://postgres@127.0.0.1:5432/postgres",
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--command",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        ])
        .output()
        .expect("psql runs");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).trim() == "1"
}

#[tokio::test]
async fn database_is_created_and_dropped() {
    let database = TestDatabase::create().await.expect("database is created");
    let name = database.name().to_owned();
    assert!(name.starts_with("certfleet_test_"));
    assert!(database.url().ends_with(&format!("/{name}")));
    assert!(database_exists(&name));

    let connects = tokio::process::Command::new("psql")
        .args([&database.url(), "--no-psqlrc", "--command", "SELECT 1"])
        .output()
        .await
        .expect("psql runs");
    assert!(connects.status.success());

    database.drop_database().await.expect("database is dropped");
    assert!(!database_exists(&name));
}

#[tokio::test]
async fn database_is_dropped_when_dropped() {
    let database = TestDatabase::create().await.expect("database is created");
    let name = database.name().to_owned();
    assert!(database_exists(&name));
    drop(database);
    assert!(!database_exists(&name));
}

#[test]
fn grpcurl_is_found() {
    let path = grpcurl_path().expect("grpcurl is installed");
    let output = std::process::Command::new(path)
        .arg("-version")
        .output()
        .expect("grpcurl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("grpcurl"), "{text}");
}
