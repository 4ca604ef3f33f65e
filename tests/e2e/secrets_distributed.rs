//! The distributed mode keeps private keys sealed everywhere it writes: after
//! issuing, renewing, revoking and deleting with api, responder, issuer and
//! scheduler processes on PostgreSQL, RabbitMQ and an S3 archive (moto), no
//! private key is in plaintext in a `pg_dump` of the database, in any object
//! of the archive bucket, in the processes' logs or in the events published
//! on `certfleet.events`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Moto, Pebble, PebbleOptions};
use certfleet_e2e::{
    RoleStack, all_logs, bundle, is_valid, organization, request, terminate_all, wait_for,
};
use certfleet_proto::v1::{
    self as pb, CertificateEvent, DeleteCertificateRequest, RenewCertificateRequest,
    RevokeCertificateRequest,
};
use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use prost::Message as _;
use tokio::time::Instant;

use crate::leaks::{contains, hex, leak_in};

const BUCKET: &str = "certfleet-secrets";
const PREFIX: &str = "copies";

/// The stack's settings plus debug logs and the S3 archive in `moto`.
fn configure(stack: &mut RoleStack, moto: &Moto) {
    stack.env.retain(|(key, _)| key != "CERTFLEET_LOG");
    stack.env.extend(
        [
            ("CERTFLEET_LOG", "debug".to_owned()),
            (
                "CERTFLEET_ARCHIVE_LOCATION",
                format!("s3://{BUCKET}/{PREFIX}"),
            ),
            ("CERTFLEET_ARCHIVE_S3_ENDPOINT_URL", moto.endpoint_url()),
            ("CERTFLEET_ARCHIVE_S3_PATH_STYLE", "true".to_owned()),
            ("CERTFLEET_ARCHIVE_S3_REGION", "us-east-1".to_owned()),
            (
                "CERTFLEET_ARCHIVE_S3_ACCESS_KEY_ID",
                "AKIAIOSFODNN7EXAMPLE".to_owned(),
            ),
            (
                "CERTFLEET_ARCHIVE_S3_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            ),
        ]
        .map(|(key, value)| (key.to_owned(), value)),
    );
}

/// Every message published on `certfleet.events`, raw, in arrival order.
type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

/// Binds an exclusive queue to `certfleet.events` with `#` and collects every
/// body into `bodies` until the connection ends.
async fn record_events(amqp_url: &str, bodies: Bodies) -> tokio::task::JoinHandle<()> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            "certfleet.events".into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "certfleet-e2e-secrets".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        let _connection = connection;
        while let Some(Ok(delivery)) = consumer.next().await {
            bodies.lock().unwrap().push(delivery.data);
        }
    })
}

fn decoded(bodies: &[Vec<u8>]) -> Vec<CertificateEvent> {
    bodies
        .iter()
        .map(|body| CertificateEvent::decode(body.as_slice()).unwrap())
        .collect()
}

/// `pg_dump` of `url` with `format_args`; its standard output.
async fn pg_dump(url: &str, format_args: &[&str]) -> Vec<u8> {
    let output = tokio::process::Command::new("pg_dump")
        .args(format_args)
        .args(["--no-owner", "--dbname", url])
        .output()
        .await
        .expect("pg_dump (the PostgreSQL client) is installed");
    assert!(
        output.status.success(),
        "pg_dump {format_args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The data lines of the `COPY public.<table>` block of a plain dump.
fn copied_rows<'dump>(dump: &'dump str, table: &str) -> Vec<&'dump str> {
    let start = format!("COPY public.{table} (");
    dump.lines()
        .skip_while(|line| !line.starts_with(&start))
        .skip(1)
        .take_while(|line| *line != "\\.")
        .collect()
}

