//! The Caddy target against a real Caddy: load through the admin API,
//! replace, remove, and an admin API that is down.

mod common;

use std::time::Duration;

use certfleet_proxy::{CaddyTarget, Installed, ProxyError, Target as _};
use certfleet_testkit::Caddy;
use common::{bundle, mode, wait_not_served, wait_served};

const ID: &str = "0190f1b2-7c3e-7aa0-9b1e-1f2e3d4c5b6a";
const OTHER_ID: &str = "0190f1b2-7c3e-7aa0-9b1e-000000000002";
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_replace_remove_and_admin_down() {
    let mut caddy = Caddy::start().await.expect("caddy starts");
    let address = caddy.https_address();
    let certs = tempfile::tempdir().expect("tempdir");
    let target = CaddyTarget::new(caddy.admin_url(), certs.path());
    assert!(target.installed().await.expect("installed").is_empty());

    // v1: the tls app does not exist yet.
    let v1 = bundle(ID, 1, &["a.test"]);
    target
        .install(&v1)
        .await
        .unwrap_or_else(|error| panic!("install v1: {error}\n{}", caddy.logs()));
    let v1_fingerprint = v1.leaf_fingerprint().expect("fingerprint");
    let served = wait_served(address, "a.test", &v1_fingerprint, WAIT).await;
    assert_eq!(served.serial, v1.leaf_serial().expect("serial"));
    let cert_dir = certs.path().join(ID);
    assert_eq!(mode(&cert_dir.join("privkey-v1.pem")), 0o600);

    // A second certificate appends to the list.
    let other = bundle(OTHER_ID, 7, &["*.b.test"]);
    target.install(&other).await.expect("install other");
    wait_served(
        address,
        "*.b.test",
        &other.leaf_fingerprint().expect("fingerprint"),
        WAIT,
    )
    .await;
    assert_eq!(
        target.installed().await.expect("installed"),
        [
            Installed {
                certificate_id: OTHER_ID.to_owned(),
                version: 7
            },
            Installed {
                certificate_id: ID.to_owned(),
                version: 1
            },
        ]
    );

    // v2 replaces the entry in place.
    let v2 = bundle(ID, 2, &["a.test"]);
    target.install(&v2).await.expect("install v2");
    let v2_fingerprint = v2.leaf_fingerprint().expect("fingerprint");
    wait_served(address, "a.test", &v2_fingerprint, WAIT).await;
    assert!(!cert_dir.join("privkey-v1.pem").exists(), "old key removed");
    assert!(
        !cert_dir.join("fullchain-v1.pem").exists(),
        "old certificate removed"
    );
    assert_eq!(mode(&cert_dir.join("privkey-v2.pem")), 0o600);
    let installed = target.installed().await.expect("installed");
    assert!(
        installed.contains(&Installed {
            certificate_id: ID.to_owned(),
            version: 2
        }),
        "{installed:?}"
    );
    assert_eq!(installed.len(), 2, "{installed:?}");

    // The key never goes over the API: the config names files only.
    let config = config_text(&caddy).await;
    assert!(!config.contains("PRIVATE KEY"), "{config}");

    // Remove.
    target.remove(ID).await.expect("remove");
    wait_not_served(address, "a.test", &v2_fingerprint, WAIT).await;
    assert!(!cert_dir.exists(), "files gone");
    target.remove(ID).await.expect("removing again is fine");
    assert_eq!(
        target.installed().await.expect("installed"),
        [Installed {
            certificate_id: OTHER_ID.to_owned(),
            version: 7
        }]
    );

    // Admin API down: retryable, names the URL.
    caddy.kill().await.expect("stop caddy");
    let v3 = bundle(ID, 3, &["a.test"]);
    let error = target.install(&v3).await.expect_err("admin API is down");
    assert!(error.is_retryable(), "{error:?}");
    assert!(
        matches!(error, ProxyError::AdminUnreachable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&caddy.admin_url()), "{error}");
    assert!(
        !cert_dir.join("privkey-v3.pem").exists(),
        "unused files removed"
    );
}

async fn config_text(caddy: &Caddy) -> String {
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("{}/config/", caddy.admin_url()))
        .output()
        .await
        .expect("curl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
