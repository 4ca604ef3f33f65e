//! The gRPC API over TLS: the CLI reaches it with the CA certificate, a
//! plaintext client does not; with a client CA (mutual TLS) only clients with
//! a certificate from that CA, and still only with a valid token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certfleet_cli::embedded;
use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions};
use certfleet_e2e::{certfleet_binary, embedded_config};

#[tokio::test(flavor = "multi_thread")]
async fn the_api_speaks_tls_when_given_a_certificate() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let root = tempfile::tempdir().unwrap();

    // A private CA and a server certificate for 127.0.0.1.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
    let ca_path = root.path().join("ca.pem");
    let certificate_path = root.path().join("api.pem");
    let key_path = root.path().join("api-key.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&certificate_path, server.pem()).unwrap();
    std::fs::write(&key_path, server_key.serialize_pem()).unwrap();

    // A key file that is not a key stops the start with a message naming the flags.
    let data_dir = root.path().join("data");
    let mut broken = embedded_config(&pebble, &data_dir);
    broken.grpc_tls = Some((certificate_path.clone(), ca_path.clone()));
    let error = embedded::start(broken, certfleet_core::ManualClock::new())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("--grpc-tls-key"), "{error:#}");

    let mut config = embedded_config(&pebble, &data_dir);
    config.grpc_tls = Some((certificate_path, key_path));
    let running = embedded::start(config, certfleet_core::ManualClock::new())
        .await
        .unwrap();
    let admin = std::fs::read_to_string(&running.admin_token_path).unwrap();
    let address: SocketAddr = running.grpc_addr;

    let cli = |endpoint: String, ca: Option<&std::path::Path>| {
        let mut command = std::process::Command::new(certfleet_binary());
        command
            .args([
                "org",
                "create",
                "tls",
                "--name",
                "TLS",
                "--email",
                "ops@tls.example.com",
            ])
            .env("CERTFLEET_ENDPOINT", endpoint)
            .env("CERTFLEET_TOKEN", &admin)
            .env_remove("CERTFLEET_CA_CERT");
        if let Some(ca) = ca {
            command.arg("--ca-cert").arg(ca);
        }
        command.output().unwrap()
    };
    let untrusted = cli(format!("https://127.0.0.1:{}", address.port()), None);
    assert!(
        !untrusted.status.success(),
        "a certificate from an unknown CA must be refused"
    );
    let plaintext = cli(format!("http://127.0.0.1:{}", address.port()), None);
    assert!(
        !plaintext.status.success(),
        "plaintext must not reach a TLS API"
    );
    let hint = String::from_utf8_lossy(&plaintext.stderr);
    assert!(hint.contains("https://"), "the error suggests TLS: {hint}");
    let trusted = cli(
        format!("https://127.0.0.1:{}", address.port()),
        Some(&ca_path),
    );
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("tls"));
    running.shutdown().await;
}

/// A private CA: its PEM certificate and what signs with it.
fn test_ca() -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let certificate = params.self_signed(&key).unwrap();
    (certificate.pem(), rcgen::Issuer::new(params, key))
}

