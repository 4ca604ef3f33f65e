//! The nginx target against a real nginx: install, replace under load,
//! a refused configuration rolled back, remove.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use certfleet_proxy::{Installed, NginxTarget, ProxyError, Target as _, verify_served};
use certfleet_testkit::Nginx;
use common::{bundle, mode, wait_not_served, wait_served};

const ID: &str = "0190f1b2-7c3e-7aa0-9b1e-1f2e3d4c5b6a";
const WILDCARD_ID: &str = "0190f1b2-7c3e-7aa0-9b1e-00000000000w";
const WAIT: Duration = Duration::from_secs(10);

fn target(nginx: &Nginx) -> NginxTarget {
    NginxTarget::new(nginx.certfleet_dir(), nginx.program())
        .with_nginx_args(nginx.args())
        .with_listen(vec![nginx.listen()])
}

fn files(nginx: &Nginx, id: &str) -> Vec<PathBuf> {
    let dir = nginx.certfleet_dir();
    let cert_dir = dir.join("certs").join(id);
    vec![
        cert_dir.join("fullchain.pem"),
        cert_dir.join("privkey.pem"),
        cert_dir.join("ssl.conf"),
        cert_dir.join("version"),
        dir.join("servers").join(format!("{id}.conf")),
    ]
}

fn contents(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths
        .iter()
        .map(|path| {
            std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_replace_reject_and_remove() {
    let nginx = Nginx::start().await.expect("nginx starts");
    let address = nginx.address();
    let target = target(&nginx);
    let default_served = verify_served(address, "a.test", WAIT)
        .await
        .expect("default server");

    // v1
    let v1 = bundle(ID, 1, &["a.test", "www.a.test"]);
    target
        .install(&v1)
        .await
        .unwrap_or_else(|error| panic!("install v1: {error}\n{}", nginx.logs()));
    let v1_fingerprint = v1.leaf_fingerprint().expect("fingerprint");
    let served = wait_served(address, "a.test", &v1_fingerprint, WAIT).await;
    assert_eq!(served.serial, v1.leaf_serial().expect("serial"));
    wait_served(address, "www.a.test", &v1_fingerprint, WAIT).await;
    let paths = files(&nginx, ID);
    assert_eq!(mode(&paths[1]), 0o600, "private key mode");
    assert_eq!(mode(&paths[0]), 0o644, "certificate mode");
    let server_conf = std::fs::read_to_string(&paths[4]).expect("server block");
    assert!(
        server_conf.contains("server_name a.test www.a.test;"),
        "{server_conf}"
    );
    let ssl_conf = std::fs::read_to_string(&paths[2]).expect("ssl.conf");
    assert!(
        ssl_conf.contains(&format!("ssl_certificate_key \"{}\";", paths[1].display())),
        "{ssl_conf}"
    );
    assert_eq!(
        target.installed().await.expect("installed"),
        [Installed {
            certificate_id: ID.to_owned(),
            version: 1
        }]
    );

    // v2 while a client keeps shaking hands: no handshake may fail.
    let v2 = bundle(ID, 2, &["a.test", "www.a.test"]);
    let v2_fingerprint = v2.leaf_fingerprint().expect("fingerprint");
    let stop = Arc::new(AtomicBool::new(false));
    let client = tokio::spawn({
        let stop = Arc::clone(&stop);
        let v2_fingerprint = v2_fingerprint.clone();
        async move {
            let (mut handshakes, mut failures, mut saw_v2_at) = (0_usize, Vec::new(), None);
            while !stop.load(Ordering::Relaxed) {
                match verify_served(address, "a.test", Duration::from_secs(5)).await {
                    Ok(served) => {
                        if served.fingerprint == v2_fingerprint && saw_v2_at.is_none() {
                            saw_v2_at = Some(handshakes);
                        }
                    }
                    Err(error) => failures.push(error.to_string()),
                }
                handshakes += 1;
            }
            (handshakes, failures, saw_v2_at)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    target.install(&v2).await.expect("install v2");
    wait_served(address, "a.test", &v2_fingerprint, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (handshakes, failures, saw_v2_at) = client.await.expect("client loop");
    assert!(
        failures.is_empty(),
        "{} of {handshakes} handshakes failed: {failures:?}",
        failures.len()
    );
    let saw_v2_at = saw_v2_at.expect("client loop saw v2");
    assert!(
        saw_v2_at > 0 && saw_v2_at < handshakes,
        "v2 first seen at {saw_v2_at} of {handshakes}"
    );

    // A configuration nginx refuses: rolled back, v2 stays.
    let before = contents(&paths);
    let broken = nginx.prefix().join("broken-include.conf");
    std::fs::write(&broken, "certfleet_bogus_directive on;\n").expect("write broken include");
    let broken_target = target_with_include(&nginx, broken);
    let v3 = bundle(ID, 3, &["a.test", "www.a.test"]);
    let error = broken_target
        .install(&v3)
        .await
        .expect_err("nginx -t refuses");
    assert!(
        matches!(error, ProxyError::ConfigRejected { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("unknown directive \"certfleet_bogus_directive\""),
        "{message}"
    );
    assert!(!message.contains("PRIVATE KEY"), "{message}");
    assert!(!error.is_retryable());
    assert_eq!(contents(&paths), before, "files restored exactly");
    assert_eq!(mode(&paths[1]), 0o600, "restored key mode");
    let served = verify_served(address, "a.test", WAIT)
        .await
        .expect("still served");
    assert_eq!(served.fingerprint, v2_fingerprint);
    assert_eq!(
        target.installed().await.expect("installed"),
        [Installed {
            certificate_id: ID.to_owned(),
            version: 2
        }]
    );

    // A wildcard next to it.
    let wildcard = bundle(WILDCARD_ID, 1, &["*.w.test"]);
    target.install(&wildcard).await.expect("install wildcard");
    wait_served(
        address,
        "*.w.test",
        &wildcard.leaf_fingerprint().expect("fingerprint"),
        WAIT,
    )
    .await;

    // A refused first install leaves nothing behind.
    let fresh_id = "0190f1b2-7c3e-7aa0-9b1e-0000000000f1";
    let fresh = bundle(fresh_id, 1, &["f.test"]);
    let broken_target = target_with_include(&nginx, nginx.prefix().join("broken-include.conf"));
    broken_target
        .install(&fresh)
        .await
        .expect_err("nginx -t refuses");
    assert!(files(&nginx, fresh_id).iter().all(|path| !path.exists()));
    assert!(!nginx.certfleet_dir().join("certs").join(fresh_id).exists());

    // Remove.
    target.remove(ID).await.expect("remove");
    assert!(paths.iter().all(|path| !path.exists()), "files gone");
    assert!(!nginx.certfleet_dir().join("certs").join(ID).exists());
    wait_not_served(address, "a.test", &v2_fingerprint, WAIT).await;
    let served = verify_served(address, "a.test", WAIT)
        .await
        .expect("default server");
    assert_eq!(served.fingerprint, default_served.fingerprint);
    target.remove(ID).await.expect("removing again is fine");
    assert_eq!(
        target.installed().await.expect("installed"),
        [Installed {
            certificate_id: WILDCARD_ID.to_owned(),
            version: 1
        }]
    );
}

fn target_with_include(nginx: &Nginx, include: PathBuf) -> NginxTarget {
    target(nginx).with_server_include(Some(include))
}

#[tokio::test]
async fn invalid_bundles_are_refused_before_any_file() {
    let directory = tempfile::tempdir().expect("tempdir");
    let target = NginxTarget::new(directory.path(), "/usr/sbin/nginx");
    let mut bad_id = bundle("0190f1b2-ok", 1, &["a.test"]);
    bad_id.certificate_id = "../etc".to_owned();
    let error = target.install(&bad_id).await.expect_err("bad id");
    assert!(error.to_string().contains("\"../etc\""), "{error}");
    assert!(!error.is_retryable());

    let mut bad_name = bundle("0190f1b2-ok", 1, &["a.test"]);
    bad_name.names = vec!["a.test; include /etc/shadow".to_owned()];
    target.install(&bad_name).await.expect_err("bad name");

    let mut mismatched = bundle("0190f1b2-ok", 1, &["a.test"]);
    mismatched.key_pem = bundle("0190f1b2-ok", 1, &["a.test"]).key_pem;
    let error = target
        .install(&mismatched)
        .await
        .expect_err("key of another certificate");
    assert!(error.to_string().contains("does not match"), "{error}");
    assert!(!error.to_string().contains("PRIVATE KEY"), "{error}");

    assert_eq!(
        std::fs::read_dir(directory.path())
            .expect("read_dir")
            .count(),
        0
    );
}
