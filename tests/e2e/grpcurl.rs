//! grpcurl (1.8, reflection v1alpha) lists and describes the services and sees SERVING.

use certfleet_e2e::TestEnv;
use certfleet_e2e::certfleet_testkit::{PebbleOptions, grpcurl_path};

fn grpcurl(arguments: &[&str]) -> String {
    let output = std::process::Command::new(grpcurl_path().unwrap())
        .args(arguments)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "grpcurl {arguments:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_describes_and_checks_health() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let address = env.grpc.to_string();
    let listed = grpcurl(&["-plaintext", &address, "list"]);
    for service in [
        "certfleet.v1.CertificateService",
        "certfleet.v1.OrganizationService",
        "grpc.health.v1.Health",
    ] {
        assert!(listed.contains(service), "{listed}");
    }
    let described = grpcurl(&[
        "-plaintext",
        &address,
        "describe",
        "certfleet.v1.CertificateService",
    ]);
    for method in [
        "CreateCertificate",
        "GetCertificateBundle",
        "WatchCertificates",
    ] {
        assert!(described.contains(&format!("rpc {method}")), "{described}");
    }
    let message = grpcurl(&[
        "-plaintext",
        &address,
        "describe",
        "certfleet.v1.CreateCertificateRequest",
    ]);
    assert!(message.contains("repeated string names"), "{message}");
    let health = grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &address,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(health.contains("\"SERVING\""), "{health}");

    // A call with a token and a bad name answers INVALID_ARGUMENT naming the field.
    let admin = format!("authorization: Bearer {}", env.admin_token.trim());
    let output = std::process::Command::new(grpcurl_path().unwrap())
        .args([
            "-plaintext",
            "-H",
            &admin,
            "-d",
            r#"{"slug":"Bad Slug","name":"x","contact_email":"a@b.example"}"#,
            &address,
            "certfleet.v1.OrganizationService/CreateOrganization",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        text.contains("InvalidArgument") && text.contains("slug: \"Bad Slug\""),
        "{text}"
    );
    env.stop().await;
}
