//! The gRPC API over TLS: the CLI reaches it with the CA certificate, a
//! plaintext client does not.

use std::net::SocketAddr;

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
