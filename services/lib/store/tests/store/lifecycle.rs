//! Issuance, renewal, failures and retries of a certificate.

use certfleet_store::{Effects, Store, StoreError};

use crate::support::{
    DAY, NOW, SECOND, certificate, issue, job, organization, outbox_ids, reload, stored, version,
};

on_both_backends!(
    issued_versions_and_renewal,
    failures_and_due_attempts,
    unsaved_order_attempts,
    due_renewals_are_paged_in_renewal_order
);

async fn issued_versions_and_renewal(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let managed = stored(store, certificate(&acme.id, &["acme.example"], NOW)).await?;
    let manual = certificate(&acme.id, &["manual.acme.example"], NOW);
    let manual = stored(
        store,
        certfleet_store::Certificate {
            auto_renew: false,
            ..manual
        },
    )
    .await?;
    let (org, id) = (acme.id.as_str(), managed.id.as_str());

    let leased = store
        .acquire_certificate_lease(org, id, "w", NOW, NOW + DAY)
        .await?;
    assert!(leased.is_some());
    store
        .record_progress(
            org,
            id,
            "w",
            "issuing",
            Some("https://ca.example/order/1"),
            NOW,
        )
        .await?;
    // A worker without the lease cannot store a certificate.
    let error = store
        .record_issued(
            org,
            id,
            "other",
            version(NOW, NOW + 90 * DAY),
            certfleet_store::RenewalPlan::at(NOW, "lifetime rule"),
            NOW,
            Effects::default(),
        )
        .await
        .expect_err("record_issued without the lease");
    assert!(matches!(error, StoreError::LeaseLost), "{error:?}");
    assert!(store.list_versions(org, id).await?.is_empty());

    let renew_at = NOW + 60 * DAY;
    let first = store
        .record_issued(
            org,
            id,
            "w",
            version(NOW, NOW + 90 * DAY),
            certfleet_store::RenewalPlan::at(renew_at, "lifetime rule"),
            NOW + SECOND,
            job(org, id, "event.issued"),
        )
        .await?;
    assert_eq!(first.version, 1);
    assert_eq!(first.organization_id, acme.id);
    let row = reload(store, &managed).await?;
    assert_eq!(row.status, "valid");
    assert_eq!(row.current_version_id.as_deref(), Some(first.id.as_str()));
    assert_eq!(row.not_after, Some(NOW + 90 * DAY));
    assert_eq!(row.renew_at, Some(renew_at));
    assert_eq!(row.next_attempt_at, None);
    assert_eq!(row.pending_order_url, None);
    assert_eq!((row.lease_owner, row.lease_until), (None, None));
    assert_eq!(outbox_ids(store).await?.len(), 1);

    // Renewal scan: not before renew_at, and never a certificate without auto-renew.
    issue(store, &manual, "w", NOW + 90 * DAY, NOW).await?;
    assert!(store.due_for_renewal(renew_at - 1, 100).await?.is_empty());
    let due = store.due_for_renewal(renew_at, 100).await?;
    assert_eq!(due, vec![(acme.id.clone(), managed.id.clone())]);
    let early = store
        .mark_renewal_due(org, id, renew_at - 1, job(org, id, "job.issue"))
        .await?;
    assert!(!early, "marked due before renew_at");
    assert_eq!(outbox_ids(store).await?.len(), 1);

    let marked = store
        .mark_renewal_due(org, id, renew_at, job(org, id, "job.issue"))
        .await?;
    assert!(marked);
    let outbox = store.outbox_batch(100).await?;
    assert_eq!(outbox.len(), 2);
    assert!(outbox.iter().any(|message| message.topic == "job.issue"));
    let row = reload(store, &managed).await?;
    assert_eq!(row.status, "renewing");
    assert_eq!(row.next_attempt_at, Some(renew_at));
    assert_eq!(row.pending_reason.as_deref(), Some("scheduled"));
    let twice = store
        .mark_renewal_due(org, id, renew_at, job(org, id, "job.issue"))
        .await?;
    assert!(!twice, "a second pass marked it again");
    assert_eq!(outbox_ids(store).await?.len(), 2);
    assert!(store.due_for_renewal(renew_at, 100).await?.is_empty());

    // The renewal becomes version 2 and current.
    let second = issue(store, &managed, "w", NOW + 150 * DAY, NOW + 120 * DAY).await?;
    assert_eq!(second.version, 2);
    let row = reload(store, &managed).await?;
    assert_eq!(row.status, "valid");
    assert_eq!(row.current_version_id.as_deref(), Some(second.id.as_str()));
    assert_eq!(row.not_after, Some(NOW + 150 * DAY));
    assert_eq!(row.renew_at, Some(NOW + 120 * DAY));
    let versions: Vec<i32> = store
        .list_versions(org, id)
        .await?
        .iter()
        .map(|version| version.version)
        .collect();
    assert_eq!(versions, [1, 2]);
    // Versions are numbered per certificate.
    assert_eq!(store.list_versions(org, &manual.id).await?[0].version, 1);
    Ok(())
}

