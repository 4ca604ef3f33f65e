//! Creating certificates, tenant isolation, listing and pagination.

use certfleet_store::{Effects, ListFilter, PageCursor, Store, StoreError};

use crate::support::{
    DAY, NOW, SECOND, certificate, issue, job, message, organization, outbox_ids, reload, stored,
};

on_both_backends!(
    create_writes_row_and_effects_atomically,
    one_active_certificate_per_name_set,
    tenants_are_isolated,
    list_filters,
    keyset_pagination,
);

async fn create_writes_row_and_effects_atomically(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let new = certificate(&acme.id, &["www.acme.example", "acme.example"], NOW);
    let mut effects = job(&acme.id, &new.id, "job.issue");
    effects.outbox.push(message(&acme.id, "event.requested"));
    let expected_outbox: Vec<String> = effects.outbox.iter().map(|m| m.id.clone()).collect();
    let created = store.create_certificate(new, effects).await?;

    let row = reload(store, &created).await?;
    assert_eq!(row.names, "www.acme.example,acme.example");
    assert_eq!(row.names_key, "acme.example,www.acme.example");
    assert_eq!(row.status, "pending");
    let mut outbox = outbox_ids(store).await?;
    outbox.sort();
    let mut expected_sorted = expected_outbox.clone();
    expected_sorted.sort();
    assert_eq!(outbox, expected_sorted);
    let audit = store.audit_entries(&acme.id, 10).await?;
    assert!(
        audit.iter().any(|entry| entry.action == "job.issue"
            && entry.target_id.as_deref() == Some(created.id.as_str())),
        "{audit:?}"
    );
    let audit_before = audit.len();

    // An effect that cannot be written (an outbox id already taken) rolls the row back.
    let doomed = certificate(&acme.id, &["other.acme.example"], NOW);
    let doomed_id = doomed.id.clone();
    let mut clashing = message(&acme.id, "job.issue");
    clashing.id = expected_outbox[0].clone();
    let effects = Effects {
        outbox: vec![message(&acme.id, "job.issue"), clashing],
        audit: job(&acme.id, &doomed_id, "certificate.create").audit,
    };
    let error = store
        .create_certificate(doomed, effects)
        .await
        .expect_err("a clashing outbox id");
    assert!(matches!(error, StoreError::Query(_)), "{error:?}");
    assert!(store.get_certificate(&acme.id, &doomed_id).await?.is_none());
    assert_eq!(outbox_ids(store).await?.len(), 2);
    assert_eq!(store.audit_entries(&acme.id, 10).await?.len(), audit_before);
    Ok(())
}

