//! certfleet-agent for Traefik's file provider, without RabbitMQ. No
//! Traefik binary is available, so the generated dynamic configuration is
//! checked against Traefik's documented format for user-defined
//! certificates (<https://doc.traefik.io/traefik/https/tls/#user-defined>,
//! read by the file provider, <https://doc.traefik.io/traefik/providers/file/>):
//!
//! ```yaml
//! tls:
//!   certificates:
//!     - certFile: /path/to/domain.cert
//!       keyFile: /path/to/domain.key
//! ```
//!
//! With `--no-verify` the agent installs and reports, and the API records
//! the installation as done but not verified (no check time).
//! A renewal replaces the files; a revocation removes them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use certfleet_e2e::TestEnv;
use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_proto::v1 as pb;
use serde_norway::Value;
use tokio::time::Instant;

use crate::proxy_nginx::{
    agent_token_file, issued, renewed, same_serial, spawn_agent, wait_for_installation,
};

const NAMES: [&str; 2] = ["www.traefik-shop.test", "traefik-shop.test"];
const AGENT: &str = "web-1/traefik";

/// Top-level keys of a file provider's dynamic configuration.
const TOP_LEVEL: [&str; 4] = ["http", "tcp", "udp", "tls"];
/// Keys of its `tls` section.
const TLS_KEYS: [&str; 3] = ["certificates", "options", "stores"];
/// Keys of one `tls.certificates[]` entry.
const CERTIFICATE_KEYS: [&str; 3] = ["certFile", "keyFile", "stores"];

