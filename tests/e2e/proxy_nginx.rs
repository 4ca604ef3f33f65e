//! certfleet-agent with a real nginx (Debian) on loopback, in the distributed
//! mode: after issuance the agent installs the certificate, nginx serves it
//! (`openssl s_client` shows its serial) and the installation is reported
//! verified; a renewal is served with no failed handshake while a client
//! loop runs throughout the reload; a broken include makes `nginx -t` fail,
//! the old certificate keeps being served and the failure is reported (and
//! the agent installs the new one once the include is fixed); a certificate
//! issued while the agent is down is installed when it comes back;
//! revocation removes the files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Nginx, Pebble, PebbleOptions};
use certfleet_e2e::{
    Certificates, LoggedChild, RoleStack, certificates, organization, organizations, request,
    role_binary, wait_for,
};
use certfleet_proto::v1::{self as pb, CreateApiTokenRequest};
use tokio::time::Instant;

const NAMES: [&str; 2] = ["www.nginx-shop.test", "nginx-shop.test"];

/// A platform agent token, written to a file for `--token-file`.
pub async fn agent_token_file(grpc: SocketAddr, admin_token: &str, dir: &Path) -> PathBuf {
    let token = organizations(grpc, admin_token)
        .await
        .create_api_token(CreateApiTokenRequest {
            organization: String::new(),
            role: pb::Role::Agent as i32,
            description: "proxy agent".to_owned(),
            expires_in_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let path = dir.join("agent-token");
    std::fs::write(&path, token).unwrap();
    path
}

/// Starts certfleet-agent with `args` after the common ones.
pub fn spawn_agent(
    grpc: SocketAddr,
    token_file: &Path,
    logs: &Path,
    log_name: &str,
    args: &[String],
) -> LoggedChild {
    let mut command = std::process::Command::new(role_binary("certfleet-agent"));
    command
        .arg("--api-url")
        .arg(format!("http://{grpc}"))
        .arg("--token-file")
        .arg(token_file)
        .args(args)
        .env("RUST_LOG", "info");
    LoggedChild::spawn(command, logs.join(log_name), "certfleet-agent").unwrap()
}

/// Waits until agent `agent` reports version `version` of `id` with `ok`.
pub async fn wait_for_installation(
    client: &mut Certificates,
    id: &str,
    agent: &str,
    version: u32,
    ok: bool,
    agent_log: impl Fn() -> String,
) -> pb::Installation {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let certificate = client
            .get_certificate(pb::GetCertificateRequest {
                id: id.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if let Some(found) = certificate
            .installations
            .iter()
            .find(|i| i.agent == agent && i.version == version && i.ok == ok)
        {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {} report of version {version} by {agent}: {:?}\nagent log:\n{}",
            if ok { "ok" } else { "failed" },
            certificate.installations,
            agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the agent logs that it runs (its queue is bound by then).
pub async fn wait_until_running(agent: &mut LoggedChild) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.log().contains("certfleet-agent running") {
        assert!(
            Instant::now() < deadline,
            "agent did not start:\n{}",
            agent.log()
        );
        assert!(
            agent.exited().unwrap().is_none(),
            "agent exited:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests a certificate for `names` and waits until it is valid: its id
/// and current version.
pub async fn issued(client: &mut Certificates, names: &[&str]) -> (String, pb::CertificateVersion) {
    let id = client
        .create_certificate(request(names, pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner()
        .id;
    let certificate = wait_for(
        client,
        &id,
        Duration::from_secs(60),
        certfleet_e2e::is_valid,
    )
    .await
    .unwrap();
    (id, certificate.current.unwrap())
}

/// Renews `id` now and waits until version `version` is valid: that version.
pub async fn renewed(client: &mut Certificates, id: &str, version: u32) -> pb::CertificateVersion {
    client
        .renew_certificate(pb::RenewCertificateRequest { id: id.to_owned() })
        .await
        .unwrap();
    wait_for(client, id, Duration::from_secs(60), |c| {
        c.current.as_ref().is_some_and(|v| v.version == version) && certfleet_e2e::is_valid(c)
    })
    .await
    .unwrap()
    .current
    .unwrap()
}

/// The serial `openssl s_client` sees for `name` at `address` (upper-case hex).
pub fn openssl_serial(address: SocketAddr, name: &str) -> String {
    let script = format!(
        "openssl s_client -connect {address} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -serial"
    );
    let output = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .strip_prefix("serial=")
        .unwrap_or(text.trim())
        .to_ascii_uppercase()
}

/// Strips leading zeros, so serials from different printers compare.
pub fn same_serial(a: &str, b: &str) -> bool {
    a.trim_start_matches('0')
        .eq_ignore_ascii_case(b.trim_start_matches('0'))
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_gets_every_version_without_a_failed_request() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let stack = RoleStack::create(&pebble).await.unwrap();
    let (processes, grpc) = stack.spawn_api_responder_issuer(&pebble).await.unwrap();
    let (write, _bundle) = organization(grpc, &stack.admin_token, "nginx-shop").await;
    let mut client = certificates(grpc, &write).await;
    let nginx = Nginx::start().await.unwrap();
    let token_file = agent_token_file(grpc, &stack.admin_token, stack.logs.path()).await;
    let certfleet_dir = nginx.certfleet_dir();
    let mut agent_args = vec![
        "--target".to_owned(),
        "nginx".to_owned(),
        "--name".to_owned(),
        "web-1/nginx".to_owned(),
        "--nginx-dir".to_owned(),
        certfleet_dir.to_string_lossy().into_owned(),
        "--nginx-bin".to_owned(),
        nginx.program().to_string_lossy().into_owned(),
        "--nginx-listen".to_owned(),
        nginx.listen(),
        "--verify-address".to_owned(),
        nginx.address().to_string(),
        "--amqp-url".to_owned(),
        stack.vhost.amqp_url(),
    ];
    for arg in nginx.args() {
        agent_args.push(format!("--nginx-arg={arg}"));
    }
    let mut agent = spawn_agent(
        grpc,
        &token_file,
        stack.logs.path(),
        "agent.log",
        &agent_args,
    );
    wait_until_running(&mut agent).await;
    let agent_log = agent.log_path.clone();
    let log = move || std::fs::read_to_string(&agent_log).unwrap_or_default();

    // Issuance: installed, served, verified.
    let (id, v1) = issued(&mut client, &NAMES).await;
    let report = wait_for_installation(&mut client, &id, "web-1/nginx", 1, true, &log).await;
    assert!(
        same_serial(&report.serial, &v1.serial),
        "{report:?} vs {}",
        v1.serial
    );
    assert!(report.verified_at > 0);
    for name in NAMES {
        assert!(
            same_serial(&openssl_serial(nginx.address(), name), &v1.serial),
            "openssl sees {} for {name}, want {}",
            openssl_serial(nginx.address(), name),
            v1.serial
        );
    }
    let key = certfleet_dir.join("certs").join(&id).join("privkey.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "private key mode");

    // Renewal with a client loop running throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let last_serial = Arc::new(std::sync::Mutex::new(String::new()));
    let looping = {
        let (stop, handshakes, failures, last_serial) = (
            stop.clone(),
            handshakes.clone(),
            failures.clone(),
            last_serial.clone(),
        );
        let address = nginx.address();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match certfleet_proxy::verify_served(address, NAMES[0], Duration::from_secs(5))
                    .await
                {
                    Ok(served) => *last_serial.lock().unwrap() = served.serial,
                    Err(error) => failures.lock().unwrap().push(error.to_string()),
                }
                handshakes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let v2 = renewed(&mut client, &id, 2).await;
    let renewed_at = Instant::now();
    wait_for_installation(&mut client, &id, "web-1/nginx", 2, true, &log).await;
    let install_ms = renewed_at.elapsed().as_millis();
    // A few more handshakes after the switch.
    let seen = handshakes.load(Ordering::Relaxed);
    while handshakes.load(Ordering::Relaxed) < seen + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    looping.await.unwrap();
    let failed = failures.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} of {} handshakes failed during the renewal: {failed:?}",
        failed.len(),
        handshakes.load(Ordering::Relaxed)
    );
    assert!(handshakes.load(Ordering::Relaxed) > 20);
    assert!(same_serial(&last_serial.lock().unwrap(), &v2.serial));
    assert!(same_serial(
        &openssl_serial(nginx.address(), NAMES[0]),
        &v2.serial
    ));
    eprintln!(
        "renewal served with {} handshakes, none failed; version 2 installed, reloaded and verified {install_ms} ms after it was seen valid",
        handshakes.load(Ordering::Relaxed)
    );

    // A broken include: nginx -t fails, the old certificate stays, the
    // failure is reported; fixed, the agent's retry installs the new one.
    let broken = certfleet_dir.join("servers").join("zz-operator.conf");
    std::fs::write(&broken, "this_is_not_a_directive on;\n").unwrap();
    let v3 = renewed(&mut client, &id, 3).await;
    let failed = wait_for_installation(&mut client, &id, "web-1/nginx", 3, false, &log).await;
    assert!(
        failed.error.contains("this_is_not_a_directive"),
        "the report carries nginx's complaint: {failed:?}"
    );
    assert!(
        same_serial(&openssl_serial(nginx.address(), NAMES[0]), &v2.serial),
        "the old certificate keeps being served"
    );
    let served_key = std::fs::read_to_string(&key).unwrap();
    assert!(served_key.contains("PRIVATE KEY"));
    std::fs::remove_file(&broken).unwrap();
    wait_for_installation(&mut client, &id, "web-1/nginx", 3, true, &log).await;
    assert!(same_serial(
        &openssl_serial(nginx.address(), NAMES[0]),
        &v3.serial
    ));

    // Issued while the agent is away: installed when it is back.
    assert!(
        agent.terminate().success(),
        "agent stops cleanly:\n{}",
        log()
    );
    let late = client
        .create_certificate(request(&["late.nginx-shop.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner()
        .id;
    wait_for(
        &mut client,
        &late,
        Duration::from_secs(60),
        certfleet_e2e::is_valid,
    )
    .await
    .unwrap();
    let mut agent = spawn_agent(
        grpc,
        &token_file,
        stack.logs.path(),
        "agent-2.log",
        &agent_args,
    );
    let agent_log = agent.log_path.clone();
    let log = move || std::fs::read_to_string(&agent_log).unwrap_or_default();
    wait_for_installation(&mut client, &late, "web-1/nginx", 1, true, &log).await;

    // Revocation: the files go, nginx no longer serves it.
    client
        .revoke_certificate(pb::RevokeCertificateRequest {
            id: id.clone(),
            reason: pb::RevocationReason::Superseded as i32,
        })
        .await
        .unwrap();
    let conf = certfleet_dir.join("servers").join(format!("{id}.conf"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while conf.exists() || key.exists() {
        assert!(Instant::now() < deadline, "files not removed:\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // nginx reloads gracefully: the old workers finish what they hold first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while same_serial(&openssl_serial(nginx.address(), NAMES[0]), &v3.serial) {
        assert!(
            Instant::now() < deadline,
            "nginx still serves the revoked certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(agent.exited().unwrap().is_none());
    assert!(
        !log().contains("PRIVATE KEY"),
        "no key material in the agent's log"
    );
    agent.terminate();
    drop(processes);
    stack.remove().await.unwrap();
}