async fn one_active_certificate_per_name_set(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;
    let names = ["acme.example", "www.acme.example"];

    let first = certificate(&acme.id, &names, NOW);
    let effects = job(&acme.id, &first.id, "job.issue");
    let first = store.create_certificate(first, effects).await?;
    assert_eq!(outbox_ids(store).await?.len(), 1);

    // Same set in another order: same names_key.
    let second = certificate(&acme.id, &["www.acme.example", "acme.example"], NOW + 1);
    let second_id = second.id.clone();
    let effects = job(&acme.id, &second.id, "job.issue");
    let error = store
        .create_certificate(second, effects)
        .await
        .expect_err("a second active certificate for the same names");
    match &error {
        StoreError::AlreadyExists { existing_id } => assert_eq!(existing_id, &first.id),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(store.get_certificate(&acme.id, &second_id).await?.is_none());
    assert_eq!(
        outbox_ids(store).await?.len(),
        1,
        "no outbox row for a refused certificate"
    );
    assert_eq!(store.audit_entries(&acme.id, 10).await?.len(), 2);

    // Another organization may hold the same names.
    let other = certificate(&globex.id, &names, NOW);
    let effects = job(&globex.id, &other.id, "job.issue");
    let other = store.create_certificate(other, effects).await?;
    assert_eq!(outbox_ids(store).await?.len(), 2);
    let active = store
        .find_active_by_names(&globex.id, &other.names_key)
        .await?;
    assert_eq!(active.map(|found| found.id), Some(other.id.clone()));

    // Once the first is revoked, the names are free again.
    let version = issue(store, &first, "worker-1", NOW + 90 * DAY, NOW + 60 * DAY).await?;
    store
        .record_revoked(
            &acme.id,
            &first.id,
            &version.id,
            "superseded",
            NOW + SECOND,
            Effects::default(),
        )
        .await?;
    let revoked = reload(store, &first).await?;
    assert_eq!(revoked.status, "revoked");
    assert!(!revoked.auto_renew);
    let versions = store.list_versions(&acme.id, &first.id).await?;
    assert_eq!(versions[0].revoked_at, Some(NOW + SECOND));
    assert_eq!(versions[0].revocation_reason.as_deref(), Some("superseded"));
    let again = stored(store, certificate(&acme.id, &names, NOW + 2)).await?;
    let active = store
        .find_active_by_names(&acme.id, &again.names_key)
        .await?;
    assert_eq!(active.map(|found| found.id), Some(again.id));
    Ok(())
}

async fn tenants_are_isolated(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;
    let mine = stored(store, certificate(&acme.id, &["acme.example"], NOW)).await?;
    let version = issue(store, &mine, "worker-1", NOW + 90 * DAY, NOW + 60 * DAY).await?;
    stored(store, certificate(&globex.id, &["globex.example"], NOW)).await?;

    assert!(store.get_certificate(&globex.id, &mine.id).await?.is_none());
    let listed = store
        .list_certificates(
            &globex.id,
            &ListFilter {
                limit: 100,
                ..ListFilter::default()
            },
        )
        .await?;
    assert_eq!(listed.len(), 1);
    assert!(listed.iter().all(|row| row.organization_id == globex.id));
    assert!(store.list_versions(&globex.id, &mine.id).await?.is_empty());
    let ids = [version.id.clone()];
    assert!(store.versions_by_ids(&globex.id, &ids).await?.is_empty());
    assert_eq!(store.versions_by_ids(&acme.id, &ids).await?.len(), 1);
    assert!(
        store
            .acquire_certificate_lease(&globex.id, &mine.id, "intruder", NOW, NOW + DAY)
            .await?
            .is_none()
    );

    let outbox_before = outbox_ids(store).await?.len();
    let error = store
        .delete_certificate(
            &globex.id,
            &mine.id,
            NOW,
            job(&globex.id, &mine.id, "event.deleted"),
        )
        .await
        .expect_err("deleting another organization's certificate");
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
    let error = store
        .request_renewal(
            &globex.id,
            &mine.id,
            NOW,
            job(&globex.id, &mine.id, "job.issue"),
        )
        .await
        .expect_err("renewing another organization's certificate");
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
    assert_eq!(outbox_ids(store).await?.len(), outbox_before);
    let untouched = reload(store, &mine).await?;
    assert_eq!(untouched.deleted_at, None);
    assert!(untouched.auto_renew);
    assert_eq!(untouched.status, "valid");
    assert_eq!(untouched.lease_owner, None);

    // The owner can delete it; afterwards it is gone for everyone.
    let deleted = store
        .delete_certificate(
            &acme.id,
            &mine.id,
            NOW,
            job(&acme.id, &mine.id, "event.deleted"),
        )
        .await?;
    assert_eq!(deleted.deleted_at, Some(NOW));
    assert!(store.get_certificate(&acme.id, &mine.id).await?.is_none());
    assert_eq!(outbox_ids(store).await?.len(), outbox_before + 1);
    let error = store
        .delete_certificate(&acme.id, &mine.id, NOW, Effects::default())
        .await
        .expect_err("deleting twice");
    assert!(matches!(error, StoreError::NotFound), "{error:?}");
    Ok(())
}

fn page(limit: i64) -> ListFilter {
    ListFilter {
        limit,
        ..ListFilter::default()
    }
}

fn names_of(rows: &[certfleet_store::Certificate]) -> Vec<&str> {
    rows.iter().map(|row| row.primary_name.as_str()).collect()
}

async fn list_filters(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let mut created = Vec::new();
    for (index, name) in [
        "under_score.example",
        "underxscore.example",
        "percent%.example",
        "percentx.example",
        "back\\slash.example",
        "backxslash.example",
    ]
    .into_iter()
    .enumerate()
    {
        let offset = i64::try_from(index)?;
        created.push(stored(store, certificate(&acme.id, &[name], NOW + offset)).await?);
    }

    let contains = |text: &str| ListFilter {
        name_contains: Some(text.to_owned()),
        ..page(100)
    };
    let found = store.list_certificates(&acme.id, &contains("r_s")).await?;
    assert_eq!(names_of(&found), ["under_score.example"]);
    let found = store.list_certificates(&acme.id, &contains("t%.")).await?;
    assert_eq!(names_of(&found), ["percent%.example"]);
    let found = store.list_certificates(&acme.id, &contains("k\\s")).await?;
    assert_eq!(names_of(&found), ["back\\slash.example"]);
    let found = store.list_certificates(&acme.id, &contains("%")).await?;
    assert_eq!(names_of(&found), ["percent%.example"]);
    // Names are stored lower-case; the search means the same on both backends.
    let found = store
        .list_certificates(&acme.id, &contains("UNDER_Score"))
        .await?;
    assert_eq!(names_of(&found), ["under_score.example"]);
    let found = store
        .list_certificates(&acme.id, &contains("score"))
        .await?;
    assert_eq!(
        names_of(&found),
        ["under_score.example", "underxscore.example"]
    );

    // Issue two with different expiry; one gets a new status.
    issue(store, &created[0], "worker", NOW + 10 * DAY, NOW + 5 * DAY).await?;
    issue(store, &created[1], "worker", NOW + 20 * DAY, NOW + 15 * DAY).await?;
    let leased = store
        .acquire_certificate_lease(&acme.id, &created[2].id, "worker", NOW, NOW + DAY)
        .await?;
    assert!(leased.is_some());
    store
        .record_progress(&acme.id, &created[2].id, "worker", "issuing", None, NOW)
        .await?;

    let status = |status: &str| ListFilter {
        status: Some(status.to_owned()),
        ..page(100)
    };
    let valid = store.list_certificates(&acme.id, &status("valid")).await?;
    assert_eq!(
        names_of(&valid),
        ["under_score.example", "underxscore.example"]
    );
    let issuing = store
        .list_certificates(&acme.id, &status("issuing"))
        .await?;
    assert_eq!(names_of(&issuing), ["percent%.example"]);
    let pending = store
        .list_certificates(&acme.id, &status("pending"))
        .await?;
    assert_eq!(pending.len(), 3);

    let expiring = |before: i64| ListFilter {
        expiring_before_ms: Some(before),
        ..page(100)
    };
    let soon = store
        .list_certificates(&acme.id, &expiring(NOW + 15 * DAY))
        .await?;
    assert_eq!(names_of(&soon), ["under_score.example"]);
    let both = store
        .list_certificates(&acme.id, &expiring(NOW + 30 * DAY))
        .await?;
    assert_eq!(
        names_of(&both),
        ["under_score.example", "underxscore.example"]
    );
    let none = store
        .list_certificates(&acme.id, &expiring(NOW + 10 * DAY))
        .await?;
    assert!(none.is_empty(), "not_after is exclusive: {none:?}");

    // Filters combine; deleted certificates are never listed.
    let combined = ListFilter {
        status: Some("pending".to_owned()),
        name_contains: Some("percent".to_owned()),
        ..page(100)
    };
    let found = store.list_certificates(&acme.id, &combined).await?;
    assert_eq!(names_of(&found), ["percentx.example"]);
    store
        .delete_certificate(&acme.id, &created[5].id, NOW, Effects::default())
        .await?;
    let all = store.list_certificates(&acme.id, &page(100)).await?;
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|row| row.id != created[5].id));
    Ok(())
}

