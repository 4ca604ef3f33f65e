//! Migrations, organizations and API tokens.

use certfleet_store::{ApiToken, AuditEntry, Organization, Store, StoreError, TokenOwner, new_id};

use crate::support::{NOW, SECOND, organization};

on_both_backends!(
    migrate_twice_is_a_noop,
    organizations,
    api_tokens,
    listing_and_revoking_tokens
);

async fn migrate_twice_is_a_noop(store: &Store) -> anyhow::Result<()> {
    // The harness migrated once already.
    assert_eq!(store.migrate().await?, Vec::<String>::new());
    assert_eq!(store.migrate().await?, Vec::<String>::new());
    // The schema is still usable.
    organization(store, "after-migrate").await?;
    Ok(())
}

async fn organizations(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;

    let by_slug = store.find_organization_by_slug("acme").await?;
    assert_eq!(by_slug.map(|found| found.id), Some(acme.id.clone()));
    let by_id = store.find_organization(&globex.id).await?;
    let by_id = by_id.ok_or_else(|| anyhow::anyhow!("globex not found by id"))?;
    assert_eq!(by_id.slug, "globex");
    assert_eq!(by_id.name, "globex inc");
    assert_eq!(by_id.contact_email, "admin@globex.example");
    assert!(store.find_organization_by_slug("initech").await?.is_none());
    assert!(store.find_organization(&new_id()).await?.is_none());

    let duplicate = Organization {
        id: new_id(),
        slug: "acme".to_owned(),
        name: "another acme".to_owned(),
        contact_email: "other@acme.example".to_owned(),
        created_at: NOW,
        deleted_at: None,
    };
    let duplicate_id = duplicate.id.clone();
    let audit = AuditEntry::new(
        Some(&duplicate_id),
        "admin",
        "organization.create",
        None,
        NOW,
    );
    let error = store
        .create_organization(duplicate, audit)
        .await
        .expect_err("a second organization with a taken slug");
    assert!(
        matches!(&error, StoreError::Conflict(what) if what.contains("acme")),
        "{error:?}"
    );
    // Nothing of the refused organization was written.
    assert!(store.find_organization(&duplicate_id).await?.is_none());
    assert!(store.audit_entries(&duplicate_id, 10).await?.is_empty());
    let found = store.find_organization_by_slug("acme").await?;
    assert_eq!(found.map(|found| found.name), Some("acme inc".to_owned()));
    // The successful creation was audited.
    let audit = store.audit_entries(&acme.id, 10).await?;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "organization.create");
    Ok(())
}

fn token(organization_id: Option<&str>, role: &str, revoked_at: Option<i64>) -> ApiToken {
    ApiToken {
        id: new_id(),
        organization_id: organization_id.map(str::to_owned),
        role: role.to_owned(),
        secret_sha256: vec![7; 32],
        description: format!("{role} token"),
        created_at: NOW,
        last_used_at: None,
        revoked_at,
        expires_at: None,
    }
}

async fn api_tokens(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let audit = || AuditEntry::new(Some(&acme.id), "admin", "token.create", None, NOW);

    let write = store
        .insert_api_token(token(Some(&acme.id), "write", None), audit())
        .await?;
    let admin = store
        .insert_api_token(token(None, "admin", None), audit())
        .await?;
    let revoked = store
        .insert_api_token(token(Some(&acme.id), "read", Some(NOW)), audit())
        .await?;

    let found = store
        .find_api_token(&write.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("write token not found"))?;
    assert_eq!(found.organization_id.as_deref(), Some(acme.id.as_str()));
    assert_eq!(found.role, "write");
    assert_eq!(found.secret_sha256, vec![7; 32]);
    assert_eq!(found.last_used_at, None);
    let found_admin = store.find_api_token(&admin.id).await?;
    assert_eq!(found_admin.map(|found| found.organization_id), Some(None));
    assert!(store.find_api_token(&revoked.id).await?.is_none());
    assert!(store.find_api_token(&new_id()).await?.is_none());

    // Use is recorded at most once a minute.
    store.touch_api_token(&write.id, NOW).await?;
    store.touch_api_token(&write.id, NOW + 30 * SECOND).await?;
    let used = store.find_api_token(&write.id).await?;
    assert_eq!(used.and_then(|used| used.last_used_at), Some(NOW));
    store.touch_api_token(&write.id, NOW + 61 * SECOND).await?;
    let used = store.find_api_token(&write.id).await?;
    assert_eq!(
        used.and_then(|used| used.last_used_at),
        Some(NOW + 61 * SECOND)
    );
    assert_eq!(store.audit_entries(&acme.id, 10).await?.len(), 4);
    Ok(())
}

