//! Rate-limit budgets kept per CA in the database: three issuer processes,
//! each allowed 3 new certificates per registered domain per hour
//! (`--rate-limit certificates-per-domain=3/1h`), are handed 8
//! certificates under `budget.test` at once. Together they order exactly 3
//! at Pebble; the other 5 stay `pending`, saying why and until when (the
//! window frees in an hour), and stay so: nobody exceeds the budget. Pebble
//! sees exactly 3 orders for them, and the database counts 3 events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions, free_port};
use certfleet_e2e::{
    Certificates, RoleProcess, RoleStack, organization, request, terminate_all, wait_all_healthy,
};
use certfleet_proto::v1::{self as pb, Certificate, GetCertificateRequest};
use tokio::time::Instant;

const CERTIFICATES: usize = 8;
const LIMIT: usize = 3;
const DOMAIN: &str = "budget.test";
const WARMUP_DOMAIN: &str = "warmup.test";
const RATE_LIMIT: &str = "certificates-per-domain=3/1h";
const HOUR_MS: i64 = 3_600_000;
/// The reason shown on a certificate the budget holds back, up to the time.
const WAITING_PREFIX: &str = "waiting for the rate-limit budget: new certificates for the \
     registered domain budget.test at default: 3 per 1 hour (3 used); next attempt at ";

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The orders Pebble added, from its log.
fn pebble_orders(pebble_log: &Path) -> Vec<String> {
    std::fs::read_to_string(pebble_log)
        .unwrap_or_default()
        .split("Added order \"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

fn all_logs(processes: &[(RoleProcess, SocketAddr)], pebble_log: &Path) -> String {
    let mut logs = certfleet_e2e::all_logs(processes);
    logs.push_str("--- pebble (Added order lines)\n");
    logs.push_str(
        &std::fs::read_to_string(pebble_log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("Added order"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    logs
}

/// Creates `n1.<domain>` … `n<count>.<domain>` (HTTP-01) at once; their ids.
async fn create_all(client: &Certificates, domain: &str, count: usize) -> Vec<String> {
    futures_util::future::join_all((1..=count).map(|index| {
        let mut client = client.clone();
        async move {
            let name = format!("n{index}.{domain}");
            client
                .create_certificate(request(&[&name], pb::KeyType::EcdsaP256))
                .await
                .unwrap()
                .into_inner()
                .id
        }
    }))
    .await
}

/// Every certificate's current state, by id.
async fn poll(client: &mut Certificates, ids: &[String]) -> HashMap<String, Certificate> {
    let mut certificates = HashMap::new();
    for id in ids {
        let certificate = client
            .get_certificate(GetCertificateRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        certificates.insert(id.clone(), certificate);
    }
    certificates
}

fn is(certificate: &Certificate, status: pb::CertificateStatus) -> bool {
    certificate.status == status as i32
}

/// Held back by the budget: pending, with a reason and a next attempt.
fn is_waiting(certificate: &Certificate) -> bool {
    is(certificate, pb::CertificateStatus::Pending)
        && !certificate.waiting_reason.is_empty()
        && certificate.next_attempt_at > 0
}

fn summary(certificates: &HashMap<String, Certificate>) -> String {
    let mut lines: Vec<String> = certificates
        .values()
        .map(|certificate| {
            format!(
                "{} {:?} next_attempt_at={} waiting_reason={:?} last_error={:?}",
                certificate.names.join(","),
                pb::CertificateStatus::try_from(certificate.status),
                certificate.next_attempt_at,
                certificate.waiting_reason,
                certificate.last_error,
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn three_issuers_together_never_exceed_the_registered_domain_budget() {
    let started = Instant::now();
    let phase = |name: &str| eprintln!("[{:>6.1} s] {name}", started.elapsed().as_secs_f64());
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let pebble_log = pebble.state_dir().join("pebble.log");
    let stack = RoleStack::create(&pebble).await.unwrap();

    let http01 = loopback(pebble.http01_port());
    let grpc = loopback(free_port());
    let mut processes = vec![
        stack
            .spawn(
                "certfleet-api",
                "api",
                strings(&["--grpc-listen", &grpc.to_string()]),
            )
            .unwrap(),
        stack
            .spawn(
                "certfleet-responder",
                "responder",
                strings(&["--http01-listen", &http01.to_string()]),
            )
            .unwrap(),
    ];
    // The issuers get the budget on their command line (over the stack's
    // CERTFLEET_RATE_LIMIT=off).
    for index in 0..3 {
        processes.push(
            stack
                .spawn(
                    "certfleet-issuer",
                    &format!("issuer-{index}"),
                    strings(&[
                        "--http01-self-check-addr",
                        &http01.to_string(),
                        "--rate-limit",
                        RATE_LIMIT,
                    ]),
                )
                .unwrap(),
        );
    }
    processes.push(
        stack
            .spawn(
                "certfleet-scheduler",
                "scheduler",
                strings(&["--scheduler-interval", "1"]),
            )
            .unwrap(),
    );
    wait_all_healthy(&mut processes).await.unwrap();
    phase("api, responder, 3 issuers and a scheduler healthy");

    let (write, _) = organization(grpc, &stack.admin_token, "budget").await;
    let client = certfleet_e2e::certificates(grpc, &write).await;
    // Warm-up: one certificate per issuer (jobs go round-robin) under another
    // registered domain, so that every issuer has the organization's ACME
    // account at hand and the 8 below race for the budget from the start
    // (else the issuer that registers the account runs ahead of the others).
    let warm_ids = create_all(&client, WARMUP_DOMAIN, 3).await;
    let mut check = client.clone();
    for id in &warm_ids {
        certfleet_e2e::wait_for(
            &mut check,
            id,
            Duration::from_secs(60),
            certfleet_e2e::is_valid,
        )
        .await
        .unwrap_or_else(|error| {
            panic!(
                "warm-up {id}: {error}\n{}",
                all_logs(&processes, &pebble_log)
            )
        });
    }
    let warm_orders = pebble_orders(&pebble_log).len();
    let warmed: Vec<&str> = processes
        .iter()
        .filter(|(process, _)| {
            let log = process.log();
            process.name.starts_with("issuer-")
                && warm_ids.iter().any(|id| log.contains(id.as_str()))
        })
        .map(|(process, _)| process.name.as_str())
        .collect();
    phase(&format!(
        "3 warm-up certificates valid (taken by {warmed:?})"
    ));

    let ids = create_all(&client, DOMAIN, CERTIFICATES).await;
    phase(&format!("{CERTIFICATES} certificates requested at once"));

    let count = |certificates: &HashMap<String, Certificate>, what: fn(&Certificate) -> bool| {
        certificates.values().filter(|c| what(c)).count()
    };
    let is_valid = |certificate: &Certificate| is(certificate, pb::CertificateStatus::Valid);
    let is_failed = |certificate: &Certificate| is(certificate, pb::CertificateStatus::Failed);

    // Exactly LIMIT become valid; the others wait for the budget.
    let deadline = Instant::now() + Duration::from_secs(90);
    let settled = loop {
        let certificates = poll(&mut check, &ids).await;
        let valid = count(&certificates, is_valid);
        assert!(
            valid <= LIMIT && count(&certificates, is_failed) == 0,
            "{valid} valid (budget {LIMIT}):\n{}\n{}",
            summary(&certificates),
            all_logs(&processes, &pebble_log)
        );
        if valid == LIMIT && count(&certificates, is_waiting) == CERTIFICATES - LIMIT {
            break certificates;
        }
        assert!(
            Instant::now() < deadline,
            "never {LIMIT} valid and {} waiting (Pebble answers store reads: {}):\n{}\n{}",
            CERTIFICATES - LIMIT,
            pebble.answers_store_reads(),
            summary(&certificates),
            all_logs(&processes, &pebble_log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    phase(&format!(
        "{LIMIT} valid, {} waiting for the budget",
        CERTIFICATES - LIMIT
    ));

    // The waiting ones say why, and wait until the window frees: an hour
    // after the budget was spent.
    let now_s = now_ms() / 1000;
    for certificate in settled.values().filter(|c| is_waiting(c)) {
        let reason = &certificate.waiting_reason;
        assert!(
            reason.contains(&format!("registered domain {DOMAIN}")),
            "{reason}"
        );
        let at = reason
            .strip_prefix(WAITING_PREFIX)
            .unwrap_or_else(|| panic!("{reason:?} does not start with {WAITING_PREFIX:?}"));
        assert!(
            at.len() == "2026-12-07T21:00:00Z".len() && at.ends_with('Z') && at.contains('T'),
            "not an RFC 3339 time: {at:?}"
        );
        assert!(
            (now_s + 55 * 60..=now_s + 65 * 60).contains(&certificate.next_attempt_at),
            "next_attempt_at {} is not about an hour after {now_s}: {}",
            certificate.next_attempt_at,
            certificate.names.join(",")
        );
    }
    assert_eq!(
        pebble_orders(&pebble_log).len() - warm_orders,
        LIMIT,
        "work over budget reached the CA:\n{}",
        all_logs(&processes, &pebble_log)
    );

    // And stay so: nobody orders past the budget.
    let watch = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch {
        let certificates = poll(&mut check, &ids).await;
        assert!(
            count(&certificates, is_valid) == LIMIT
                && count(&certificates, is_waiting) == CERTIFICATES - LIMIT,
            "the budget did not hold:\n{}\n{}",
            summary(&certificates),
            all_logs(&processes, &pebble_log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        pebble_orders(&pebble_log).len() - warm_orders,
        LIMIT,
        "work over budget reached the CA:\n{}",
        all_logs(&processes, &pebble_log)
    );
    phase("still 3 valid after 5 s; Pebble saw 3 orders for them");

    // The database agrees: 3 events in the window for budget.test at Pebble.
    let store = certfleet_store::Store::connect(&stack.database.url())
        .await
        .unwrap();
    let used = store
        .rate_limit_usage(
            &pebble.directory_url(),
            "registered-domain",
            DOMAIN,
            HOUR_MS,
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(used, 3, "registered-domain events for {DOMAIN}");

    // Which issuer took which certificate (their logs name the ids).
    let by_issuer: Vec<String> = processes
        .iter()
        .filter(|(process, _)| process.name.starts_with("issuer-"))
        .map(|(process, _)| {
            let log = process.log();
            let issued = settled
                .iter()
                .filter(|(id, certificate)| is_valid(certificate) && log.contains(id.as_str()))
                .count();
            let put_off = log.matches("order put off").count();
            format!("{}: {issued} issued, {put_off} put off", process.name)
        })
        .collect();
    phase(&by_issuer.join("; "));

    terminate_all(&mut processes).unwrap();
    drop(processes);
    stack.remove().await.unwrap();
    phase("done");
}