/// The files one configuration names, after checking it against the
/// documented schema: (certFile, keyFile).
fn check_schema(text: &str) -> (PathBuf, PathBuf) {
    let document: Value = serde_norway::from_str(text).unwrap();
    let top = document.as_mapping().expect("a mapping at the top");
    for key in top.keys() {
        let key = key.as_str().expect("string keys");
        assert!(TOP_LEVEL.contains(&key), "unknown top-level key {key}");
    }
    let tls = document["tls"].as_mapping().expect("tls: a mapping");
    for key in tls.keys() {
        let key = key.as_str().expect("string keys");
        assert!(TLS_KEYS.contains(&key), "unknown tls key {key}");
    }
    let certificates = document["tls"]["certificates"]
        .as_sequence()
        .expect("tls.certificates: a list");
    assert_eq!(certificates.len(), 1, "one certificate per file: {text}");
    let entry = certificates[0].as_mapping().expect("a mapping");
    for key in entry.keys() {
        let key = key.as_str().expect("string keys");
        assert!(CERTIFICATE_KEYS.contains(&key), "unknown key {key}");
    }
    let path = |key: &str| -> PathBuf {
        let text = certificates[0][key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: a string"));
        let path = PathBuf::from(text);
        assert!(path.is_absolute(), "{key} {text} is not absolute");
        assert!(path.is_file(), "{key} {text} does not exist");
        path
    };
    (path("certFile"), path("keyFile"))
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

/// Checks the files of one installed version: the key 0600 and the pair's,
/// the leaf the version's. Returns the configuration's (certFile, keyFile).
fn check_installed(
    config_file: &Path,
    certs_dir: &Path,
    id: &str,
    version: &pb::CertificateVersion,
    bundle: &pb::CertificateBundle,
) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(config_file).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let (cert_file, key_file) = check_schema(&text);
    for file in [&cert_file, &key_file] {
        assert!(
            file.starts_with(certs_dir.join(id)),
            "{} outside --certs-dir",
            file.display()
        );
    }
    assert_eq!(mode(&key_file), 0o600, "private key mode");
    let fullchain = std::fs::read_to_string(&cert_file).unwrap();
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(fullchain, bundle.fullchain_pem);
    assert_eq!(key, bundle.private_key_pem);
    let installed = certfleet_proxy::Bundle {
        certificate_id: id.to_owned(),
        organization_id: String::new(),
        version: version.version,
        names: NAMES.iter().map(|name| (*name).to_owned()).collect(),
        fullchain_pem: fullchain,
        key_pem: key.into(),
    };
    installed
        .validate()
        .unwrap_or_else(|error| panic!("the key does not match the certificate: {error}"));
    assert_eq!(
        installed.leaf_fingerprint().unwrap(),
        version.fingerprint_sha256.to_ascii_lowercase(),
        "the certificate file is not version {}",
        version.version
    );
    (cert_file, key_file)
}

async fn wait_until(
    what: &str,
    limit: Duration,
    log: impl Fn() -> String,
    done: impl Fn() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}:\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_file_provider_gets_the_documented_configuration() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, mut bundles) = env.organization("traefik-shop").await;
    let work = tempfile::tempdir().unwrap();
    let dynamic_dir = work.path().join("dynamic");
    let certs_dir = work.path().join("certs");
    let token_file = agent_token_file(env.grpc, &env.admin_token, work.path()).await;
    let mut agent = spawn_agent(
        env.grpc,
        &token_file,
        work.path(),
        "agent.log",
        &[
            "--target".to_owned(),
            "traefik".to_owned(),
            "--name".to_owned(),
            AGENT.to_owned(),
            "--traefik-dir".to_owned(),
            dynamic_dir.to_string_lossy().into_owned(),
            "--certs-dir".to_owned(),
            certs_dir.to_string_lossy().into_owned(),
            "--no-verify".to_owned(),
            "--reconcile-every".to_owned(),
            "1".to_owned(),
        ],
    );
    let agent_log = agent.log_path.clone();
    let log = move || std::fs::read_to_string(&agent_log).unwrap_or_default();

    let (id, v1) = issued(&mut client, &NAMES).await;
    let config_file = dynamic_dir.join(format!("certfleet-{id}.yml"));
    wait_until(
        "no configuration file for version 1",
        Duration::from_secs(30),
        &log,
        || {
            std::fs::read_to_string(&config_file).is_ok_and(|text| {
                text.starts_with(&format!(
                    "# written by certfleet: certificate {id} version 1\n"
                ))
            })
        },
    )
    .await;
    let bundle1 = certfleet_e2e::bundle(&mut bundles, &id).await.unwrap();
    assert_eq!(bundle1.version, 1);
    let (cert1, key1) = check_installed(&config_file, &certs_dir, &id, &v1, &bundle1);
    assert!(
        !cert1.starts_with(&dynamic_dir) && !key1.starts_with(&dynamic_dir),
        "certificate files inside the watched directory"
    );

    // Unchecked (--no-verify): installed, but not recorded as verified.
    let report = wait_for_installation(&mut client, &id, AGENT, 1, true, &log).await;
    assert_eq!(report.error, "", "{report:?}");
    assert_eq!(report.verified_at, 0, "{report:?}");
    assert_eq!(report.target, "traefik");
    assert!(
        same_serial(&report.serial, &v1.serial),
        "{report:?} vs {v1:?}"
    );

    // Renewal: the configuration names version 2's files, version 1's go.
    let v2 = renewed(&mut client, &id, 2).await;
    wait_until(
        "the configuration file still names version 1",
        Duration::from_secs(30),
        &log,
        || {
            std::fs::read_to_string(&config_file).is_ok_and(|text| {
                text.starts_with(&format!(
                    "# written by certfleet: certificate {id} version 2\n"
                ))
            })
        },
    )
    .await;
    let bundle2 = certfleet_e2e::bundle(&mut bundles, &id).await.unwrap();
    assert_eq!(bundle2.version, 2);
    let (cert2, key2) = check_installed(&config_file, &certs_dir, &id, &v2, &bundle2);
    assert_ne!(cert1, cert2);
    assert!(
        !cert1.exists() && !key1.exists(),
        "version 1's files remain"
    );
    let report = wait_for_installation(&mut client, &id, AGENT, 2, true, &log).await;
    assert_eq!(report.verified_at, 0, "{report:?}");

    // Revocation: the configuration and the files go.
    client
        .revoke_certificate(pb::RevokeCertificateRequest {
            id: id.clone(),
            reason: pb::RevocationReason::Superseded as i32,
        })
        .await
        .unwrap();
    wait_until(
        "files of the revoked certificate remain",
        Duration::from_secs(30),
        &log,
        || !config_file.exists() && !cert2.exists() && !key2.exists(),
    )
    .await;
    wait_until(
        "the revoked certificate's directory remains",
        Duration::from_secs(5),
        &log,
        || !certs_dir.join(&id).exists(),
    )
    .await;
    let left: Vec<_> = std::fs::read_dir(&dynamic_dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert!(left.is_empty(), "left in the watched directory: {left:?}");

    assert!(
        agent.exited().unwrap().is_none(),
        "agent exited:\n{}",
        log()
    );
    assert!(
        !log().contains("PRIVATE KEY"),
        "key material in the agent's log"
    );
    assert!(
        agent.terminate().success(),
        "agent stops cleanly:\n{}",
        log()
    );
    env.stop().await;
}