/// Writes a certificate for `names` signed by `issuer` and its key under
/// `directory` as `<stem>.pem` and `<stem>-key.pem`.
fn write_leaf(
    directory: &Path,
    stem: &str,
    names: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    params.extended_key_usages = vec![usage];
    let certificate = params.signed_by(&key, issuer).unwrap();
    let certificate_path = directory.join(format!("{stem}.pem"));
    let key_path = directory.join(format!("{stem}-key.pem"));
    std::fs::write(&certificate_path, certificate.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (certificate_path, key_path)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_ca_requires_a_client_certificate_and_the_token() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let directory = root.path();

    let (server_ca, server_issuer) = test_ca();
    let server_ca_path = directory.join("ca.pem");
    std::fs::write(&server_ca_path, server_ca).unwrap();
    let (certificate_path, key_path) = write_leaf(
        directory,
        "api",
        &["127.0.0.1", "localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        &server_issuer,
    );
    let (clients_ca, clients_issuer) = test_ca();
    let clients_ca_path = directory.join("clients-ca.pem");
    std::fs::write(&clients_ca_path, clients_ca).unwrap();
    let agent = write_leaf(
        directory,
        "agent",
        &["agent-1"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        &clients_issuer,
    );
    let (_, other_issuer) = test_ca();
    let stranger = write_leaf(
        directory,
        "stranger",
        &["agent-1"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        &other_issuer,
    );

    // Bad settings stop the start, naming the flags.
    let data_dir = directory.join("data");
    let mut without_tls = embedded_config(&pebble, &data_dir);
    without_tls.grpc_tls_client_ca = Some(clients_ca_path.clone());
    let error = embedded::start(without_tls, certfleet_core::ManualClock::new())
        .await
        .unwrap_err();
    let text = format!("{error:#}");
    for named in ["--grpc-tls-client-ca", "--grpc-tls-cert", "--grpc-tls-key"] {
        assert!(text.contains(named), "{named}: {text}");
    }
    let not_pem = directory.join("clients-ca.txt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for (path, expected) in [
        (
            directory.join("missing.pem"),
            "reading --grpc-tls-client-ca",
        ),
        (not_pem, "--grpc-tls-client-ca"),
    ] {
        let mut broken = embedded_config(&pebble, &data_dir);
        broken.grpc_tls = Some((certificate_path.clone(), key_path.clone()));
        broken.grpc_tls_client_ca = Some(path.clone());
        let error = embedded::start(broken, certfleet_core::ManualClock::new())
            .await
            .unwrap_err();
        let text = format!("{error:#}");
        assert!(text.starts_with(expected), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }

    let mut config = embedded_config(&pebble, &data_dir);
    config.grpc_tls = Some((certificate_path, key_path));
    config.grpc_tls_client_ca = Some(clients_ca_path);
    let running = embedded::start(config, certfleet_core::ManualClock::new())
        .await
        .unwrap();
    let admin = std::fs::read_to_string(&running.admin_token_path).unwrap();
    let endpoint = format!("https://127.0.0.1:{}", running.grpc_addr.port());

    let cli = |slug: &str, token: &str, client: Option<&(PathBuf, PathBuf)>| {
        let mut command = std::process::Command::new(certfleet_binary());
        command
            .args([
                "org",
                "create",
                slug,
                "--name",
                "mTLS",
                "--email",
                "ops@mtls.example.com",
                "--ca-cert",
            ])
            .arg(&server_ca_path)
            .env("CERTFLEET_ENDPOINT", &endpoint)
            .env("CERTFLEET_TOKEN", token)
            .env_remove("CERTFLEET_CA_CERT")
            .env_remove("CERTFLEET_CLIENT_CERT")
            .env_remove("CERTFLEET_CLIENT_KEY");
        if let Some((certificate, key)) = client {
            command
                .arg("--client-cert")
                .arg(certificate)
                .arg("--client-key")
                .arg(key);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr, output.stdout)
    };

    // No client certificate: the handshake fails, exit 1, a message that says why.
    let (code, stderr, _) = cli("no-certificate", &admin, None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--client-cert"), "{stderr}");
    // A certificate from another CA: refused too.
    let (code, stderr, _) = cli("stranger", &admin, Some(&stranger));
    assert_eq!(code, Some(1), "{stderr}");
    // The right certificate does not replace the token.
    let (code, stderr, _) = cli("no-token", "cf1.00000000.wrong", Some(&agent));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("--client-cert"), "{stderr}");
    // The right certificate and the token.
    let (code, stderr, stdout) = cli("mtls", &admin, Some(&agent));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&stdout).contains("mtls"));
    // Only the last call reached the API.
    for refused in ["no-certificate", "stranger", "no-token"] {
        let (code, stderr, _) = cli(refused, &admin, Some(&agent));
        assert_eq!(code, Some(0), "{refused} was created before: {stderr}");
    }

    // Half a client identity is refused before connecting.
    let mut half = std::process::Command::new(certfleet_binary());
    let output = half
        .args([
            "org",
            "create",
            "half",
            "--name",
            "Half",
            "--email",
            "ops@half.example.com",
        ])
        .arg("--client-cert")
        .arg(&agent.0)
        .env("CERTFLEET_ENDPOINT", &endpoint)
        .env("CERTFLEET_TOKEN", &admin)
        .env_remove("CERTFLEET_CLIENT_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--client-cert and --client-key"),
        "{stderr}"
    );
    running.shutdown().await;
}