async fn listing_and_revoking_tokens(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;
    let audit = |organization_id: &str| {
        AuditEntry::new(Some(organization_id), "admin", "token.create", None, NOW)
    };
    let mut first = token(Some(&acme.id), "read", None);
    first.expires_at = Some(NOW + 3600 * SECOND);
    let first = store.insert_api_token(first, audit(&acme.id)).await?;
    let mut second = token(Some(&acme.id), "write", None);
    second.created_at = NOW + SECOND;
    let second = store.insert_api_token(second, audit(&acme.id)).await?;
    let theirs = store
        .insert_api_token(token(Some(&globex.id), "read", None), audit(&globex.id))
        .await?;
    let admin = store
        .insert_api_token(token(None, "admin", None), audit(&acme.id))
        .await?;

    // Only the organization's own tokens, oldest first, with their expiry.
    let listed = store
        .list_api_tokens(TokenOwner::Organization(&acme.id))
        .await?;
    let ids: Vec<&str> = listed.iter().map(|token| token.id.as_str()).collect();
    assert_eq!(ids, [first.id.as_str(), second.id.as_str()]);
    assert_eq!(listed[0].expires_at, Some(NOW + 3600 * SECOND));
    assert_eq!(listed[1].expires_at, None);

    // Another organization's token, a platform token and an unknown id are not found.
    let revoke_audit = || AuditEntry::new(Some(&acme.id), "admin", "token.revoke", None, NOW);
    for other in [&theirs.id, &admin.id, &new_id()] {
        let revoked = store
            .revoke_api_token(
                TokenOwner::Organization(&acme.id),
                other,
                NOW + 2 * SECOND,
                revoke_audit(),
            )
            .await?;
        assert!(revoked.is_none(), "{other}");
    }
    assert!(store.find_api_token(&theirs.id).await?.is_some());
    assert!(store.find_api_token(&admin.id).await?.is_some());

    let revoked = store
        .revoke_api_token(
            TokenOwner::Organization(&acme.id),
            &second.id,
            NOW + 2 * SECOND,
            revoke_audit(),
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("second token not found for revocation"))?;
    assert_eq!(revoked.revoked_at, Some(NOW + 2 * SECOND));
    assert!(store.find_api_token(&second.id).await?.is_none());
    // Revoking again keeps the first revocation time and is audited once.
    let again = store
        .revoke_api_token(
            TokenOwner::Organization(&acme.id),
            &second.id,
            NOW + 9 * SECOND,
            revoke_audit(),
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("revoked token not found the second time"))?;
    assert_eq!(again.revoked_at, Some(NOW + 2 * SECOND));
    let actions: Vec<String> = store
        .audit_entries(&acme.id, 20)
        .await?
        .into_iter()
        .map(|entry| entry.action)
        .filter(|action| action == "token.revoke")
        .collect();
    assert_eq!(actions.len(), 1);

    // Revoked tokens stay listed, with the time of revocation.
    let listed = store
        .list_api_tokens(TokenOwner::Organization(&acme.id))
        .await?;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].revoked_at, None);
    assert_eq!(listed[1].revoked_at, Some(NOW + 2 * SECOND));
    assert!(
        store
            .list_api_tokens(TokenOwner::Organization(&new_id()))
            .await?
            .is_empty()
    );
    Ok(())
}
