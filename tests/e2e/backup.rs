//! Backups end to end: an embedded certfleet on PostgreSQL copies every
//! issued version to an S3 bucket (moto); `backup verify` passes, then names
//! an altered and a missing object; `restore` rebuilds a fresh database from
//! the bucket, skipping the altered copy; a certfleet on the restored
//! database renews a restored certificate (registering a new ACME account).
//! And a restore into a database that holds organizations is refused.

use std::sync::Arc;
use std::time::Duration;

use certfleet_archive::{Archive, ArchiveConfig, S3Config};
use certfleet_cli::backup::{RestoreOptions, restore, verify};
use certfleet_cli::embedded;
use certfleet_e2e::certfleet_testkit::{Moto, PebbleOptions, TestDatabase};
use certfleet_e2e::{
    TestEnv, bundle, embedded_config, is_valid, leaf_facts, organizations, public_key_of, request,
    wait_for,
};
use certfleet_proto::v1::{self as pb, CreateApiTokenRequest, RenewCertificateRequest};
use certfleet_store::{AuditEntry, Organization, Store};
use certfleet_vault::{LocalMasterKey, Vault};

const BUCKET: &str = "certfleet-backups";
const PREFIX: &str = "prod";

fn s3_archive(moto: &Moto) -> ArchiveConfig {
    ArchiveConfig::S3(S3Config {
        bucket: BUCKET.to_owned(),
        prefix: PREFIX.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint_url: Some(moto.endpoint_url()),
        path_style: true,
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned().into(),
        session_token: None,
    })
}

async fn vault_of(data_dir: &std::path::Path) -> Vault {
    let key = LocalMasterKey::load_file(data_dir.join("master.key"))
        .await
        .unwrap();
    Vault::new(Arc::new(key))
}

