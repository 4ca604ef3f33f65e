//! W3C trace context across the distributed mode: the `traceparent` a caller
//! sends with CreateCertificate is carried by the job to the issuer, and the
//! certificate's events (requested by the api, issued by the issuer) are
//! published in that same trace, each as a span of its own.

use std::collections::HashMap;
use std::time::Duration;

use certfleet_e2e::certfleet_testkit::{Pebble, PebbleOptions};
use certfleet_e2e::{
    RoleStack, bind_events_queue, is_valid, organization, request, terminate_all, wait_for,
};
use certfleet_proto::v1::{self as pb, CertificateEvent, EventType};
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use lapin::{Connection, ConnectionProperties};
use prost::Message as _;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread")]
async fn a_callers_trace_reaches_the_events_of_its_certificate() {
    let pebble = Pebble::start(PebbleOptions::default()).await.unwrap();
    let stack = RoleStack::create(&pebble).await.unwrap();
    let (mut processes, grpc) = stack.spawn_api_responder_issuer(&pebble).await.unwrap();

    // A queue of our own on certfleet.events, bound before anything happens.
    let connection = Connection::connect(&stack.vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = bind_events_queue(&channel, "").await.unwrap();

    let (write, _) = organization(grpc, &stack.admin_token, "traced").await;
    let mut client = certfleet_e2e::certificates(grpc, &write).await;
    // certificate id -> the trace id its request was sent in.
    let mut traces = HashMap::new();
    for index in 1..=2_u32 {
        let trace_id = format!("{:032x}", 0x7ace_0000_u128 + u128::from(index));
        let mut call = tonic::Request::new(request(
            &[&format!("traced{index}.test")],
            pb::KeyType::EcdsaP256,
        ));
        call.metadata_mut().insert(
            "traceparent",
            format!("00-{trace_id}-00000000000000a1-01")
                .parse()
                .unwrap(),
        );
        let created = client.create_certificate(call).await.unwrap().into_inner();
        traces.insert(created.id, trace_id);
    }
    for id in traces.keys() {
        wait_for(&mut client, id, Duration::from_secs(60), is_valid)
            .await
            .unwrap_or_else(|error| panic!("{error}\n{}", processes[2].0.log()));
    }

    // Every requested and issued event of those certificates is in its trace.
    let mut seen: HashMap<(String, i32), String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < 2 * traces.len() {
        assert!(
            Instant::now() < deadline,
            "events seen: {seen:?}\n{}",
            processes[2].0.log()
        );
        let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let event = CertificateEvent::decode(message.delivery.data.as_slice()).unwrap();
        let traceparent = match message
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("traceparent"))
        {
            Some(AMQPValue::LongString(value)) => value.to_string(),
            other => panic!("event {} without a traceparent: {other:?}", event.id),
        };
        if matches!(event.r#type(), EventType::Requested | EventType::Issued) {
            seen.insert((event.certificate_id.clone(), event.r#type), traceparent);
        }
    }
    for ((certificate_id, event_type), traceparent) in &seen {
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(
            parts[1], traces[certificate_id],
            "event type {event_type} of {certificate_id} left the caller's trace: {traceparent}"
        );
        assert_ne!(
            parts[2], "00000000000000a1",
            "a span of its own: {traceparent}"
        );
    }
    let spans: std::collections::HashSet<&String> = seen.values().collect();
    assert_eq!(spans.len(), seen.len(), "each event is its own span");

    connection.close(200, "done".into()).await.unwrap();
    terminate_all(&mut processes).unwrap();
    drop(processes);
    stack.remove().await.unwrap();
}