async fn keyset_pagination(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;
    stored(store, certificate(&globex.id, &["globex.example"], NOW)).await?;
    // Seven certificates; three share one creation time, so ties break on id.
    let times = [NOW + 5, NOW, NOW + 3, NOW + 3, NOW + 1, NOW + 3, NOW + 9];
    let mut expected = Vec::new();
    for (index, created_at) in times.into_iter().enumerate() {
        let name = format!("host-{index}.acme.example");
        let row = stored(store, certificate(&acme.id, &[&name], created_at)).await?;
        expected.push((row.created_at, row.id));
    }
    expected.sort();

    let mut seen = Vec::new();
    let mut filter = page(3);
    let mut pages = 0;
    loop {
        let rows = store.list_certificates(&acme.id, &filter).await?;
        pages += 1;
        assert!(rows.len() <= 3);
        let Some(last) = rows.last() else { break };
        filter.after = Some(PageCursor {
            created_at: last.created_at,
            id: last.id.clone(),
        });
        seen.extend(rows.iter().map(|row| (row.created_at, row.id.clone())));
        anyhow::ensure!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 4, "3 + 3 + 1 rows, then an empty page");

    // A cursor in the middle of the tie continues after it, not at the next time.
    let cursor = PageCursor {
        created_at: expected[2].0,
        id: expected[2].1.clone(),
    };
    let rest = store
        .list_certificates(
            &acme.id,
            &ListFilter {
                after: Some(cursor),
                ..page(100)
            },
        )
        .await?;
    let rest: Vec<(i64, String)> = rest
        .into_iter()
        .map(|row| (row.created_at, row.id))
        .collect();
    assert_eq!(rest, expected[3..].to_vec());
    Ok(())
}
