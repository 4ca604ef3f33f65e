//! The aws-kms vault provider end to end: an embedded certfleet whose data
//! keys come from a KMS key in moto issues a certificate over HTTP-01; the
//! bundle's key matches the certificate and the stored key names the KMS key;
//! the distributed roles do the same with the settings from the environment.

use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Moto, Pebble, PebbleOptions};
use certfleet_e2e::{
    RoleStack, TestEnv, all_logs, bundle, is_valid, leaf_facts, organization, public_key_of,
    request, terminate_all, wait_for,
};
use certfleet_proto::v1 as pb;
use certfleet_vault::AwsKmsConfig;

fn kms_config(moto: &Moto, key_id: &str) -> AwsKmsConfig {
    AwsKmsConfig {
        key_id: key_id.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint_url: Some(moto.endpoint_url()),
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned().into(),
        session_token: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_issued_with_aws_kms_names_the_kms_key() {
    let moto = Moto::start().await.unwrap();
    let key_id = moto.create_kms_key().await.unwrap();
    let kms = kms_config(&moto, &key_id);
    let env = TestEnv::start_with(PebbleOptions::default(), |config| {
        config.kms = Some(kms);
    })
    .await
    .unwrap();
    // No master key file: the KMS key replaces it.
    assert!(!env.data_dir.path().join("master.key").exists());

    let (mut client, mut bundle_client) = env.organization("kms").await;
    let created = client
        .create_certificate(request(&["www.kms.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();
    let issued = wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
        .await
        .unwrap();

    let bundle = bundle(&mut bundle_client, &created.id).await.unwrap();
    let facts = leaf_facts(&bundle.certificate_pem);
    assert_eq!(facts.names, ["www.kms.test"]);
    assert_eq!(
        public_key_of(&bundle.private_key_pem),
        facts.public_key_der,
        "stored key must match the certificate"
    );

    let store = env.embedded.as_ref().unwrap().store.clone();
    let versions = store
        .list_versions(&issued.organization_id, &created.id)
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    let sealed = &versions[0].key_sealed;
    let recorded = format!("aws-kms:arn:aws:kms:us-east-1:123456789012:key/{key_id}");
    assert!(
        sealed
            .windows(recorded.len())
            .any(|window| window == recorded.as_bytes()),
        "the sealed key does not name {recorded}"
    );
    env.stop().await;
}

/// The distributed roles with `vault_provider = aws-kms` from the
/// environment: the issuer seals with the KMS key, the api opens the bundle.
#[tokio::test(flavor = "multi_thread")]
async fn the_distributed_roles_use_aws_kms_from_the_environment() {
    let moto = Moto::start().await.unwrap();
    let key_id = moto.create_kms_key().await.unwrap();
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let mut stack = RoleStack::create(&pebble).await.unwrap();
    // The stack's master key stays in the environment, unused with aws-kms.
    stack.env.extend(
        [
            ("CERTFLEET_VAULT_PROVIDER", "aws-kms".to_owned()),
            ("CERTFLEET_KMS_KEY_ID", key_id.clone()),
            ("CERTFLEET_KMS_ENDPOINT_URL", moto.endpoint_url()),
            (
                "CERTFLEET_KMS_ACCESS_KEY_ID",
                "AKIAIOSFODNN7EXAMPLE".to_owned(),
            ),
            (
                "CERTFLEET_KMS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            ),
        ]
        .map(|(key, value)| (key.to_owned(), value)),
    );
    let (mut processes, grpc) = stack.spawn_api_responder_issuer(&pebble).await.unwrap();
    let (write, bundle_token) = organization(grpc, &stack.admin_token, "kms-roles").await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    let mut bundle_client = certfleet_e2e::certificates(grpc, &bundle_token).await;
    let created = client
        .create_certificate(request(&["roles.kms.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();
    wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
        .await
        .unwrap_or_else(|error| panic!("{error:#}\n{}", all_logs(&processes)));
    let bundle = bundle(&mut bundle_client, &created.id).await.unwrap();
    assert_eq!(
        public_key_of(&bundle.private_key_pem),
        leaf_facts(&bundle.certificate_pem).public_key_der
    );
    let logs = all_logs(&processes);
    assert!(logs.contains("vault keys wrapped by aws kms"), "{logs}");
    assert!(!logs.contains("wJalrXUtnFEMI"), "{logs}");
    terminate_all(&mut processes).unwrap();
    stack.remove().await.unwrap();
}
