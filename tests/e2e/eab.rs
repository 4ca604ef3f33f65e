//! External Account Binding against a Pebble that requires it: without a
//! binding, and with a wrong HMAC key, the certificate fails at once saying
//! what to do; with the binding set through the admin API it is issued and the
//! account row names the key id.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_e2e::{
    TestEnv, certfleet_binary, is_valid, organization, organizations, request, wait_for,
};
use certfleet_proto::v1::{self as pb, Certificate, SetExternalAccountBindingRequest};

const KEY_ID: &str = "kid-1";
/// The HMAC key Pebble knows for `KEY_ID` (48 bytes, base64url).
const HMAC_KEY: &str = "Y2VydGZsZWV0IGUyZSBlYWIgaG1hYyBrZXksIDQ4IGJ5dGVzIGxvbmcuLi4uLi4u";
/// Another 48-byte key, base64url.
const WRONG_HMAC_KEY: &str = "bm90IHRoZSBrZXkgcGViYmxlIGhhcywgYnV0IGFsc28gNDggYnl0ZXMgbG9uZyEh";

async fn pebble_requiring_eab() -> TestEnv {
    let options = PebbleOptions {
        eab_keys: vec![(KEY_ID.to_owned(), HMAC_KEY.to_owned())],
        ..PebbleOptions::default()
    };
    TestEnv::start_with(options, |_| {}).await.unwrap()
}

async fn set_eab(env: &TestEnv, slug: &str, hmac_key: &str) {
    organizations(env.grpc, &env.admin_token)
        .await
        .set_external_account_binding(SetExternalAccountBindingRequest {
            organization: slug.to_owned(),
            directory_url: env.pebble.directory_url(),
            key_id: KEY_ID.to_owned(),
            hmac_key: hmac_key.to_owned(),
        })
        .await
        .unwrap();
}

/// Requests a certificate for `name` with the `write` token and waits until
/// it is valid or failed.
async fn settle(env: &TestEnv, write: &str, name: &str) -> Certificate {
    let mut client = certfleet_e2e::certificates(env.grpc, write).await;
    let created = client
        .create_certificate(request(&[name], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();
    wait_for(
        &mut client,
        &created.id,
        Duration::from_secs(60),
        |certificate| {
            is_valid(certificate) || certificate.status == pb::CertificateStatus::Failed as i32
        },
    )
    .await
    .unwrap()
}

fn assert_failed_at_once(certificate: &Certificate) {
    assert_eq!(
        certificate.status,
        pb::CertificateStatus::Failed as i32,
        "{certificate:?}"
    );
    // Final at the first attempt: nothing changes by asking the CA again.
    assert_eq!(certificate.attempts, 1, "{certificate:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn eab_missing_fails_naming_the_command() {
    let env = pebble_requiring_eab().await;
    let (write, _) = organization(env.grpc, &env.admin_token, "no-eab").await;
    let certificate = settle(&env, &write, "no-eab.test").await;
    assert_failed_at_once(&certificate);
    let directory = env.pebble.directory_url();
    assert!(
        certificate
            .last_error
            .contains("the CA requires External Account Binding"),
        "{}",
        certificate.last_error
    );
    assert!(
        certificate.last_error.contains(&format!(
            "certfleet org eab set --org no-eab --directory {directory}"
        )),
        "{}",
        certificate.last_error
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn eab_with_a_wrong_hmac_key_fails_naming_the_key_id() {
    let env = pebble_requiring_eab().await;
    let (write, _) = organization(env.grpc, &env.admin_token, "wrong-eab").await;
    set_eab(&env, "wrong-eab", WRONG_HMAC_KEY).await;
    let certificate = settle(&env, &write, "wrong-eab.test").await;
    assert_failed_at_once(&certificate);
    let directory = env.pebble.directory_url();
    assert!(
        certificate.last_error.contains(&format!(
            "the CA refused the External Account Binding key id {KEY_ID} for {directory}"
        )),
        "{}",
        certificate.last_error
    );
    assert!(
        certificate
            .last_error
            .contains("check the key id and HMAC key"),
        "{}",
        certificate.last_error
    );
    assert!(!certificate.last_error.contains(WRONG_HMAC_KEY));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn eab_set_through_the_api_registers_and_issues() {
    let env = pebble_requiring_eab().await;
    let (write, _) = organization(env.grpc, &env.admin_token, "with-eab").await;
    set_eab(&env, "with-eab", HMAC_KEY).await;
    let certificate = settle(&env, &write, "with-eab.test").await;
    assert!(is_valid(&certificate), "{certificate:?}");

    let store = &env.embedded.as_ref().unwrap().store;
    let organization = store
        .find_organization_by_slug("with-eab")
        .await
        .unwrap()
        .unwrap();
    let account = store
        .find_acme_account(&organization.id, &env.pebble.directory_url())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.eab_key_id.as_deref(), Some(KEY_ID));
    env.stop().await;
}

/// Runs the `certfleet` binary against the env's API with the admin token,
/// `stdin` written to its standard input.
fn cli(env: &TestEnv, arguments: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(certfleet_binary())
        .args(arguments)
        .env("CERTFLEET_ENDPOINT", format!("http://{}", env.grpc))
        .env("CERTFLEET_TOKEN", env.admin_token.trim())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_sets_the_eab_from_stdin_or_a_file_and_deletes_it() {
    let env = pebble_requiring_eab().await;
    let (write, _) = organization(env.grpc, &env.admin_token, "cli-eab").await;
    let directory = env.pebble.directory_url();

    // A bad key in a file: refused by the server, naming the field, not the key.
    let files = tempfile::tempdir().unwrap();
    let bad_file = files.path().join("bad.hmac");
    std::fs::write(&bad_file, "c2hvcnQ\n").unwrap();
    let bad = cli(
        &env,
        &[
            "org",
            "eab",
            "set",
            "--org",
            "cli-eab",
            "--directory",
            &directory,
            "--key-id",
            KEY_ID,
            "--hmac-key-file",
            bad_file.to_str().unwrap(),
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("hmac_key"), "{stderr}");
    assert!(!stderr.contains("c2hvcnQ"), "{stderr}");

    // The key on stdin, with the newline a shell leaves.
    let set = cli(
        &env,
        &[
            "org",
            "eab",
            "set",
            "--org",
            "cli-eab",
            "--directory",
            &directory,
            "--key-id",
            KEY_ID,
            "--hmac-key-file",
            "-",
        ],
        &format!("{HMAC_KEY}\n"),
    );
    let stdout = String::from_utf8_lossy(&set.stdout);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert!(stdout.contains(&format!("key id {KEY_ID}")), "{stdout}");
    assert!(!stdout.contains(HMAC_KEY), "{stdout}");

    let certificate = settle(&env, &write, "cli-eab.test").await;
    assert!(is_valid(&certificate), "{certificate:?}");

    let delete = [
        "org",
        "eab",
        "delete",
        "--org",
        "cli-eab",
        "--directory",
        &directory,
    ];
    let deleted = cli(&env, &delete, "");
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let again = cli(&env, &delete, "");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no external account binding"), "{stderr}");
    env.stop().await;
}