async fn failures_and_due_attempts(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let org = acme.id.as_str();
    let order = "https://ca.example/order/7";

    // Retryable failures keep the order and schedule the next attempt.
    let retried = stored(store, certificate(org, &["retry.acme.example"], NOW)).await?;
    let id = retried.id.as_str();
    assert!(
        store
            .acquire_certificate_lease(org, id, "w", NOW, NOW + DAY)
            .await?
            .is_some()
    );
    store
        .record_progress(org, id, "w", "issuing", Some(order), NOW)
        .await?;
    let error = store
        .record_failure(org, id, "x", "nope", false, None, NOW, Effects::default())
        .await
        .expect_err("failure recorded by a non-owner");
    assert!(matches!(error, StoreError::LeaseLost), "{error:?}");
    let next = NOW + 60 * SECOND;
    let failed = store
        .record_failure(
            org,
            id,
            "w",
            "badNonce",
            false,
            Some(next),
            NOW,
            job(org, id, "event.failed"),
        )
        .await?;
    assert_eq!(failed.status, "issuing");
    assert_eq!(failed.pending_order_url.as_deref(), Some(order));
    assert_eq!(failed.next_attempt_at, Some(next));
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("badNonce"));
    assert_eq!((failed.lease_owner, failed.lease_until), (None, None));
    assert_eq!(reload(store, &retried).await?.attempts, 1);
    assert_eq!(outbox_ids(store).await?.len(), 1);
    assert!(
        store
            .acquire_certificate_lease(org, id, "w", NOW, NOW + DAY)
            .await?
            .is_some()
    );
    let failed = store
        .record_failure(
            org,
            id,
            "w",
            "serverInternal",
            false,
            Some(next),
            NOW,
            Effects::default(),
        )
        .await?;
    assert_eq!(failed.attempts, 2);

    // A final failure without any version: failed, order forgotten.
    assert!(
        store
            .acquire_certificate_lease(org, id, "w", NOW, NOW + DAY)
            .await?
            .is_some()
    );
    let failed = store
        .record_failure(org, id, "w", "caa", true, None, NOW, Effects::default())
        .await?;
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.pending_order_url, None);
    assert_eq!(failed.next_attempt_at, None);
    assert_eq!(failed.attempts, 3);

    // A final failure of a renewal: the current version stays valid.
    let renewed = stored(store, certificate(org, &["renew.acme.example"], NOW)).await?;
    issue(store, &renewed, "w", NOW + 90 * DAY, NOW).await?;
    assert!(
        store
            .mark_renewal_due(org, &renewed.id, NOW, Effects::default())
            .await?
    );
    assert!(
        store
            .acquire_certificate_lease(org, &renewed.id, "w", NOW, NOW + DAY)
            .await?
            .is_some()
    );
    let failed = store
        .record_failure(
            org,
            &renewed.id,
            "w",
            "rejectedIdentifier",
            true,
            Some(NOW + DAY),
            NOW,
            Effects::default(),
        )
        .await?;
    assert_eq!(failed.status, "valid");
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("rejectedIdentifier"));
    // The failed renewal backs off: the next scan does not start it again at once.
    let renewals = store.due_for_renewal(NOW, 100).await?;
    assert!(
        !renewals.iter().any(|(_, id)| id == &renewed.id),
        "{renewals:?}"
    );
    let renewals = store.due_for_renewal(NOW + DAY, 100).await?;
    assert!(
        renewals.iter().any(|(_, id)| id == &renewed.id),
        "{renewals:?}"
    );

    // due_attempts: due, unleased, in flight; nothing else.
    let due = stored(store, certificate(org, &["due.acme.example"], NOW - SECOND)).await?;
    stored(
        store,
        certificate(org, &["future.acme.example"], NOW + SECOND),
    )
    .await?;
    let leased = stored(
        store,
        certificate(org, &["leased.acme.example"], NOW - SECOND),
    )
    .await?;
    assert!(
        store
            .acquire_certificate_lease(org, &leased.id, "w", NOW, NOW + DAY)
            .await?
            .is_some()
    );
    let expired = stored(
        store,
        certificate(org, &["expired.acme.example"], NOW - SECOND),
    )
    .await?;
    let lapsed = store
        .acquire_certificate_lease(org, &expired.id, "gone", NOW - DAY, NOW - SECOND)
        .await?;
    assert!(lapsed.is_some());
    let deleted = stored(
        store,
        certificate(org, &["deleted.acme.example"], NOW - SECOND),
    )
    .await?;
    store
        .delete_certificate(org, &deleted.id, NOW - SECOND, Effects::default())
        .await?;
    let failed_row = certificate(org, &["failed.acme.example"], NOW - SECOND);
    stored(
        store,
        certfleet_store::Certificate {
            status: "failed".to_owned(),
            ..failed_row
        },
    )
    .await?;
    let valid_row = certificate(org, &["valid.acme.example"], NOW - SECOND);
    stored(
        store,
        certfleet_store::Certificate {
            status: "valid".to_owned(),
            ..valid_row
        },
    )
    .await?;
    // `renewed` has next_attempt_at tomorrow, `retried` none: neither is due.

    let mut found = store.due_attempts(NOW, 100).await?;
    found.sort();
    let mut expected = vec![
        (acme.id.clone(), due.id.clone()),
        (acme.id.clone(), expired.id.clone()),
    ];
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(store.due_attempts(NOW, 1).await?.len(), 1);

    // requeue_attempt pushes the attempt out and writes the job exactly once.
    let outbox_before = outbox_ids(store).await?.len();
    let retry_at = NOW + 5 * 60 * SECOND;
    assert!(
        store
            .requeue_attempt(org, &due.id, NOW, retry_at, job(org, &due.id, "job.issue"))
            .await?
    );
    assert_eq!(reload(store, &due).await?.next_attempt_at, Some(retry_at));
    assert_eq!(outbox_ids(store).await?.len(), outbox_before + 1);
    assert!(
        !store
            .requeue_attempt(org, &due.id, NOW, retry_at, job(org, &due.id, "job.issue"))
            .await?
    );
    assert!(
        !store
            .requeue_attempt(
                org,
                &leased.id,
                NOW,
                retry_at,
                job(org, &leased.id, "job.issue")
            )
            .await?
    );
    assert_eq!(outbox_ids(store).await?.len(), outbox_before + 1);
    let found = store.due_attempts(NOW, 100).await?;
    assert_eq!(found, vec![(acme.id.clone(), expired.id.clone())]);
    // Only work that due_attempts would list is re-queued: not a failed certificate.
    let failed_row = stored(
        store,
        certificate(org, &["failed2.acme.example"], NOW - SECOND),
    )
    .await?;
    assert!(
        store
            .acquire_certificate_lease(org, &failed_row.id, "w", NOW, NOW + DAY)
            .await?
            .is_some()
    );
    let failed = store
        .record_failure(
            org,
            &failed_row.id,
            "w",
            "caa",
            true,
            Some(NOW - SECOND),
            NOW,
            Effects::default(),
        )
        .await?;
    assert_eq!(failed.status, "failed");
    assert!(
        !store
            .requeue_attempt(
                org,
                &failed_row.id,
                NOW,
                retry_at,
                job(org, &failed_row.id, "job.issue")
            )
            .await?
    );
    assert_eq!(outbox_ids(store).await?.len(), outbox_before + 1);
    let later = store.due_attempts(retry_at, 100).await?;
    assert!(later.contains(&(acme.id.clone(), due.id.clone())));
    Ok(())
}

