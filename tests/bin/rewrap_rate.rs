//! Rewrap throughput: an embedded certfleet issues `CERTIFICATES` HTTP-01
//! certificates from Pebble (one sealed key each, plus the organization's
//! ACME account key), is stopped, and the stored blobs are rewrapped three
//! times, as `certfleet vault rewrap` does (batches of 200, 8 at once):
//! master key -> another master key, master key -> KMS key (moto, on
//! loopback), KMS key -> another KMS key. Prints keys per second for each.
//! Run by `deploy/local/bench-rewrap.sh`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use certfleet_cli::vault::{RewrapOptions, probe_key_id, rewrap_all};
use certfleet_e2e::certfleet_testkit::{Moto, Pebble, PebbleOptions};
use certfleet_e2e::{certificates, embedded_config, is_valid, organization, request};
use certfleet_proto::v1 as pb;
use certfleet_store::Store;
use certfleet_vault::{AwsKms, AwsKmsConfig, LocalMasterKey, Vault};

const CERTIFICATES: usize = 400;

fn kms(moto: &Moto, key_id: &str) -> anyhow::Result<Vault> {
    let config = AwsKmsConfig {
        key_id: key_id.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint_url: Some(moto.endpoint_url()),
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned().into(),
        session_token: None,
    };
    Ok(Vault::new(Arc::new(AwsKms::new(&config)?)))
}

/// Issues the certificates; returns the data dir (its database and master key).
async fn populate(pebble: &Pebble) -> anyhow::Result<tempfile::TempDir> {
    let data_dir = tempfile::tempdir()?;
    let config = embedded_config(pebble, data_dir.path());
    let embedded =
        certfleet_cli::embedded::start(config, Arc::new(certfleet_core::SystemClock)).await?;
    let admin = std::fs::read_to_string(&embedded.admin_token_path)?;
    let (write, _) = organization(embedded.grpc_addr, &admin, "rewrap").await;
    let mut client = certificates(embedded.grpc_addr, &write).await;
    let mut ids = Vec::with_capacity(CERTIFICATES);
    for index in 0..CERTIFICATES {
        let created = client
            .create_certificate(request(
                &[&format!("n{index}.rewrap.test")],
                pb::KeyType::EcdsaP256,
            ))
            .await?
            .into_inner();
        ids.push(created.id);
    }
    let started = std::time::Instant::now();
    for id in &ids {
        loop {
            let certificate = client
                .get_certificate(pb::GetCertificateRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            if is_valid(&certificate) {
                break;
            }
            if certificate.status == pb::CertificateStatus::Failed as i32 {
                bail!("{id}: {}", certificate.last_error);
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("{id}: not valid within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    embedded.shutdown().await;
    Ok(data_dir)
}

async fn measure(label: &str, store: &Store, from: &Vault, to: &Vault) -> anyhow::Result<()> {
    let target = probe_key_id(to).await?;
    let options = RewrapOptions {
        batch_size: 200,
        concurrency: 8,
        dry_run: false,
    };
    let report = rewrap_all(store, from, to, &target, &options, |_| {}).await?;
    if !report.failures.is_empty() || report.changed > 0 {
        bail!("{label}: {report:?}");
    }
    println!(
        "{label}: {} keys in {:.2} s, {:.0} keys/s",
        report.rewrapped,
        report.elapsed.as_secs_f64(),
        report.rewrapped as f64 / report.elapsed.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    certfleet_acme::install_crypto_provider();
    let moto = Moto::start().await.context("starting moto")?;
    let first = moto.create_kms_key().await.context("creating a KMS key")?;
    let second = moto.create_kms_key().await.context("creating a KMS key")?;
    let pebble = Pebble::start(PebbleOptions::default())
        .await
        .context("starting pebble")?;
    let data_dir = populate(&pebble).await?;
    let url = format!(
        "sqlite://{}",
        data_dir.path().join("certfleet.db").display()
    );
    let store = Store::connect(&url).await?;
    let master = Vault::new(Arc::new(
        LocalMasterKey::load_file(data_dir.path().join("master.key")).await?,
    ));
    let new_master = Vault::new(Arc::new(LocalMasterKey::generate()?));
    measure("master key -> master key", &store, &master, &new_master).await?;
    let first = kms(&moto, &first)?;
    measure("master key -> aws-kms (moto)", &store, &new_master, &first).await?;
    let second = kms(&moto, &second)?;
    measure("aws-kms -> aws-kms (moto)", &store, &first, &second).await?;
    Ok(())
}
