//! HTTP-01 answered from a webroot on disk instead of certfleet's responder,
//! in the distributed mode: no `certfleet-responder` runs; a real nginx
//! serves a directory on the port Pebble validates on, certfleet-agent
//! (`--webroot`) writes the open challenges into it, the issuer's self-check
//! and Pebble fetch them from nginx, the certificate becomes valid, the
//! agent installs it into its (separate, HTTPS) nginx, and removes the
//! answered challenges from the webroot.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Nginx, Pebble, PebbleOptions};
use certfleet_e2e::{
    RoleStack, all_logs, certificates, organization, request, wait_all_healthy, wait_for,
};
use certfleet_proto::v1 as pb;
use tokio::time::Instant;

use crate::proxy_nginx::{
    agent_token_file, same_serial, spawn_agent, wait_for_installation, wait_until_running,
};

const NAMES: [&str; 2] = ["www.webroot-shop.test", "webroot-shop.test"];
const AGENT: &str = "web-1/nginx";

/// The files in `<webroot>/.well-known/acme-challenge/`.
fn challenge_files(webroot: &Path) -> Vec<String> {
    std::fs::read_dir(webroot.join(".well-known/acme-challenge"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn http01_is_answered_from_the_agents_webroot() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let stack = RoleStack::create(&pebble).await.unwrap();
    let (api, grpc) = stack.spawn_api().unwrap();
    let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
    // An api and an issuer, no responder: only the webroot answers HTTP-01.
    let mut processes = vec![
        api,
        stack
            .spawn(
                "certfleet-issuer",
                "issuer",
                vec!["--http01-self-check-addr".to_owned(), http01.to_string()],
            )
            .unwrap(),
    ];
    wait_all_healthy(&mut processes).await.unwrap();

    let webroot = tempfile::tempdir().unwrap();
    let web = Nginx::start_webroot(pebble.http01_port(), webroot.path())
        .await
        .unwrap();
    let proxy = Nginx::start().await.unwrap();
    let (write, _bundle) = organization(grpc, &stack.admin_token, "webroot-shop").await;
    let mut client = certificates(grpc, &write).await;
    let token_file = agent_token_file(grpc, &stack.admin_token, stack.logs.path()).await;
    let mut agent_args = vec![
        "--target".to_owned(),
        "nginx".to_owned(),
        "--name".to_owned(),
        AGENT.to_owned(),
        "--nginx-dir".to_owned(),
        proxy.certfleet_dir().to_string_lossy().into_owned(),
        "--nginx-bin".to_owned(),
        proxy.program().to_string_lossy().into_owned(),
        "--nginx-listen".to_owned(),
        proxy.listen(),
        "--verify-address".to_owned(),
        proxy.address().to_string(),
        "--amqp-url".to_owned(),
        stack.vhost.amqp_url(),
        "--webroot".to_owned(),
        webroot.path().to_string_lossy().into_owned(),
    ];
    for arg in proxy.args() {
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
    let access_log = web.prefix().join("access.log");
    let log = {
        let access_log = access_log.clone();
        move || {
            format!(
                "--- agent\n{}\n--- webroot nginx access.log\n{}",
                std::fs::read_to_string(&agent_log).unwrap_or_default(),
                std::fs::read_to_string(&access_log).unwrap_or_default()
            )
        }
    };

    // (a) Valid with no responder running: the webroot answered.
    let id = client
        .create_certificate(request(&NAMES, pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner()
        .id;
    let v1 = wait_for(
        &mut client,
        &id,
        Duration::from_secs(60),
        certfleet_e2e::is_valid,
    )
    .await
    .unwrap_or_else(|error| {
        panic!(
            "{error}\n{}\n{}\n{}",
            all_logs(&processes),
            log(),
            web.logs()
        )
    })
    .current
    .unwrap();
    let written = agent
        .log()
        .matches("challenge written to the webroot")
        .count();
    assert!(
        written >= NAMES.len(),
        "the agent wrote {written} challenges for {} names:\n{}",
        NAMES.len(),
        log()
    );
    let access = std::fs::read_to_string(&access_log).unwrap_or_default();
    let answered: Vec<&str> = access
        .lines()
        .filter(|line| {
            line.contains("GET /.well-known/acme-challenge/") && line.contains("\" 200 ")
        })
        .collect();
    eprintln!("answered from the webroot:\n{}", answered.join("\n"));
    // Pebble's validation requests (its user agent), one token per name.
    let validated: std::collections::BTreeSet<&str> = answered
        .iter()
        .filter(|line| line.contains("Pebble"))
        .filter_map(|line| line.split("/acme-challenge/").nth(1)?.split(' ').next())
        .collect();
    assert!(
        validated.len() >= NAMES.len(),
        "Pebble fetched {} tokens from the webroot, want {}:\n{}",
        validated.len(),
        NAMES.len(),
        log()
    );

    // (b) The answered challenges leave the webroot.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !challenge_files(webroot.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "challenge files remain in the webroot: {:?}\n{}",
            challenge_files(webroot.path()),
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // And the agent installed the certificate into its proxy.
    let report = wait_for_installation(&mut client, &id, AGENT, 1, true, &log).await;
    assert!(
        same_serial(&report.serial, &v1.serial),
        "{report:?} vs {}",
        v1.serial
    );

    assert!(
        agent.exited().unwrap().is_none(),
        "agent exited:\n{}",
        log()
    );
    assert!(
        agent.terminate().success(),
        "agent stops cleanly:\n{}",
        log()
    );
    drop(processes);
    drop(web);
    drop(proxy);
    stack.remove().await.unwrap();
}