/// The note of an order being placed, cleared when its URL is saved, and the
/// order URLs an organization's rows name (and only its own).
async fn unsaved_order_attempts(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let other = organization(store, "other").await?;
    let org = acme.id.as_str();
    let placing = stored(store, certificate(org, &["placing.acme.example"], NOW)).await?;
    let issued = stored(store, certificate(org, &["issued.acme.example"], NOW)).await?;
    let foreign = stored(store, certificate(&other.id, &["other.example"], NOW)).await?;

    let id = placing.id.as_str();
    store
        .acquire_certificate_lease(org, id, "w", NOW, NOW + DAY)
        .await?;
    let error = store
        .record_order_attempt(org, id, "x", NOW)
        .await
        .expect_err("noted by a worker without the lease");
    assert!(matches!(error, StoreError::LeaseLost), "{error:?}");
    store.record_order_attempt(org, id, "w", NOW).await?;
    assert_eq!(reload(store, &placing).await?.order_attempt_at, Some(NOW));
    store
        .record_progress(org, id, "w", "issuing", Some("https://ca/order/a"), NOW)
        .await?;
    let saved = reload(store, &placing).await?;
    assert_eq!(saved.order_attempt_at, None);
    assert_eq!(
        saved.pending_order_url.as_deref(),
        Some("https://ca/order/a")
    );

    issue(store, &issued, "w", NOW + 90 * DAY, NOW + 60 * DAY).await?;
    store
        .acquire_certificate_lease(&other.id, &foreign.id, "w", NOW, NOW + DAY)
        .await?;
    store
        .record_progress(
            &other.id,
            &foreign.id,
            "w",
            "issuing",
            Some("https://ca/order/b"),
            NOW,
        )
        .await?;

    let mut known: Vec<String> = store.known_order_urls(org).await?.into_iter().collect();
    known.sort();
    assert_eq!(known, ["https://ca.example/order/1", "https://ca/order/a"]);
    Ok(())
}

