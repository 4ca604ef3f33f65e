//! Key rotation: every sealed blob moves from the local master key to a KMS
//! key while certfleet runs (interrupted once and resumed), then to a second
//! KMS key with `certfleet vault rewrap`; with the master key file deleted
//! and only the second key configured, every private key still opens and a
//! renewal (which opens the ACME account key) succeeds.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use certfleet_cli::embedded;
use certfleet_cli::vault::{RewrapOptions, probe_key_id, rewrap_all};
use certfleet_e2e::certfleet_testkit::{Moto, PebbleOptions};
use certfleet_e2e::{
    TestEnv, bundle, certfleet_binary, certificates, embedded_config, is_valid, leaf_facts,
    organization, public_key_of, request, wait_for,
};
use certfleet_proto::v1::{self as pb, RenewCertificateRequest};
use certfleet_store::{SealedColumn, Store};
use certfleet_vault::{AwsKms, AwsKmsConfig, LocalMasterKey, Vault};

const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn kms_config(moto: &Moto, key_id: &str) -> AwsKmsConfig {
    AwsKmsConfig {
        key_id: key_id.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint_url: Some(moto.endpoint_url()),
        access_key_id: ACCESS_KEY_ID.to_owned(),
        secret_access_key: SECRET_ACCESS_KEY.to_owned().into(),
        session_token: None,
    }
}

