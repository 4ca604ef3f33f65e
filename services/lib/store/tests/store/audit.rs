//! Listing the audit log: organization, action prefix, time range, keyset paging.

use certfleet_store::{AuditEntry, AuditFilter, PageCursor, Store};

use crate::support::{NOW, SECOND, organization};

on_both_backends!(audit_filters, audit_paging, audit_remote_addr);

fn filter(limit: i64) -> AuditFilter {
    AuditFilter {
        limit,
        ..AuditFilter::default()
    }
}

fn actions(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|entry| entry.action.as_str()).collect()
}

async fn audit_filters(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;
    let entries = [
        AuditEntry::new(
            Some(&acme.id),
            "t1",
            "certificate.created",
            Some("c1"),
            NOW + SECOND,
        ),
        AuditEntry::new(
            Some(&acme.id),
            "t1",
            "certificate.revocation_requested",
            Some("c1"),
            NOW + 2 * SECOND,
        ),
        AuditEntry::new(
            Some(&globex.id),
            "t2",
            "certificate.created",
            Some("c2"),
            NOW + 3 * SECOND,
        ),
        AuditEntry::new(
            None,
            "system",
            "api_token.created",
            Some("t9"),
            NOW + 4 * SECOND,
        ),
        // `_` and `%` are matched literally, not as LIKE wildcards.
        AuditEntry::new(
            Some(&acme.id),
            "t1",
            "certificateXcreated",
            None,
            NOW + 5 * SECOND,
        ),
    ];
    for entry in entries {
        store.append_audit(entry).await?;
    }

    let all = store.list_audit_entries(None, &filter(100)).await?;
    // Two organization.create entries from the helper plus the five above, newest first.
    assert_eq!(all.len(), 7);
    assert_eq!(all[0].action, "certificateXcreated");
    assert_eq!(all[1].action, "api_token.created");
    assert_eq!(all[1].organization_id, None);

    let acme_only = store
        .list_audit_entries(Some(&acme.id), &filter(100))
        .await?;
    assert_eq!(
        actions(&acme_only),
        [
            "certificateXcreated",
            "certificate.revocation_requested",
            "certificate.created",
            "organization.create"
        ]
    );

    let prefixed = AuditFilter {
        action_prefix: Some("certificate.".to_owned()),
        ..filter(100)
    };
    let certificates = store.list_audit_entries(None, &prefixed).await?;
    assert_eq!(
        actions(&certificates),
        [
            "certificate.created",
            "certificate.revocation_requested",
            "certificate.created"
        ]
    );
    let wildcard = AuditFilter {
        action_prefix: Some("certificate_".to_owned()),
        ..filter(100)
    };
    assert!(store.list_audit_entries(None, &wildcard).await?.is_empty());
    let acme_created = AuditFilter {
        action_prefix: Some("certificate.cr".to_owned()),
        ..filter(100)
    };
    let acme_created = store
        .list_audit_entries(Some(&acme.id), &acme_created)
        .await?;
    assert_eq!(actions(&acme_created), ["certificate.created"]);
    assert_eq!(acme_created[0].target_id.as_deref(), Some("c1"));

    let window = AuditFilter {
        since_ms: Some(NOW + 2 * SECOND),
        until_ms: Some(NOW + 4 * SECOND),
        ..filter(100)
    };
    let window = store.list_audit_entries(None, &window).await?;
    assert_eq!(
        actions(&window),
        ["certificate.created", "certificate.revocation_requested"]
    );

    let slugs = store
        .organizations_by_ids(&[acme.id.clone(), globex.id.clone()])
        .await?;
    let mut slugs: Vec<String> = slugs.into_iter().map(|found| found.slug).collect();
    slugs.sort();
    assert_eq!(slugs, ["acme", "globex"]);
    assert!(store.organizations_by_ids(&[]).await?.is_empty());
    Ok(())
}

async fn audit_paging(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    // Several entries share a millisecond: the id breaks the tie.
    for index in 0..7_i64 {
        let entry = AuditEntry::new(
            Some(&acme.id),
            "t1",
            "certificate.renewal_requested",
            None,
            NOW + SECOND + index / 3,
        );
        store.append_audit(entry).await?;
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = AuditFilter {
            action_prefix: Some("certificate.".to_owned()),
            after: after.clone(),
            ..filter(3)
        };
        let page = store.list_audit_entries(Some(&acme.id), &page).await?;
        let Some(last) = page.last() else { break };
        after = Some(PageCursor {
            created_at: last.created_at,
            id: last.id.clone(),
        });
        seen.extend(
            page.iter()
                .map(|entry| (entry.created_at, entry.id.clone())),
        );
    }
    assert_eq!(seen.len(), 7, "every entry once: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_by(|left, right| right.cmp(left));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, no repeats");
    Ok(())
}

async fn audit_remote_addr(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let entry = AuditEntry::new(
        Some(&acme.id),
        "t1",
        "certificate.created",
        None,
        NOW + SECOND,
    )
    .from_remote(Some("192.0.2.7"));
    store.append_audit(entry).await?;
    let listed = store.list_audit_entries(Some(&acme.id), &filter(1)).await?;
    assert_eq!(listed[0].remote_addr.as_deref(), Some("192.0.2.7"));
    let system = store
        .list_audit_entries(
            Some(&acme.id),
            &AuditFilter {
                action_prefix: Some("organization.".to_owned()),
                ..filter(1)
            },
        )
        .await?;
    assert_eq!(system[0].remote_addr, None);
    Ok(())
}