/// `due_renewals_page` walks every due certificate once, in (renewal time,
/// id) order, whatever the page size; its first page is `due_for_renewal`.
async fn due_renewals_are_paged_in_renewal_order(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let mut expected = Vec::new();
    // Two share a renewal time, so the id breaks the tie.
    for (index, renew_at) in [NOW - DAY, NOW - 3 * DAY, NOW - DAY, NOW, NOW + DAY]
        .into_iter()
        .enumerate()
    {
        let name = format!("n{index}.acme.example");
        let row = stored(store, certificate(&acme.id, &[name.as_str()], NOW)).await?;
        issue(store, &row, "w", NOW + 90 * DAY, renew_at).await?;
        if renew_at <= NOW {
            expected.push((renew_at, row.id));
        }
    }
    expected.sort();
    for page_size in [1, 2, 100] {
        let mut walked = Vec::new();
        let mut cursor: Option<(i64, String)> = None;
        loop {
            let page = store
                .due_renewals_page(
                    NOW,
                    cursor.as_ref().map(|(at, id)| (*at, id.as_str())),
                    page_size,
                )
                .await?;
            let Some(last) = page.last() else { break };
            cursor = Some((last.renew_at.unwrap_or_default(), last.id.clone()));
            walked.extend(
                page.into_iter()
                    .map(|row| (row.renew_at.unwrap_or_default(), row.id)),
            );
        }
        assert_eq!(walked, expected, "page size {page_size}");
    }
    let first: Vec<String> = store
        .due_for_renewal(NOW, 2)
        .await?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let expected_first: Vec<String> = expected.iter().take(2).map(|(_, id)| id.clone()).collect();
    assert_eq!(first, expected_first);
    Ok(())
}