/// Waits up to 30 s until every version has a recorded copy.
async fn wait_for_copies(store: &Store, versions: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let states = store.backup_states().await.unwrap();
        if states.len() == versions && states.iter().all(|state| state.location.is_some()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no copy recorded for every version within 30 s (is the backup worker running?): {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_verify_and_restore_into_a_fresh_database_that_renews() {
    let moto = Moto::start().await.unwrap();
    moto.create_bucket(BUCKET).await.unwrap();
    let archive_config = s3_archive(&moto);
    let database = TestDatabase::create().await.unwrap();
    let database_url = database.url();
    let mut env = TestEnv::start_with(PebbleOptions::default(), |config| {
        config.database_url = Some(database_url.clone());
        config.archive = Some(archive_config.clone());
    })
    .await
    .unwrap();
    let (mut client, _) = env.organization("backup").await;
    let mut ids = Vec::new();
    for name in ["one.backup.test", "two.backup.test"] {
        let created = client
            .create_certificate(request(&[name], pb::KeyType::EcdsaP256))
            .await
            .unwrap()
            .into_inner();
        ids.push(created.id);
    }
    let mut organization_id = String::new();
    for id in &ids {
        let issued = wait_for(&mut client, id, Duration::from_secs(60), is_valid)
            .await
            .unwrap();
        organization_id = issued.organization_id;
    }
    let store = env.embedded.as_ref().unwrap().store.clone();
    wait_for_copies(&store, 2).await;

    let archive = Archive::open(&archive_config).unwrap();
    let vault = vault_of(env.data_dir.path()).await;
    let now = env.clock_now_ms();
    let report = verify(&store, &archive, &vault, now, |_| {}).await.unwrap();
    assert_eq!(report.checked, 2);
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Alter the certificate of the first copy, remove the key of the second.
    let serial_of = async |id: &str| {
        let versions = store.list_versions(&organization_id, id).await.unwrap();
        versions[0].serial.clone()
    };
    let altered = format!("{organization_id}/{}/{}", ids[0], serial_of(&ids[0]).await);
    let missing = format!("{organization_id}/{}/{}", ids[1], serial_of(&ids[1]).await);
    let altered_key = format!("{PREFIX}/{altered}/cert.pem");
    let missing_key = format!("{PREFIX}/{missing}/privkey.enc");
    moto.put_object(
        BUCKET,
        &altered_key,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .await
    .unwrap();
    let removed = moto.get_object(BUCKET, &missing_key).await.unwrap();
    moto.delete_object(BUCKET, &missing_key).await.unwrap();

    let report = verify(&store, &archive, &vault, now, |_| {}).await.unwrap();
    let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with(&format!("{altered}: "))
                && line.contains(&format!("s3://{BUCKET}/{altered_key} is corrupt"))),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with(&format!("{missing}: "))
                && line.contains(&format!("s3://{BUCKET}/{missing_key} is missing"))),
        "{lines:?}"
    );

    // The key is back; the altered certificate stays altered.
    moto.put_object(BUCKET, &missing_key, &removed)
        .await
        .unwrap();
    let fresh = TestDatabase::create().await.unwrap();
    let restored_store = Store::connect(&fresh.url()).await.unwrap();
    let options = RestoreOptions {
        merge: false,
        database: fresh.name().to_owned(),
    };
    let report = restore(&restored_store, &archive, &vault, now, &options)
        .await
        .unwrap();
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].copy, altered);
    assert!(
        report.skipped[0].reason.contains("cert.pem is corrupt"),
        "{:?}",
        report.skipped[0]
    );
    assert_eq!(
        (report.organizations, report.certificates, report.versions),
        (1, 1, 1),
        "{report}"
    );
    // Again with --merge: everything restored is there already.
    let merge = RestoreOptions {
        merge: true,
        ..options.clone()
    };
    let again = restore(&restored_store, &archive, &vault, now, &merge)
        .await
        .unwrap();
    assert_eq!(
        (again.organizations, again.certificates, again.versions),
        (0, 0, 0)
    );
    assert_eq!(again.existing, 3, "{again}");
    let refused = restore(&restored_store, &archive, &vault, now, &options)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("already holds organizations"),
        "{refused:#}"
    );

    // A new certfleet on the restored database, with the same master key.
    env.embedded.take().unwrap().shutdown().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = embedded_config(&env.pebble, data_dir.path());
    config.database_url = Some(fresh.url());
    config.master_key_file = env.data_dir.path().join("master.key");
    let second = embedded::start(config, env.clock.clone()).await.unwrap();
    let admin_token = std::fs::read_to_string(&second.admin_token_path).unwrap();
    let token = |role: pb::Role| {
        let admin_token = admin_token.clone();
        async move {
            organizations(second.grpc_addr, &admin_token)
                .await
                .create_api_token(CreateApiTokenRequest {
                    organization: "backup".to_owned(),
                    role: role as i32,
                    description: String::new(),
                    expires_in_seconds: 0,
                })
                .await
                .unwrap()
                .into_inner()
                .token
        }
    };
    let mut client =
        certfleet_e2e::certificates(second.grpc_addr, &token(pb::Role::Write).await).await;
    let mut bundles =
        certfleet_e2e::certificates(second.grpc_addr, &token(pb::Role::Bundle).await).await;
    let restored = wait_for(&mut client, &ids[1], Duration::from_secs(5), is_valid)
        .await
        .unwrap();
    assert_eq!(
        restored.current.as_ref().map(|version| version.version),
        Some(1)
    );
    client
        .renew_certificate(RenewCertificateRequest { id: ids[1].clone() })
        .await
        .unwrap();
    wait_for(
        &mut client,
        &ids[1],
        Duration::from_secs(60),
        |certificate| {
            is_valid(certificate)
                && certificate
                    .current
                    .as_ref()
                    .is_some_and(|version| version.version == 2)
        },
    )
    .await
    .unwrap();
    let renewed = bundle(&mut bundles, &ids[1]).await.unwrap();
    assert_eq!(
        public_key_of(&renewed.private_key_pem),
        leaf_facts(&renewed.certificate_pem).public_key_der,
        "the renewed key must match its certificate"
    );

    second.shutdown().await;
    env.stop().await;
    drop((store, restored_store));
    database.drop_database().await.unwrap();
    fresh.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_into_a_database_with_organizations_is_refused() {
    let database = TestDatabase::create().await.unwrap();
    let store = Store::connect(&database.url()).await.unwrap();
    store.migrate().await.unwrap();
    let organization = Organization {
        id: certfleet_store::new_id(),
        slug: "live".to_owned(),
        name: "Live".to_owned(),
        contact_email: "ops@live.example".to_owned(),
        created_at: 1,
        deleted_at: None,
    };
    let audit = AuditEntry::new(
        Some(&organization.id),
        "admin",
        "organization.create",
        None,
        1,
    );
    store
        .create_organization(organization, audit)
        .await
        .unwrap();

    let folder = tempfile::tempdir().unwrap();
    let archive = Archive::open(&ArchiveConfig::Dir {
        path: folder.path().join("backups"),
    })
    .unwrap();
    let vault = Vault::new(Arc::new(LocalMasterKey::generate().unwrap()));
    let options = RestoreOptions {
        merge: false,
        database: database.name().to_owned(),
    };
    let error = restore(&store, &archive, &vault, 1, &options)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains(database.name()), "{message}");
    assert!(message.contains("--merge"), "{message}");
    drop(store);
    database.drop_database().await.unwrap();
}
