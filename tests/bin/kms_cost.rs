//! What AWS KMS adds to an issuance: the median of 20 sequential HTTP-01
//! issuances through an embedded certfleet with the local master key, then
//! through one whose data keys come from a KMS key in moto's server, on the
//! same Pebble. Run by `deploy/local/bench-kms.sh`; prints one line.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use certfleet_e2e::certfleet_testkit::{Moto, Pebble, PebbleOptions};
use certfleet_e2e::{certificates, embedded_config, is_valid, organization, request};
use certfleet_proto::v1 as pb;
use certfleet_vault::AwsKmsConfig;

const RUNS: usize = 20;

/// The time from CreateCertificate to `valid`, polled every 5 ms.
async fn issue(client: &mut certfleet_e2e::Certificates, name: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let created = client
        .create_certificate(request(&[name], pb::KeyType::EcdsaP256))
        .await?
        .into_inner();
    loop {
        let certificate = client
            .get_certificate(pb::GetCertificateRequest {
                id: created.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if is_valid(&certificate) {
            return Ok(started.elapsed());
        }
        if certificate.status == pb::CertificateStatus::Failed as i32 {
            bail!("{name}: {}", certificate.last_error);
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{name}: not valid within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The median of `RUNS` issuances after one warm-up (which registers the
/// organization's ACME account).
async fn median_issuance(
    pebble: &Pebble,
    kms: Option<AwsKmsConfig>,
    slug: &str,
) -> anyhow::Result<Duration> {
    let data_dir = tempfile::tempdir()?;
    let mut config = embedded_config(pebble, data_dir.path());
    config.kms = kms;
    let embedded =
        certfleet_cli::embedded::start(config, std::sync::Arc::new(certfleet_core::SystemClock))
            .await?;
    let admin = std::fs::read_to_string(&embedded.admin_token_path)?;
    let (write, _) = organization(embedded.grpc_addr, &admin, slug).await;
    let mut client = certificates(embedded.grpc_addr, &write).await;
    issue(&mut client, &format!("warm-up.{slug}.test")).await?;
    let mut times = Vec::new();
    for index in 0..RUNS {
        times.push(issue(&mut client, &format!("n{index}.{slug}.test")).await?);
    }
    embedded.shutdown().await;
    times.sort();
    Ok(times[times.len() / 2])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    certfleet_acme::install_crypto_provider();
    let moto = Moto::start().await.context("starting moto")?;
    let key_id = moto.create_kms_key().await.context("creating a KMS key")?;
    let pebble = Pebble::start(PebbleOptions::default())
        .await
        .context("starting pebble")?;
    let local = median_issuance(&pebble, None, "local").await?;
    let kms = AwsKmsConfig {
        key_id,
        region: "us-east-1".to_owned(),
        endpoint_url: Some(moto.endpoint_url()),
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned().into(),
        session_token: None,
    };
    let with_kms = median_issuance(&pebble, Some(kms), "kms").await?;
    println!(
        "median of {RUNS} issuances: local master key {:.1} ms, aws-kms (moto) {:.1} ms, added {:.1} ms",
        local.as_secs_f64() * 1000.0,
        with_kms.as_secs_f64() * 1000.0,
        (with_kms.as_secs_f64() - local.as_secs_f64()) * 1000.0
    );
    Ok(())
}
