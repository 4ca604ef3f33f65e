//! The Traefik target. No Traefik binary is available here, so the
//! generated dynamic configuration is checked against the documented
//! file-provider format (<https://doc.traefik.io/traefik/https/tls/#user-defined>,
//! <https://doc.traefik.io/traefik/providers/file/>), and a watcher thread
//! checks that no `*.yml` is ever seen half-written.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use certfleet_proxy::{Bundle, Installed, Target as _, TraefikTarget};
use common::{bundle, mode};
use rustls_pki_types::pem::PemObject as _;
use serde_norway::Value;

const ID: &str = "0190f1b2-7c3e-7aa0-9b1e-1f2e3d4c5b6a";

/// Checks one dynamic configuration file against the documented schema and
/// returns its `(certFile, keyFile)`.
fn check_schema(text: &str) -> Result<(PathBuf, PathBuf), String> {
    let value: Value =
        serde_norway::from_str(text).map_err(|error| format!("not YAML: {error}"))?;
    let top = value.as_mapping().ok_or("top level is not a mapping")?;
    let keys: Vec<&str> = top.keys().filter_map(Value::as_str).collect();
    if keys != ["tls"] {
        return Err(format!("top-level keys {keys:?}, expected only tls"));
    }
    let tls = top
        .get("tls")
        .and_then(Value::as_mapping)
        .ok_or("tls is not a mapping")?;
    let tls_keys: Vec<&str> = tls.keys().filter_map(Value::as_str).collect();
    if tls_keys != ["certificates"] {
        return Err(format!("tls keys {tls_keys:?}, expected only certificates"));
    }
    let certificates = tls
        .get("certificates")
        .and_then(Value::as_sequence)
        .ok_or("tls.certificates is not a list")?;
    let [entry] = certificates.as_slice() else {
        return Err(format!("{} certificates, expected one", certificates.len()));
    };
    let entry = entry
        .as_mapping()
        .ok_or("certificate entry is not a mapping")?;
    for key in entry.keys() {
        let key = key.as_str().ok_or("non-string key")?;
        if !["certFile", "keyFile", "stores"].contains(&key) {
            return Err(format!("unknown certificate key {key}"));
        }
    }
    let path = |key: &str| -> Result<PathBuf, String> {
        let text = entry
            .get(key)
            .and_then(Value::as_str)
            .ok_or(format!("{key} missing"))?;
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            return Err(format!("{key} {text} is not absolute"));
        }
        Ok(path)
    };
    Ok((path("certFile")?, path("keyFile")?))
}

fn check_installed(target: &TraefikTarget, bundle: &Bundle) -> (PathBuf, PathBuf) {
    let config_file = target.config_file(&bundle.certificate_id);
    assert_eq!(mode(&config_file), 0o644);
    let text = std::fs::read_to_string(&config_file).expect("config file");
    let (cert_file, key_file) =
        check_schema(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    assert!(
        !cert_file.starts_with(&target.dir),
        "certificates live outside the watched dir"
    );
    assert_eq!(mode(&key_file), 0o600, "key mode");
    assert_eq!(mode(&cert_file), 0o644, "certificate mode");
    assert_eq!(
        std::fs::read_to_string(&cert_file).expect("cert"),
        bundle.fullchain_pem
    );
    assert_keys_match(&cert_file, &key_file);
    (cert_file, key_file)
}

fn assert_keys_match(cert_file: &Path, key_file: &Path) {
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(cert_file)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certificates parse");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key_file).expect("key parses");
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).expect("key type");
    rustls::sign::CertifiedKey::new(chain, signing_key)
        .keys_match()
        .expect("certificate and key match");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_documented_format_atomically() {
    let root = tempfile::tempdir().expect("tempdir");
    let watched = root.path().join("dynamic");
    let certs = root.path().join("certs");
    let target = TraefikTarget::new(&watched, &certs);
    std::fs::create_dir_all(&watched).expect("mkdir");

    // A watcher like Traefik's: every *.yml it sees must be complete.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = std::thread::spawn({
        let stop = Arc::clone(&stop);
        let watched = watched.clone();
        move || {
            let (mut reads, mut problems) = (0_usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let Ok(entries) = std::fs::read_dir(&watched) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.ends_with(".yml") {
                        if !(name.starts_with('.') && name.ends_with(".tmp")) {
                            problems.push(format!("unexpected file {name}"));
                        }
                        continue;
                    }
                    if let Ok(text) = std::fs::read_to_string(entry.path()) {
                        reads += 1;
                        if let Err(error) = check_schema(&text) {
                            problems.push(format!("{name}: {error}"));
                        }
                    }
                }
            }
            (reads, problems)
        }
    });

    let mut previous: Option<(PathBuf, PathBuf)> = None;
    for version in 1..=20 {
        let bundle = bundle(ID, version, &["a.test", "*.a.test"]);
        target.install(&bundle).await.expect("install");
        let files = check_installed(&target, &bundle);
        if let Some((old_cert, old_key)) = previous.take() {
            assert!(
                !old_cert.exists() && !old_key.exists(),
                "older version removed"
            );
        }
        previous = Some(files);
        assert_eq!(
            target.installed().await.expect("installed"),
            [Installed {
                certificate_id: ID.to_owned(),
                version
            }]
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (reads, problems) = watcher.join().expect("watcher");
    assert!(problems.is_empty(), "{problems:?}");
    assert!(reads > 0, "the watcher read the file");

    let (cert_file, key_file) = previous.expect("installed");
    target.remove(ID).await.expect("remove");
    assert!(!target.config_file(ID).exists());
    assert!(!cert_file.exists() && !key_file.exists());
    assert!(!certs.join(ID).exists());
    target.remove(ID).await.expect("removing again is fine");
    assert!(target.installed().await.expect("installed").is_empty());
    assert_eq!(
        std::fs::read_dir(&watched).expect("read_dir").count(),
        0,
        "no leftovers"
    );
}
