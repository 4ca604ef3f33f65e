//! Expiry warnings: due once per version and threshold, recorded with their
//! event in one transaction; a second record of the same one writes nothing.

use certfleet_store::{Effects, Store};

use crate::support::{DAY, NOW, certificate, issue, message, organization, outbox_ids, stored};

on_both_backends!(each_expiry_warning_is_recorded_once);

async fn each_expiry_warning_is_recorded_once(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let soon = stored(store, certificate(&acme.id, &["soon.example.com"], NOW)).await?;
    let version = issue(store, &soon, "w", NOW + 2 * DAY, NOW + DAY).await?;
    let later = stored(store, certificate(&acme.id, &["later.example.com"], NOW)).await?;
    issue(store, &later, "w", NOW + 30 * DAY, NOW + 20 * DAY).await?;
    let before = outbox_ids(store).await?.len();

    // Two days left: due at 3 and 7 days, not at 1; the later one not at all.
    assert!(store.expiry_warnings_due(1, NOW, 100).await?.is_empty());
    let due = store.expiry_warnings_due(3, NOW, 100).await?;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1.id, version.id);
    let event = || Effects {
        outbox: vec![message(&acme.id, "event.certificate.expiring")],
        audit: Vec::new(),
    };
    assert!(
        store
            .record_expiry_warning(&soon.id, &version.id, 3, &[7], NOW, event())
            .await?
    );
    assert!(
        !store
            .record_expiry_warning(&soon.id, &version.id, 3, &[7], NOW, event())
            .await?,
        "a second scheduler's record is a no-op"
    );
    assert_eq!(outbox_ids(store).await?.len(), before + 1, "one event");
    // The passed 7-day threshold was recorded without an event.
    assert!(store.expiry_warnings_due(7, NOW, 100).await?.is_empty());
    assert!(store.expiry_warnings_due(3, NOW, 100).await?.is_empty());
    // Still due at 1 day.
    assert_eq!(
        store
            .expiry_warnings_due(1, NOW + DAY + 1, 100)
            .await?
            .len(),
        1
    );
    // Expired versions are not warned about.
    assert!(
        store
            .expiry_warnings_due(1, NOW + 3 * DAY, 100)
            .await?
            .is_empty()
    );
    Ok(())
}
