//! certfleet-agent with a real Caddy driven through its admin API, without
//! RabbitMQ (the periodic reconcile alone): a certificate issued before the
//! agent exists is installed when it starts (a fresh host), Caddy serves it
//! (a TLS handshake sees the version's fingerprint) and the installation is
//! reported verified; a renewal is served and reported; a deletion removes
//! the `load_files` entry and its files. Only file paths go over the admin
//! API: Caddy's configuration never holds a private key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use certfleet_e2e::TestEnv;
use certfleet_e2e::certfleet_testkit::{Caddy, PebbleOptions};
use certfleet_proto::v1 as pb;
use tokio::time::Instant;

use crate::proxy_nginx::{
    agent_token_file, issued, openssl_serial, renewed, same_serial, spawn_agent,
    wait_for_installation,
};

const NAMES: [&str; 2] = ["www.caddy-shop.test", "caddy-shop.test"];
const AGENT: &str = "web-1/caddy";

/// `GET url` with curl: (status, body).
fn http_get(url: &str) -> (u16, String) {
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--write-out",
            "\n%{http_code}",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

/// The fingerprint Caddy serves for `name`, or the handshake's error.
async fn served(address: SocketAddr, name: &str) -> Result<certfleet_proxy::Served, String> {
    certfleet_proxy::verify_served(address, name, Duration::from_secs(5))
        .await
        .map_err(|error| error.to_string())
}

fn key_mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_gets_every_version_through_its_admin_api() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, _bundles) = env.organization("caddy-shop").await;

    // Issued before the agent runs: its first reconcile installs it.
    let (id, v1) = issued(&mut client, &NAMES).await;

    let mut caddy = Caddy::start().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let certs_dir = work.path().join("certs");
    let token_file = agent_token_file(env.grpc, &env.admin_token, work.path()).await;
    let mut agent = spawn_agent(
        env.grpc,
        &token_file,
        work.path(),
        "agent.log",
        &[
            "--target".to_owned(),
            "caddy".to_owned(),
            "--name".to_owned(),
            AGENT.to_owned(),
            "--caddy-admin".to_owned(),
            caddy.admin_url(),
            "--certs-dir".to_owned(),
            certs_dir.to_string_lossy().into_owned(),
            "--verify-address".to_owned(),
            caddy.https_address().to_string(),
            "--reconcile-every".to_owned(),
            "1".to_owned(),
        ],
    );
    let agent_log = agent.log_path.clone();
    let caddy_state = caddy.state_dir().to_owned();
    let log = move || {
        format!(
            "{}\n--- caddy.log\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default(),
            std::fs::read_to_string(caddy_state.join("caddy.log")).unwrap_or_default()
        )
    };

    // Installed at start, served, reported verified.
    let report = wait_for_installation(&mut client, &id, AGENT, 1, true, &log).await;
    assert!(
        same_serial(&report.serial, &v1.serial),
        "{report:?} vs {}",
        v1.serial
    );
    assert!(report.verified_at > 0, "{report:?}");
    assert_eq!(report.target, "caddy");
    // `certfleet cert show` lists the agent's report.
    let write = env.write_token("caddy-shop").await;
    let shown = std::process::Command::new(certfleet_e2e::certfleet_binary())
        .args(["cert", "show", &id])
        .env("CERTFLEET_ENDPOINT", format!("http://{}", env.grpc))
        .env("CERTFLEET_TOKEN", &write)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("installed:   caddy on ") && shown.contains("version 1: serving serial"),
        "{shown}"
    );
    for name in NAMES {
        let seen = served(caddy.https_address(), name).await.unwrap();
        assert_eq!(
            seen.fingerprint,
            v1.fingerprint_sha256.to_ascii_lowercase(),
            "caddy serves another certificate for {name}"
        );
        assert!(same_serial(&seen.serial, &v1.serial), "{seen:?} vs {v1:?}");
        assert!(
            same_serial(&openssl_serial(caddy.https_address(), name), &v1.serial),
            "openssl sees another serial for {name}"
        );
    }
    let object_url = format!("{}/id/certfleet-{id}", caddy.admin_url());
    let (status, entry) = http_get(&object_url);
    assert_eq!(status, 200, "{entry}");
    let entry: serde_json::Value = serde_json::from_str(&entry).unwrap();
    let cert_file = certs_dir.join(&id).join("fullchain-v1.pem");
    let key_file = certs_dir.join(&id).join("privkey-v1.pem");
    assert_eq!(
        entry["certificate"].as_str(),
        Some(cert_file.to_str().unwrap()),
        "{entry}"
    );
    assert_eq!(
        entry["key"].as_str(),
        Some(key_file.to_str().unwrap()),
        "{entry}"
    );
    assert_eq!(key_mode(&key_file), 0o600, "private key mode");
    let (status, config) = http_get(&format!("{}/config/", caddy.admin_url()));
    assert_eq!(status, 200, "{config}");
    assert!(config.contains(&format!("certfleet-{id}")), "{config}");
    assert!(
        !config.contains("PRIVATE KEY"),
        "a private key in Caddy's configuration"
    );

    // Renewal: version 2 served and reported, version 1's files gone.
    let v2 = renewed(&mut client, &id, 2).await;
    let report = wait_for_installation(&mut client, &id, AGENT, 2, true, &log).await;
    assert!(
        same_serial(&report.serial, &v2.serial),
        "{report:?} vs {}",
        v2.serial
    );
    for name in NAMES {
        let seen = served(caddy.https_address(), name).await.unwrap();
        assert_eq!(
            seen.fingerprint,
            v2.fingerprint_sha256.to_ascii_lowercase(),
            "caddy serves another certificate for {name} after the renewal:\n{}",
            log()
        );
    }
    assert!(!cert_file.exists() && !key_file.exists(), "v1 files remain");
    assert!(certs_dir.join(&id).join("privkey-v2.pem").exists());
    let (_, config) = http_get(&format!("{}/config/", caddy.admin_url()));
    assert!(!config.contains("PRIVATE KEY"));

    // Caddy's admin API down during a renewal: the failure is reported
    // (naming the API) and retried; Caddy back (having forgotten everything
    // it was given), the agent installs the new version and it is served.
    caddy.kill().await.unwrap();
    let v3 = renewed(&mut client, &id, 3).await;
    let failed = wait_for_installation(&mut client, &id, AGENT, 3, false, &log).await;
    assert!(
        failed.error.contains(&caddy.admin_url()),
        "the report names the admin API: {failed:?}"
    );
    caddy.restart().await.unwrap();
    let report = wait_for_installation(&mut client, &id, AGENT, 3, true, &log).await;
    assert!(same_serial(&report.serial, &v3.serial), "{report:?}");
    let seen = served(caddy.https_address(), NAMES[0]).await.unwrap();
    assert_eq!(seen.fingerprint, v3.fingerprint_sha256.to_ascii_lowercase());

    // Deletion: the entry and the files go, Caddy stops serving it.
    client
        .delete_certificate(pb::DeleteCertificateRequest { id: id.clone() })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(&object_url);
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GET {object_url} still answers {status} {body}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while certs_dir.join(&id).exists() {
        assert!(
            Instant::now() < deadline,
            "files of the deleted certificate remain: {:?}\n{}",
            std::fs::read_dir(certs_dir.join(&id))
                .map(|entries| entries.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = served(caddy.https_address(), NAMES[0]).await;
        if !matches!(&seen, Ok(seen) if seen.fingerprint == v2.fingerprint_sha256.to_ascii_lowercase())
        {
            eprintln!("after the deletion caddy answers {}: {seen:?}", NAMES[0]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caddy still serves the deleted certificate:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, config) = http_get(&format!("{}/config/", caddy.admin_url()));
    assert!(!config.contains(&format!("certfleet-{id}")), "{config}");
    assert!(!config.contains("PRIVATE KEY"));

    assert!(
        agent.exited().unwrap().is_none(),
        "agent exited:\n{}",
        log()
    );
    let agent_text = agent.log();
    assert!(
        !agent_text.contains("PRIVATE KEY"),
        "no key material in the agent's log"
    );
    assert!(
        agent.terminate().success(),
        "agent stops cleanly:\n{}",
        log()
    );
    env.stop().await;
}