/// Waits up to 40 s (the issuer's archive pass runs every 10 s) until the
/// bucket holds `versions[i]` key copies under certificate `ids[i]`; returns
/// every object key.
async fn wait_for_key_copies(moto: &Moto, ids: &[String], versions: &[usize]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let objects = moto.list_objects(BUCKET).await.unwrap();
        let copies = |id: &String| {
            objects
                .iter()
                .filter(|key| {
                    key.starts_with(&format!("{PREFIX}/"))
                        && key.contains(&format!("/{id}/"))
                        && key.ends_with("/privkey.enc")
                })
                .count()
        };
        let found: Vec<usize> = ids.iter().map(copies).collect();
        if found == versions {
            return objects;
        }
        assert!(
            Instant::now() < deadline,
            "the archive holds {found:?} key copies, not {versions:?}, after 40 s: {objects:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_private_key_in_plaintext_in_the_distributed_mode() {
    let moto = Moto::start().await.unwrap();
    moto.create_bucket(BUCKET).await.unwrap();
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let mut stack = RoleStack::create(&pebble).await.unwrap();
    configure(&mut stack, &moto);
    let (mut processes, grpc) = stack.spawn_api_responder_issuer(&pebble).await.unwrap();
    processes.push(
        stack
            .spawn("certfleet-scheduler", "scheduler", Vec::new())
            .unwrap(),
    );
    certfleet_e2e::wait_all_healthy(&mut processes)
        .await
        .unwrap();
    // Bound before any certificate exists (the api has declared the exchange).
    let bodies = Bodies::default();
    let recorder = record_events(&stack.vhost.amqp_url(), bodies.clone()).await;

    let (write, bundle_token) = organization(grpc, &stack.admin_token, "secrets-roles").await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    let mut bundle_client = certfleet_e2e::certificates(grpc, &bundle_token).await;
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for (name, key_type) in [
        ("one.roles.secrets.test", pb::KeyType::EcdsaP256),
        ("two.roles.secrets.test", pb::KeyType::Rsa2048),
    ] {
        let created = client
            .create_certificate(request(&[name], key_type))
            .await
            .unwrap()
            .into_inner();
        wait_for(&mut client, &created.id, Duration::from_secs(60), is_valid)
            .await
            .unwrap_or_else(|error| panic!("{error:#}\n{}", all_logs(&processes)));
        keys.push(
            bundle(&mut bundle_client, &created.id)
                .await
                .unwrap()
                .private_key_pem,
        );
        ids.push(created.id);
    }
    client
        .renew_certificate(RenewCertificateRequest { id: ids[0].clone() })
        .await
        .unwrap();
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
    .unwrap_or_else(|error| panic!("{error:#}\n{}", all_logs(&processes)));
    keys.push(
        bundle(&mut bundle_client, &ids[0])
            .await
            .unwrap()
            .private_key_pem,
    );
    client
        .revoke_certificate(RevokeCertificateRequest {
            id: ids[1].clone(),
            reason: pb::RevocationReason::Superseded as i32,
        })
        .await
        .unwrap();
    wait_for(
        &mut client,
        &ids[1],
        Duration::from_secs(30),
        |certificate| certificate.status == pb::CertificateStatus::Revoked as i32,
    )
    .await
    .unwrap_or_else(|error| panic!("{error:#}\n{}", all_logs(&processes)));
    // Copies are written for certificates that are not deleted: wait for all
    // three versions before deleting one.
    let objects = wait_for_key_copies(&moto, &ids, &[2, 1]).await;
    client
        .delete_certificate(DeleteCertificateRequest { id: ids[0].clone() })
        .await
        .unwrap();

    // Every event of the run is published before the processes stop.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let kinds: Vec<i32> = decoded(&bodies.lock().unwrap())
            .iter()
            .map(|event| event.r#type)
            .collect();
        let expected = [
            pb::EventType::Requested,
            pb::EventType::Issued,
            pb::EventType::Renewed,
            pb::EventType::Revoked,
            pb::EventType::Deleted,
        ];
        if expected.iter().all(|kind| kinds.contains(&(*kind as i32))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing events: {:?} in {:?}",
            expected,
            decoded(&bodies.lock().unwrap())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    terminate_all(&mut processes).unwrap();
    recorder.abort();
    let bodies = bodies.lock().unwrap().clone();
    let events = decoded(&bodies);

    // Everything the run wrote, each under a name for the failure message.
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    let database_url = stack.database.url();
    let plain = pg_dump(&database_url, &["--format=plain"]).await;
    // Uncompressed, so that the scan sees the table data as written.
    let custom = pg_dump(&database_url, &["--format=custom", "--compress=0"]).await;
    let plain_text = String::from_utf8_lossy(&plain).into_owned();
    let version_rows = copied_rows(&plain_text, "certificate_versions");
    assert_eq!(
        version_rows.len(),
        3,
        "the dump lacks the three certificate versions: {version_rows:?}"
    );
    assert!(contains(&custom, b"certificate_versions"));
    places.push(("pg_dump --format=plain".to_owned(), plain));
    places.push(("pg_dump --format=custom".to_owned(), custom));
    let key_copies = objects
        .iter()
        .filter(|key| key.ends_with("/privkey.enc"))
        .count();
    assert_eq!(key_copies, 3, "{objects:?}");
    for key in moto.list_objects(BUCKET).await.unwrap() {
        let object = moto.get_object(BUCKET, &key).await.unwrap();
        assert!(!object.is_empty(), "s3://{BUCKET}/{key} is empty");
        places.push((format!("s3://{BUCKET}/{key}"), object));
    }
    let logs = all_logs(&processes);
    for (process, _) in &processes {
        assert!(!process.log().is_empty(), "{} logged nothing", process.name);
    }
    assert!(logs.len() > 10_000, "the debug logs are too short: {logs}");
    places.push(("the logs".to_owned(), logs.into_bytes()));
    for (index, body) in bodies.into_iter().enumerate() {
        places.push((format!("event body {index}"), body));
    }
    places.push((
        "the decoded events".to_owned(),
        format!("{events:?}").into_bytes(),
    ));

    assert_eq!(keys.len(), 3);
    // The scan finds a key where it is in plaintext: as PEM, as a PEM body
    // without its armor, as DER, and as a bytea in a dump.
    for key in &keys {
        let (_, der) = x509_parser::pem::parse_x509_pem(key.as_bytes()).unwrap();
        let body: Vec<&str> = key
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        for leak in [
            key.as_bytes().to_vec(),
            body.join("\n").into_bytes(),
            der.contents.clone(),
            format!("\\\\x{}", hex(&der.contents)).into_bytes(),
        ] {
            assert!(
                leak_in(&leak, &keys).is_some(),
                "the scan misses a plaintext key"
            );
        }
    }
    eprintln!(
        "scanning {} places, {} bytes",
        places.len(),
        places
            .iter()
            .map(|(_, contents)| contents.len())
            .sum::<usize>()
    );
    for (place, contents) in &places {
        if let Some(leak) = leak_in(contents, &keys) {
            panic!("{leak} in {place}");
        }
    }
    drop(processes);
    stack.remove().await.unwrap();
}
