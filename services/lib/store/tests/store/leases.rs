//! The lease that lets one worker at a time act on a certificate.

use certfleet_store::{Effects, Store, StoreError};

use crate::support::{DAY, NOW, SECOND, certificate, organization, reload, stored};

on_both_backends!(certificate_leases);

async fn certificate_leases(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let first = stored(store, certificate(&acme.id, &["one.acme.example"], NOW)).await?;
    let second = stored(store, certificate(&acme.id, &["two.acme.example"], NOW)).await?;
    let third = stored(store, certificate(&acme.id, &["three.acme.example"], NOW)).await?;
    let (org, id) = (acme.id.as_str(), first.id.as_str());
    let until = NOW + 30 * SECOND;

    let leased = store
        .acquire_certificate_lease(org, id, "a", NOW, until)
        .await?;
    let leased = leased.ok_or_else(|| anyhow::anyhow!("a free certificate was not leased"))?;
    assert_eq!(leased.lease_owner.as_deref(), Some("a"));
    assert_eq!(leased.lease_until, Some(until));
    let refused = store
        .acquire_certificate_lease(org, id, "b", NOW + SECOND, NOW + 60 * SECOND)
        .await?;
    assert!(refused.is_none(), "b took a's unexpired lease");
    let row = reload(store, &first).await?;
    assert_eq!(row.lease_owner.as_deref(), Some("a"));
    assert_eq!(row.lease_until, Some(until));

    // The holder may re-acquire (extend); others may not act under it.
    let again = store
        .acquire_certificate_lease(org, id, "a", NOW, until + SECOND)
        .await?;
    assert_eq!(again.and_then(|row| row.lease_until), Some(until + SECOND));
    let error = store
        .record_progress(
            org,
            id,
            "b",
            "issuing",
            Some("https://ca.example/order/b"),
            NOW,
        )
        .await
        .expect_err("progress by a non-owner");
    assert!(matches!(error, StoreError::LeaseLost), "{error:?}");
    let error = store
        .extend_certificate_lease(org, id, "b", NOW + DAY)
        .await
        .expect_err("extension by a non-owner");
    assert!(matches!(error, StoreError::LeaseLost), "{error:?}");
    store
        .record_progress(
            org,
            id,
            "a",
            "issuing",
            Some("https://ca.example/order/a"),
            NOW,
        )
        .await?;
    let row = reload(store, &first).await?;
    assert_eq!(row.status, "issuing");
    assert_eq!(
        row.pending_order_url.as_deref(),
        Some("https://ca.example/order/a")
    );

    // After expiry another owner takes over and the former holder is locked out.
    let after_expiry = until + 2 * SECOND;
    let taken = store
        .acquire_certificate_lease(org, id, "b", after_expiry, after_expiry + 30 * SECOND)
        .await?;
    assert_eq!(taken.and_then(|row| row.lease_owner), Some("b".to_owned()));
    let error = store
        .record_progress(org, id, "a", "issuing", None, after_expiry)
        .await
        .expect_err("progress by the expired holder");
    assert!(matches!(error, StoreError::LeaseLost), "{error:?}");
    store
        .extend_certificate_lease(org, id, "b", NOW + DAY)
        .await?;

    // Releasing by a non-owner does nothing; by the owner frees it.
    store.release_certificate_lease(org, id, "a").await?;
    assert_eq!(
        reload(store, &first).await?.lease_owner.as_deref(),
        Some("b")
    );
    store.release_certificate_lease(org, id, "b").await?;
    let row = reload(store, &first).await?;
    assert_eq!((row.lease_owner, row.lease_until), (None, None));

    // release_all_leases_of frees exactly that owner's leases.
    for certificate in [&first, &second] {
        let leased = store
            .acquire_certificate_lease(org, &certificate.id, "b", NOW, NOW + DAY)
            .await?;
        assert!(leased.is_some());
    }
    let leased = store
        .acquire_certificate_lease(org, &third.id, "c", NOW, NOW + DAY)
        .await?;
    assert!(leased.is_some());
    assert_eq!(store.release_all_leases_of("b").await?, 2);
    assert_eq!(store.release_all_leases_of("b").await?, 0);
    for certificate in [&first, &second] {
        let row = reload(store, certificate).await?;
        assert_eq!((row.lease_owner, row.lease_until), (None, None));
        let leased = store
            .acquire_certificate_lease(org, &certificate.id, "a", NOW, NOW + DAY)
            .await?;
        assert!(
            leased.is_some(),
            "a freed certificate can be leased at once"
        );
    }
    assert_eq!(
        reload(store, &third).await?.lease_owner.as_deref(),
        Some("c")
    );

    // Deleted certificates cannot be leased.
    store.release_all_leases_of("a").await?;
    store
        .delete_certificate(org, id, NOW, Effects::default())
        .await?;
    let leased = store
        .acquire_certificate_lease(org, id, "a", NOW, NOW + DAY)
        .await?;
    assert!(leased.is_none());
    Ok(())
}