/// The key id named by every sealed blob in the database.
async fn blob_key_ids(store: &Store) -> Vec<(SealedColumn, String)> {
    let mut named = Vec::new();
    for column in SealedColumn::ALL {
        for row in store.sealed_page(column, "", 10_000).await.unwrap() {
            named.push((column, Vault::blob_key_id(&row.blob).unwrap()));
        }
    }
    named
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_move_from_the_master_key_to_kms_and_on_to_another_kms_key() {
    let mut env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let data_dir = env.data_dir.path().to_owned();
    let master_key_file = data_dir.join("master.key");
    let (write, bundle_token) = organization(env.grpc, &env.admin_token, "rotation").await;
    let mut client = certificates(env.grpc, &write).await;
    let mut ids = Vec::new();
    for name in ["one.rotation.test", "two.rotation.test"] {
        let created = client
            .create_certificate(request(&[name], pb::KeyType::EcdsaP256))
            .await
            .unwrap()
            .into_inner();
        ids.push(created.id);
    }
    let mut keys = Vec::new();
    let mut bundle_client = certificates(env.grpc, &bundle_token).await;
    for id in &ids {
        wait_for(&mut client, id, Duration::from_secs(60), is_valid)
            .await
            .unwrap();
        keys.push(
            bundle(&mut bundle_client, id)
                .await
                .unwrap()
                .private_key_pem,
        );
    }

    // Restart with the first KMS key as the key and the master key as a
    // previous one, as docs/OPERATIONS.md says to before a rewrap.
    let moto = Moto::start().await.unwrap();
    let first = moto.create_kms_key().await.unwrap();
    let second = moto.create_kms_key().await.unwrap();
    env.embedded.take().unwrap().shutdown().await;
    let mut config = embedded_config(&env.pebble, &data_dir);
    config.kms = Some(kms_config(&moto, &first));
    config.previous_master_key_files = vec![master_key_file.clone()];
    let running = embedded::start(config, env.clock.clone()).await.unwrap();
    let grpc = running.grpc_addr;
    env.embedded = Some(running);

    // The rewrap works on its own connection, as the command does.
    let url = format!("sqlite://{}", data_dir.join("certfleet.db").display());
    let store = Store::connect(&url).await.unwrap();
    let local = Vault::new(Arc::new(
        LocalMasterKey::load_file(&master_key_file).await.unwrap(),
    ));
    let to_first = Vault::new(Arc::new(AwsKms::new(&kms_config(&moto, &first)).unwrap()));
    let first_id = probe_key_id(&to_first).await.unwrap();
    assert!(first_id.ends_with(&first), "{first_id}");
    let before = blob_key_ids(&store).await;
    // Two version keys and the organization's ACME account key.
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.iter().all(|(_, key)| key == local.key_id()));

    // Interrupted (a crash) right after its first blob of one per batch.
    let options = RewrapOptions {
        batch_size: 1,
        concurrency: 1,
        dry_run: false,
    };
    let interrupted = {
        let (store, local, to_first, first_id, options) = (
            store.clone(),
            local.clone(),
            to_first.clone(),
            first_id.clone(),
            options.clone(),
        );
        tokio::spawn(async move {
            rewrap_all(&store, &local, &to_first, &first_id, &options, |_| {
                panic!("interrupted after the first batch")
            })
            .await
        })
    };
    assert!(interrupted.await.unwrap_err().is_panic());
    let moved = blob_key_ids(&store).await;
    assert_eq!(
        moved.iter().filter(|(_, key)| *key == first_id).count(),
        1,
        "{moved:?}"
    );

    // Run again: the one done is skipped, the other two are moved.
    let options = RewrapOptions {
        batch_size: 2,
        concurrency: 4,
        dry_run: false,
    };
    let resumed = rewrap_all(&store, &local, &to_first, &first_id, &options, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (resumed.read, resumed.already, resumed.rewrapped),
        (3, 1, 2)
    );
    assert!(
        resumed.failures.is_empty() && resumed.changed == 0,
        "{resumed:?}"
    );
    let again = rewrap_all(&store, &local, &to_first, &first_id, &options, |_| {})
        .await
        .unwrap();
    assert_eq!((again.already, again.rewrapped), (3, 0));

    // The running certfleet opens the rewrapped keys.
    let mut bundle_client = certificates(grpc, &bundle_token).await;
    for (id, key) in ids.iter().zip(&keys) {
        assert_eq!(
            &bundle(&mut bundle_client, id)
                .await
                .unwrap()
                .private_key_pem,
            key
        );
    }

    // On to the second KMS key with the command, configured like the service.
    let output = tokio::process::Command::new(certfleet_binary())
        .args(["vault", "rewrap", "--to", &format!("aws-kms:{second}")])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--batch-size", "2"])
        .env("CERTFLEET_VAULT_PROVIDER", "aws-kms")
        .env("CERTFLEET_KMS_KEY_ID", &first)
        .env("CERTFLEET_KMS_ENDPOINT_URL", moto.endpoint_url())
        .env("CERTFLEET_KMS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("CERTFLEET_KMS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("3 blobs read, 3 rewrapped"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("the old key is no longer needed"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET_ACCESS_KEY) && !stdout.contains(SECRET_ACCESS_KEY));
    let moved = blob_key_ids(&store).await;
    assert!(
        moved.iter().all(|(_, key)| key.ends_with(&second)),
        "{moved:?}"
    );

    // The master key file gone and only the second key configured: every
    // key opens, and a renewal (the account key opens too) succeeds.
    env.embedded.take().unwrap().shutdown().await;
    std::fs::remove_file(&master_key_file).unwrap();
    let mut config = embedded_config(&env.pebble, &data_dir);
    config.kms = Some(kms_config(&moto, &second));
    config.dev = false;
    let running = embedded::start(config, env.clock.clone()).await.unwrap();
    let grpc = running.grpc_addr;
    env.embedded = Some(running);
    let mut client = certificates(grpc, &write).await;
    let mut bundle_client = certificates(grpc, &bundle_token).await;
    for (id, key) in ids.iter().zip(&keys) {
        let opened = bundle(&mut bundle_client, id).await.unwrap();
        assert_eq!(&opened.private_key_pem, key);
        assert_eq!(
            public_key_of(&opened.private_key_pem),
            leaf_facts(&opened.certificate_pem).public_key_der
        );
    }
    client
        .renew_certificate(RenewCertificateRequest { id: ids[0].clone() })
        .await
        .unwrap();
    let renewed = wait_for(
        &mut client,
        &ids[0],
        Duration::from_secs(60),
        |certificate| {
            is_valid(certificate) && certificate.current.as_ref().is_some_and(|v| v.version == 2)
        },
    )
    .await
    .unwrap();
    assert_eq!(renewed.current.unwrap().version, 2);
    let opened = bundle(&mut bundle_client, &ids[0]).await.unwrap();
    assert_eq!(
        public_key_of(&opened.private_key_pem),
        leaf_facts(&opened.certificate_pem).public_key_der
    );

    // The archive's copies are written again with the rewrapped envelopes,
    // so they too need only the second key.
    let started = std::time::Instant::now();
    loop {
        let copies = archived_key_ids(&data_dir.join("backups"));
        let states = store.backup_states().await.unwrap();
        if copies.len() == 3
            && copies.iter().all(|key| key.ends_with(&second))
            && states.iter().all(|state| state.location.is_some())
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "copies not rewritten: {copies:?} {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.stop().await;
}

/// The key id named by every `privkey.enc` under `dir`.
fn archived_key_ids(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(archived_key_ids(&path));
        } else if path.ends_with("privkey.enc") {
            found.push(Vault::blob_key_id(&std::fs::read(&path).unwrap()).unwrap());
        }
    }
    found
}
