//! `certfleet renew-due`: `--dry-run` lists exactly the certificates the
//! scheduler renews (due, auto-renewing, valid, not deleted) with the reason,
//! and changes nothing; without it, exactly those are renewed.

use std::process::Stdio;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_e2e::{TestEnv, certfleet_binary, is_valid, request, wait_for};
use certfleet_proto::v1::{self as pb, DeleteCertificateRequest};

/// Pebble issues certificates for this long here: they renew at half their
/// lifetime (30 s) by the lifetime rule, or after 10 s when they ask to be
/// renewed 50 s before expiry.
const LIFETIME: Duration = Duration::from_secs(60);

async fn renew_due(data_dir: &std::path::Path, dry_run: bool) -> (String, String) {
    let mut command = tokio::process::Command::new(certfleet_binary());
    command.arg("renew-due").arg("--data-dir").arg(data_dir);
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command.stdin(Stdio::null()).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn renew_due_lists_and_renews_exactly_what_the_scheduler_would() {
    // One scheduler pass at start, then none for an hour: nothing renews
    // behind the test's back.
    let options = PebbleOptions {
        certificate_validity: Some(LIFETIME),
        ..PebbleOptions::default()
    };
    let env = TestEnv::start_with(options, |config| {
        config.scheduler_interval = Duration::from_secs(3600);
    })
    .await
    .unwrap();
    let (mut client, _) = env.organization("renewdue").await;
    let mut ids = Vec::new();
    let mut renew_ats = Vec::new();
    for (name, renew_before_seconds, auto_renew) in [
        ("due.renewdue.test", 50, true),
        ("later.renewdue.test", 0, true),
        ("manual.renewdue.test", 50, false),
        ("deleted.renewdue.test", 50, true),
    ] {
        let mut create = request(&[name], pb::KeyType::EcdsaP256);
        create.renew_before_expiry_seconds = renew_before_seconds;
        create.auto_renew = Some(auto_renew);
        let created = client
            .create_certificate(create)
            .await
            .unwrap()
            .into_inner();
        let issued = wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
            .await
            .unwrap();
        renew_ats.push(issued.renew_at);
        ids.push(created.id);
    }
    // Wait (real time: the command reads the clock itself) until the first
    // is due; the second is not due for another 20 s.
    let now_s = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    while now_s() <= renew_ats[0] {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(now_s() < renew_ats[1], "the later one is not due yet");
    client
        .delete_certificate(DeleteCertificateRequest { id: ids[3].clone() })
        .await
        .unwrap();

    let data_dir = env.data_dir.path();
    let (listed, summary) = renew_due(data_dir, true).await;
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 1, "{listed}");
    assert!(lines[0].starts_with(&format!("{}\tdue.renewdue.test\t", ids[0])));
    assert!(lines[0].contains("renewal time"), "{listed}");
    assert!(lines[0].contains("50 seconds before expiry"), "{listed}");
    assert!(
        summary.contains("1 certificates due for renewal (dry run"),
        "{summary}"
    );
    // The dry run changed nothing.
    let unchanged = wait_for(&mut client, &ids[0], Duration::from_secs(1), is_valid)
        .await
        .unwrap();
    assert_eq!(unchanged.current.unwrap().version, 1);

    // The same list, now renewed: only the due certificate gets version 2.
    let (renewed, summary) = renew_due(data_dir, false).await;
    assert_eq!(renewed, listed);
    assert!(summary.contains("1 renewals queued"), "{summary}");
    wait_for(
        &mut client,
        &ids[0],
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
    for id in &ids[1..3] {
        let certificate = wait_for(&mut client, id, Duration::from_secs(1), is_valid)
            .await
            .unwrap();
        assert_eq!(certificate.current.unwrap().version, 1, "{id}");
    }
    env.stop().await;
}
