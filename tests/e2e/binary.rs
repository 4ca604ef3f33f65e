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
    // The banner is printed right after the port is bound: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !process.log().contains("admin token (shown once") {
        assert!(tokio::time::Instant::now() < deadline, "{}", process.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn cli_manages_dns_providers_without_showing_secrets() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
    let process = DevProcess::spawn_on_free_port(&pebble, &data_dir, http01, "cli-dns.log")
        .await
        .unwrap();
    let grpc = process.grpc;
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let (write, _bundle) = organization(grpc, &admin, "dnscli").await;
    let secret = "webhook-hmac-secret-from-a-file-42";
    let secret_file = root.path().join("hmac.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let set_file = format!("hmac_secret={}", secret_file.display());

    // Usage errors: exit 2 from the argument parser, naming the argument.
    for arguments in [
        vec!["dns", "add", "hook", "--kind", "webhook", "--set", "url"],
        vec![
            "dns",
            "add",
            "hook",
            "--kind",
            "webhook",
            "--set-file",
            "hmac_secret=",
        ],
        vec!["dns", "add", "hook", "--kind", "nope"],
        vec!["cert", "request", "*.dnscli.test", "--challenge", "dns-01"],
    ] {
        let refused = cli(grpc, &write, &arguments);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{arguments:?}: {stderr}");
        let named = [
            "--set <KEY=VALUE>",
            "--set-file <KEY=PATH>",
            "--kind",
            "--dns",
        ];
        assert!(
            named.iter().any(|argument| stderr.contains(argument)),
            "{arguments:?}: {stderr}"
        );
    }
    let bad = cli(
        grpc,
        &write,
        &["dns", "add", "hook", "--kind", "webhook", "--set", "url"],
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("'--set <KEY=VALUE>'"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // A setting the server refuses: exit 1 with the setting named.
    let refused = cli(
        grpc,
        &write,
        &[
            "dns",
            "add",
            "hook",
            "--kind",
            "webhook",
            "--set-file",
            &set_file,
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("error: settings.url: is required"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let added = cli(
        grpc,
        &write,
        &[
            "dns",
            "add",
            "hook",
            "--kind",
            "webhook",
            "--set",
            "url=https://dns-hook.dnscli.test/acme",
            "--set-file",
            &set_file,
        ],
    );
    let added_out = String::from_utf8_lossy(&added.stdout).into_owned();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(added_out.contains("name:      hook"), "{added_out}");
    assert!(
        added_out.contains("url = https://dns-hook.dnscli.test/acme"),
        "{added_out}"
    );
    assert!(added_out.contains("hmac_secret = (secret"), "{added_out}");

    let listed = cli(grpc, &write, &["dns", "list"]);
    let listed_out = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.status.success());
    assert!(listed_out.starts_with("ID"), "{listed_out}");
    assert!(listed_out.contains("hook"), "{listed_out}");
    assert!(listed_out.contains("webhook"), "{listed_out}");

    let shown = cli(grpc, &write, &["dns", "show", "hook"]);
    let shown_out = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.status.success());
    assert!(shown_out.contains("hmac_secret = (secret"), "{shown_out}");
    let json = cli(grpc, &write, &["dns", "show", "hook", "--output", "json"]);
    let provider: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(provider["kind"], "webhook");
    assert_eq!(
        provider["settings"],
        serde_json::json!({ "url": "https://dns-hook.dnscli.test/acme" })
    );
    assert_eq!(
        provider["secret_settings"],
        serde_json::json!(["hmac_secret"])
    );
    for output in [&added, &listed, &shown, &json] {
        for stream in [&output.stdout, &output.stderr] {
            assert!(!String::from_utf8_lossy(stream).contains(secret));
        }
    }

    // A DNS-01 certificate names it; while it does, the provider stays.
    let requested = cli(
        grpc,
        &write,
        &[
            "cert",
            "request",
            "*.dnscli.test",
            "--dns",
            "hook",
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
    assert_eq!(certificate["challenge_type"], "dns-01");
    assert_eq!(certificate["dns_provider_id"], provider["id"]);
    let in_use = cli(grpc, &write, &["dns", "delete", "hook"]);
    assert_eq!(in_use.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&in_use.stderr).contains("active certificate"),
        "{}",
        String::from_utf8_lossy(&in_use.stderr)
    );
    let id = certificate["id"].as_str().unwrap();
    assert!(cli(grpc, &write, &["cert", "delete", id]).status.success());
    let deleted = cli(grpc, &write, &["dns", "delete", "hook"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout).trim(),
        "deleted hook"
    );
    let gone = cli(grpc, &write, &["dns", "show", "hook"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        !process.log().contains(secret),
        "the secret reached the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_creates_lists_and_revokes_tokens() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
    let process = DevProcess::spawn_on_free_port(&pebble, &data_dir, http01, "cli-token.log")
        .await
        .unwrap();
    let grpc = process.grpc;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !process.log().contains("admin token (shown once") {
        assert!(tokio::time::Instant::now() < deadline, "{}", process.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let (write, _bundle) = organization(grpc, &admin, "tokcli").await;

    let bad = cli(
        grpc,
        &admin,
        &[
            "token",
            "create",
            "--org",
            "tokcli",
            "--role",
            "read",
            "--expires-in",
            "90",
        ],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--expires-in") && stderr.contains("\"90\""),
        "{stderr}"
    );

    let created = cli(
        grpc,
        &admin,
        &[
            "token",
            "create",
            "--org",
            "tokcli",
            "--role",
            "read",
            "--expires-in",
            "90d",
            "--description",
            "backup job",
            "--output",
            "json",
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let bearer = created["token"].as_str().unwrap().to_owned();
    assert!(!created["expires_at"].as_str().unwrap().is_empty());
    assert!(cli(grpc, &bearer, &["cert", "list"]).status.success());

    let listed = cli(
        grpc,
        &admin,
        &["token", "list", "--org", "tokcli", "--output", "json"],
    );
    assert!(listed.status.success());
    let secret = bearer.rsplit('.').next().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(secret));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let tokens = listed.as_array().unwrap();
    // The write and bundle tokens of `organization`, and the new one.
    assert_eq!(tokens.len(), 3, "{listed}");
    let new = tokens
        .iter()
        .find(|token| token["id"] == id.as_str())
        .unwrap();
    assert_eq!(new["state"], "active");
    assert_eq!(new["role"], "read");
    assert_eq!(new["description"], "backup job");

    // An organization token cannot manage tokens.
    let denied = cli(grpc, &write, &["token", "list", "--org", "tokcli"]);
    assert!(!denied.status.success());

    let revoked = cli(grpc, &admin, &["token", "revoke", &id, "--org", "tokcli"]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(String::from_utf8_lossy(&revoked.stdout).contains(&id));
    let refused = cli(grpc, &bearer, &["cert", "list"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid or missing bearer token"));
    // Revoking again is harmless; an unknown id is not found.
    let again = cli(grpc, &admin, &["token", "revoke", &id, "--org", "tokcli"]);
    assert!(again.status.success());
    let unknown = cli(
        grpc,
        &admin,
        &["token", "revoke", "no-such-id", "--org", "tokcli"],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-id"));

    let table = cli(grpc, &admin, &["token", "list", "--org", "tokcli"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("STATE") && table.contains("revoked"),
        "{table}"
    );

    // The audit log shows the revocation: who, what, from where.
    let audit = cli(
        grpc,
        &admin,
        &[
            "audit",
            "--org",
            "tokcli",
            "--action",
            "api_token.",
            "--since",
            "1h",
            "--output",
            "json",
        ],
    );
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    let entries: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let entries = entries.as_array().unwrap();
    assert!(
        entries
            .iter()
            .all(|entry| entry["action"].as_str().unwrap().starts_with("api_token.")),
        "{entries:?}"
    );
    let admin_id = admin.trim().split('.').nth(1).unwrap();
    let revocation = entries
        .iter()
        .find(|entry| entry["action"] == "api_token.revoked" && entry["target_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no revocation of {id} in {entries:?}"));
    assert_eq!(revocation["actor"], admin_id);
    assert_eq!(revocation["organization"], "tokcli");
    assert_eq!(revocation["remote_addr"], "127.0.0.1");
    let limited = cli(grpc, &admin, &["audit", "--limit", "1", "--output", "json"]);
    let limited: serde_json::Value = serde_json::from_slice(&limited.stdout).unwrap();
    assert_eq!(limited.as_array().map(Vec::len), Some(1));
    let table = cli(grpc, &admin, &["audit", "--org", "tokcli"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("FROM") && table.contains("api_token.revoked"),
        "{table}"
    );
    let denied = cli(grpc, &write, &["audit"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("platform admin token"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
}

#[test]
fn bad_ca_settings_stop_the_start_before_anything_is_written() {
    for (flag, value, named) in [
        (
            "--rate-limit",
            "certificates-per-domain=3/1q",
            "--rate-limit",
        ),
        ("--rate-limit", "bogus=3/1h", "unknown budget \"bogus\""),
        (
            "--fallback-ca",
            "backup=http://ca.test/dir",
            "--fallback-ca",
        ),
        (
            "--fallback-ca-root",
            "nobody=/tmp/root.pem",
            "no CA is named \"nobody\"",
        ),
    ] {
        let parent = tempfile::tempdir().unwrap();
        let data_dir = parent.path().join("data");
        let output = std::process::Command::new(certfleet_e2e::certfleet_binary())
            .arg("dev")
            .arg("--data-dir")
            .arg(&data_dir)
            .args([flag, value])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} {value}: {stderr}");
        assert!(stderr.contains(named), "{flag} {value}: {stderr}");
        assert!(stderr.contains(value), "the value is named: {stderr}");
        assert!(!data_dir.exists(), "{flag} {value}: nothing written");
    }
}
