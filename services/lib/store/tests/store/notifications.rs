//! Notification channels and the notifications owed to them: each event is
//! queued once per channel whatever is redelivered, claimed by one notifier
//! at a time, retried or given up; a deleted channel is owed nothing more.
//! Installations: one row per certificate and agent, replaced by each report.

use certfleet_store::{
    Effects, InstallationRow, NOTIFICATION_FAILED, NOTIFICATION_PENDING, NOTIFICATION_SENT,
    NotificationChannelRow, Store, StoreError, new_id,
};

use crate::support::{NOW, certificate, organization, stored};

on_both_backends!(
    notifications_are_queued_once_and_claimed_by_one,
    installations_are_replaced_per_agent,
);

fn channel(organization_id: &str, name: &str) -> NotificationChannelRow {
    NotificationChannelRow {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        name: name.to_owned(),
        kind: "webhook".to_owned(),
        settings: r#"{"url":"http://127.0.0.1:9/hook"}"#.to_owned(),
        secrets_sealed: Some(b"sealed".to_vec()),
        created_at: NOW,
        updated_at: NOW,
        deleted_at: None,
    }
}

async fn notifications_are_queued_once_and_claimed_by_one(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let other = organization(store, "other").await?;
    let hook = store
        .create_notification_channel(channel(&acme.id, "ops"), Effects::default())
        .await?;
    let mail = store
        .create_notification_channel(channel(&acme.id, "mail"), Effects::default())
        .await?;
    store
        .create_notification_channel(channel(&other.id, "ops"), Effects::default())
        .await?;
    assert!(matches!(
        store
            .create_notification_channel(channel(&acme.id, "ops"), Effects::default())
            .await,
        Err(StoreError::Conflict(_))
    ));
    let listed = store.list_notification_channels(&acme.id).await?;
    assert_eq!(
        listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["mail", "ops"]
    );
    assert!(
        store
            .find_notification_channel(&other.id, &hook.id)
            .await?
            .is_none(),
        "another organization's channel is not found"
    );

    let channels = vec![hook.id.clone(), mail.id.clone()];
    let queued = store
        .enqueue_notifications("event-1", &acme.id, "cert-1", b"event", &channels, NOW)
        .await?;
    assert_eq!(queued, 2);
    // A redelivered event queues nothing.
    let again = store
        .enqueue_notifications("event-1", &acme.id, "cert-1", b"event", &channels, NOW)
        .await?;
    assert_eq!(again, 0);

    let first = store.claim_due_notifications(NOW, 60_000, 10).await?;
    assert_eq!(first.len(), 2);
    assert!(
        store
            .claim_due_notifications(NOW + 1, 60_000, 10)
            .await?
            .is_empty(),
        "claimed rows are not handed out twice"
    );
    store
        .finish_notification_attempt("event-1", &hook.id, Ok(()), NOW + 5)
        .await?;
    store
        .finish_notification_attempt(
            "event-1",
            &mail.id,
            Err(("smtp down", Some(NOW + 10_000))),
            NOW + 5,
        )
        .await?;
    // Sent is final: a re-queue after a restart sends nothing.
    assert_eq!(
        store
            .enqueue_notifications("event-1", &acme.id, "cert-1", b"event", &channels, NOW + 6)
            .await?,
        0
    );
    assert!(
        store
            .claim_due_notifications(NOW + 9_999, 60_000, 10)
            .await?
            .is_empty()
    );
    let retry = store
        .claim_due_notifications(NOW + 10_000, 60_000, 10)
        .await?;
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].channel_id, mail.id);
    assert_eq!(retry[0].attempts, 1);
    // A claim that lapses (the notifier died) is handed out again.
    let lapsed = store
        .claim_due_notifications(NOW + 70_001, 60_000, 10)
        .await?;
    assert_eq!(lapsed.len(), 1);

    // Deleting the channel gives up what it was owed.
    store
        .delete_notification_channel(&acme.id, &mail.id, NOW + 80_000, Effects::default())
        .await?;
    let rows = store
        .list_notifications(&acme.id, Some("cert-1"), 10)
        .await?;
    let status = |id: &str| {
        rows.iter()
            .find(|row| row.channel_id == id)
            .map(|row| row.status.clone())
    };
    assert_eq!(status(&hook.id).as_deref(), Some(NOTIFICATION_SENT));
    assert_eq!(status(&mail.id).as_deref(), Some(NOTIFICATION_FAILED));
    assert!(
        store
            .claim_due_notifications(NOW + 200_000, 60_000, 10)
            .await?
            .is_empty()
    );
    assert!(store.list_notification_channels(&acme.id).await?.len() == 1);
    assert!(rows.iter().all(|row| row.status != NOTIFICATION_PENDING));
    Ok(())
}

async fn installations_are_replaced_per_agent(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let other = organization(store, "other").await?;
    let cert = stored(store, certificate(&acme.id, &["www.example.com"], NOW)).await?;
    let report = |agent: &str, version: i32, ok: bool| InstallationRow {
        certificate_id: cert.id.clone(),
        agent: agent.to_owned(),
        organization_id: acme.id.clone(),
        host: "web-1".to_owned(),
        target: "nginx".to_owned(),
        version,
        serial: format!("AB{version}"),
        ok,
        error: (!ok).then(|| "nginx -t failed".to_owned()),
        verified_at: ok.then_some(NOW),
        updated_at: NOW,
    };
    store
        .record_installation(report("web-1/nginx", 1, true), Effects::default())
        .await?;
    store
        .record_installation(report("web-2/caddy", 1, true), Effects::default())
        .await?;
    store
        .record_installation(report("web-1/nginx", 2, false), Effects::default())
        .await?;
    let rows = store.installations(&acme.id, &cert.id).await?;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].agent, "web-1/nginx");
    assert_eq!(rows[0].version, 2);
    assert!(!rows[0].ok);
    assert_eq!(rows[0].error.as_deref(), Some("nginx -t failed"));
    assert!(rows[1].ok);
    assert!(
        store.installations(&other.id, &cert.id).await?.is_empty(),
        "another organization sees nothing"
    );
    Ok(())
}
