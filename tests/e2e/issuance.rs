//! Issuance over gRPC: names, key types, chain, key, and a CA that rejects nonces.

use std::time::Duration;

use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_e2e::{
    TestEnv, bundle, is_valid, leaf_facts, public_key_of, request, verify_chain, wait_for,
};
use certfleet_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread")]
async fn three_names_chain_to_pebble_root_with_the_requested_key() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, mut bundle_client) = env.organization("issuance").await;
    let names = ["www.issuance.test", "issuance.test", "api.issuance.test"];
    let created = client
        .create_certificate(request(&names, pb::KeyType::EcdsaP384))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.primary_name, "www.issuance.test");

    let issued = wait_for(&mut client, &created.id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();
    assert_eq!(issued.key_type, pb::KeyType::EcdsaP384 as i32);
    let version = issued.current.clone().unwrap();
    assert_eq!(version.version, 1);

    let bundle = bundle(&mut bundle_client, &created.id).await.unwrap();
    verify_chain(&bundle, &env.pebble.root_pem().await.unwrap()).unwrap();
    let facts = leaf_facts(&bundle.certificate_pem);
    let mut expected: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    expected.sort();
    assert_eq!(facts.names, expected);
    assert_eq!(facts.key_algorithm, "ecdsa-p384");
    assert_eq!(facts.serial, version.serial);
    assert_eq!(
        public_key_of(&bundle.private_key_pem),
        facts.public_key_der,
        "stored key must match the certificate"
    );
    assert_eq!(
        bundle.fullchain_pem,
        format!("{}{}", bundle.certificate_pem, bundle.chain_pem)
    );
    // Validity comes from the certificate: Pebble issues certificates for about five years.
    let lifetime_days = (version.not_after - version.not_before) / 86_400;
    assert!(
        (1800..=1830).contains(&lifetime_days),
        "lifetime {lifetime_days} days"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_and_default_keys() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut client, mut bundle_client) = env.organization("keys").await;
    for (name, key_type, expected) in [
        ("rsa.keys.test", pb::KeyType::Rsa2048, "rsa-2048"),
        ("default.keys.test", pb::KeyType::Unspecified, "ecdsa-p256"),
    ] {
        let created = client
            .create_certificate(request(&[name], key_type))
            .await
            .unwrap()
            .into_inner();
        wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
            .await
            .unwrap();
        let bundle = bundle(&mut bundle_client, &created.id).await.unwrap();
        let facts = leaf_facts(&bundle.certificate_pem);
        assert_eq!(facts.key_algorithm, expected, "{name}");
        assert_eq!(public_key_of(&bundle.private_key_pem), facts.public_key_der);
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issuance_succeeds_when_half_the_nonces_are_rejected() {
    let env = TestEnv::start(PebbleOptions {
        nonce_reject_percent: 50,
        ..PebbleOptions::default()
    })
    .await
    .unwrap();
    let (mut client, mut bundle_client) = env.organization("nonces").await;
    let mut ids = Vec::new();
    for index in 0..3 {
        let names = [
            format!("n{index}.nonces.test"),
            format!("m{index}.nonces.test"),
        ];
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let created = client
            .create_certificate(request(&names, pb::KeyType::EcdsaP256))
            .await
            .unwrap()
            .into_inner();
        ids.push(created.id);
    }
    for id in &ids {
        wait_for(&mut client, id, Duration::from_secs(60), is_valid)
            .await
            .unwrap();
        let bundle = bundle(&mut bundle_client, id).await.unwrap();
        verify_chain(&bundle, &env.pebble.root_pem().await.unwrap()).unwrap();
    }
    env.stop().await;
}
