//! Challenges the responder answers, the outbox the relay drains, and named leases.

use certfleet_store::{AcmeChallenge, OutboxMessage, Store, new_id};

use crate::support::{NOW, SECOND, certificate, organization, stored};

on_both_backends!(challenges, outbox_in_id_order, outbox_claims, named_leases);

fn challenge(
    certificate: &certfleet_store::Certificate,
    authorization_url: &str,
    challenge_type: &str,
    token: &str,
) -> AcmeChallenge {
    AcmeChallenge {
        id: new_id(),
        organization_id: certificate.organization_id.clone(),
        certificate_id: certificate.id.clone(),
        order_url: "https://ca.example/order/1".to_owned(),
        authorization_url: authorization_url.to_owned(),
        name: certificate.primary_name.clone(),
        challenge_type: challenge_type.to_owned(),
        token: token.to_owned(),
        key_authorization: format!("{token}.thumbprint"),
        dns_record_name: None,
        dns_record_value: None,
        status: "pending".to_owned(),
        validated_at: None,
        error: None,
        created_at: NOW,
        updated_at: NOW,
        dns_zone: None,
        dns_cleaned_at: None,
    }
}

async fn challenges(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;
    let managed = stored(store, certificate(&acme.id, &["acme.example"], NOW)).await?;
    let (org, authz) = (acme.id.as_str(), "https://ca.example/authz/1");

    store
        .upsert_challenge(challenge(&managed, authz, "http-01", "token-old"))
        .await?;
    let answer = store.http01_key_authorization("token-old").await?;
    assert_eq!(answer.as_deref(), Some("token-old.thumbprint"));

    // A resumed order refreshes the same row.
    let mut refreshed = challenge(&managed, authz, "http-01", "token-new");
    refreshed.updated_at = NOW + SECOND;
    store.upsert_challenge(refreshed).await?;
    let rows = store.list_challenges(org, &managed.id).await?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].token, "token-new");
    assert_eq!(rows[0].key_authorization, "token-new.thumbprint");
    assert_eq!(rows[0].updated_at, NOW + SECOND);
    assert_eq!(store.http01_key_authorization("token-old").await?, None);
    let answer = store.http01_key_authorization("token-new").await?;
    assert_eq!(answer.as_deref(), Some("token-new.thumbprint"));

    // Another type for the same authorization is another row; DNS-01 is never served over HTTP.
    let mut dns = challenge(&managed, authz, "dns-01", "token-dns");
    dns.dns_record_name = Some("_acme-challenge.acme.example".to_owned());
    dns.dns_record_value = Some("digest".to_owned());
    store.upsert_challenge(dns).await?;
    assert_eq!(store.list_challenges(org, &managed.id).await?.len(), 2);
    assert_eq!(store.http01_key_authorization("token-dns").await?, None);
    assert!(
        store
            .list_challenges(&globex.id, &managed.id)
            .await?
            .is_empty()
    );

    // Answered while pending or processing only.
    store
        .set_challenge_status(org, authz, "processing", None, NOW)
        .await?;
    assert!(store.http01_key_authorization("token-new").await?.is_some());
    // Another organization cannot change it.
    store
        .set_challenge_status(&globex.id, authz, "invalid", None, NOW)
        .await?;
    assert!(store.http01_key_authorization("token-new").await?.is_some());
    store
        .set_challenge_status(org, authz, "valid", None, NOW + SECOND)
        .await?;
    assert_eq!(store.http01_key_authorization("token-new").await?, None);
    let rows = store.list_challenges(org, &managed.id).await?;
    assert!(
        rows.iter()
            .all(|row| row.status == "valid" && row.validated_at == Some(NOW + SECOND))
    );

    let other_authz = "https://ca.example/authz/2";
    store
        .upsert_challenge(challenge(&managed, other_authz, "http-01", "token-bad"))
        .await?;
    store
        .set_challenge_status(org, other_authz, "invalid", Some("connection refused"), NOW)
        .await?;
    assert_eq!(store.http01_key_authorization("token-bad").await?, None);
    // Re-upserting after a failure makes it pending again and clears the error.
    store
        .upsert_challenge(challenge(&managed, other_authz, "http-01", "token-bad"))
        .await?;
    assert!(store.http01_key_authorization("token-bad").await?.is_some());
    let rows = store.list_challenges(org, &managed.id).await?;
    let retried = rows.iter().find(|row| row.authorization_url == other_authz);
    assert_eq!(retried.map(|row| row.error.clone()), Some(None));
    Ok(())
}

fn outbox_message(id: &str) -> OutboxMessage {
    OutboxMessage {
        id: id.to_owned(),
        topic: format!("topic-{id}"),
        organization_id: None,
        payload: id.as_bytes().to_vec(),
        created_at: NOW,
        traceparent: None,
    }
}

async fn outbox_in_id_order(store: &Store) -> anyhow::Result<()> {
    assert!(store.outbox_batch(10).await?.is_empty());
    let ids = ["0003", "0001", "0004", "0002"];
    let messages: Vec<OutboxMessage> = ids.iter().map(|id| outbox_message(id)).collect();
    store.outbox_insert(&messages).await?;

    let batch = store.outbox_batch(3).await?;
    let batch_ids: Vec<&str> = batch.iter().map(|message| message.id.as_str()).collect();
    assert_eq!(batch_ids, ["0001", "0002", "0003"]);
    assert_eq!(batch[0].topic, "topic-0001");
    assert_eq!(batch[0].payload, b"0001");

    let published: Vec<String> = batch.iter().map(|message| message.id.clone()).collect();
    assert_eq!(store.outbox_delete(&published).await?, 3);
    assert_eq!(store.outbox_delete(&published).await?, 0);
    assert_eq!(store.outbox_delete(&[]).await?, 0);
    let rest = store.outbox_batch(10).await?;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, "0004");

    // A batch insert is all or nothing.
    let clashing = vec![outbox_message("0005"), outbox_message("0004")];
    assert!(store.outbox_insert(&clashing).await.is_err());
    assert_eq!(store.outbox_batch(10).await?.len(), 1);
    Ok(())
}

fn ids(messages: &[OutboxMessage]) -> Vec<String> {
    messages.iter().map(|message| message.id.clone()).collect()
}

async fn outbox_claims(store: &Store) -> anyhow::Result<()> {
    let messages: Vec<OutboxMessage> = (1..=4)
        .map(|n| outbox_message(&format!("000{n}")))
        .collect();
    store.outbox_insert(&messages).await?;
    let until = NOW + 30 * SECOND;

    // Two relays take disjoint rows, oldest first.
    let first = store.outbox_claim("relay-a", NOW, until, 2).await?;
    assert_eq!(ids(&first), ["0001", "0002"]);
    assert_eq!(first[0].payload, b"0001");
    let second = store.outbox_claim("relay-b", NOW, until, 10).await?;
    assert_eq!(ids(&second), ["0003", "0004"]);
    // A relay sees its own claims again (a retry after a failed publish).
    assert_eq!(
        ids(&store.outbox_claim("relay-a", NOW, until, 10).await?),
        ["0001", "0002"]
    );
    assert!(
        store
            .outbox_claim("relay-c", NOW, until, 10)
            .await?
            .is_empty()
    );

    // relay-a dies: once its claims expire, another relay takes its rows.
    let later = until + SECOND;
    let taken = store
        .outbox_claim("relay-c", later, later + 30 * SECOND, 10)
        .await?;
    assert_eq!(ids(&taken), ["0001", "0002", "0003", "0004"]);

    // Concurrent relays never claim the same row.
    store.outbox_delete(&ids(&taken)).await?;
    let many: Vec<OutboxMessage> = (10..40)
        .map(|n| outbox_message(&format!("00{n}")))
        .collect();
    store.outbox_insert(&many).await?;
    let mut tasks = Vec::new();
    for relay in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .outbox_claim(&format!("relay-{relay}"), NOW, until, 4)
                .await
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(ids(&task.await??));
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "a row was claimed twice");
    assert_eq!(total, 24, "every relay got a full batch");
    Ok(())
}

async fn named_leases(store: &Store) -> anyhow::Result<()> {
    let until = NOW + 10 * SECOND;
    assert!(
        store
            .acquire_named_lease("scheduler", "a", NOW, until)
            .await?
    );
    assert!(
        !store
            .acquire_named_lease("scheduler", "b", NOW + SECOND, NOW + 20 * SECOND)
            .await?
    );
    // Other names are independent.
    assert!(
        store
            .acquire_named_lease("reconciler", "b", NOW, until)
            .await?
    );
    // The holder extends; the extension counts.
    assert!(
        store
            .acquire_named_lease("scheduler", "a", NOW + 5 * SECOND, NOW + 20 * SECOND)
            .await?
    );
    assert!(
        !store
            .acquire_named_lease("scheduler", "b", NOW + 15 * SECOND, NOW + 30 * SECOND)
            .await?
    );
    // Expired: b takes over and a is out.
    assert!(
        store
            .acquire_named_lease("scheduler", "b", NOW + 21 * SECOND, NOW + 40 * SECOND)
            .await?
    );
    assert!(
        !store
            .acquire_named_lease("scheduler", "a", NOW + 22 * SECOND, NOW + 50 * SECOND)
            .await?
    );
    Ok(())
}
