//! External Account Binding credentials: set, replaced, read, deleted, per
//! organization and directory, and walked by the key rotation.

use certfleet_store::{AuditEntry, AuditFilter, SealedColumn, Store};

use crate::support::{NOW, SECOND, organization};

on_both_backends!(
    eab_credentials_per_organization_and_directory,
    eab_hmac_is_rotated
);

const DIRECTORY: &str = "https://ca.example/dir";
const OTHER_DIRECTORY: &str = "https://other-ca.example/dir";

fn audit(organization_id: &str, action: &str, now: i64) -> AuditEntry {
    AuditEntry::new(
        Some(organization_id),
        "admin",
        action,
        Some(organization_id),
        now,
    )
}

async fn eab_credentials_per_organization_and_directory(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;
    let org = acme.id.as_str();
    assert!(store.find_eab_credential(org, DIRECTORY).await?.is_none());

    let set = store
        .set_eab_credential(
            org,
            DIRECTORY,
            "kid-1",
            b"sealed-1",
            NOW,
            audit(org, "organization.eab_set", NOW),
        )
        .await?;
    assert_eq!(set.organization_id, org);
    assert_eq!(set.directory_url, DIRECTORY);
    assert_eq!(set.key_id, "kid-1");
    assert_eq!(set.hmac_sealed, b"sealed-1");
    assert_eq!((set.created_at, set.updated_at), (NOW, NOW));

    // Setting again replaces key id and key, keeps the row and its creation time.
    let later = NOW + 10 * SECOND;
    let replaced = store
        .set_eab_credential(
            org,
            DIRECTORY,
            "kid-2",
            b"sealed-2",
            later,
            audit(org, "organization.eab_set", later),
        )
        .await?;
    assert_eq!(replaced.id, set.id);
    assert_eq!(replaced.key_id, "kid-2");
    assert_eq!(replaced.hmac_sealed, b"sealed-2");
    assert_eq!((replaced.created_at, replaced.updated_at), (NOW, later));

    // Another directory, and another organization at the same directory, are
    // bindings of their own.
    store
        .set_eab_credential(
            org,
            OTHER_DIRECTORY,
            "kid-3",
            b"sealed-3",
            NOW,
            audit(org, "organization.eab_set", NOW),
        )
        .await?;
    let globex_id = globex.id.as_str();
    store
        .set_eab_credential(
            globex_id,
            DIRECTORY,
            "kid-g",
            b"sealed-g",
            NOW,
            audit(globex_id, "organization.eab_set", NOW),
        )
        .await?;
    let found = store
        .find_eab_credential(org, DIRECTORY)
        .await?
        .expect("acme's binding");
    assert_eq!(found.key_id, "kid-2");
    let other = store
        .find_eab_credential(org, OTHER_DIRECTORY)
        .await?
        .expect("other directory");
    assert_eq!(other.key_id, "kid-3");
    let theirs = store
        .find_eab_credential(globex_id, DIRECTORY)
        .await?
        .expect("globex's binding");
    assert_eq!(theirs.key_id, "kid-g");

    // Deleting removes only that binding; a second delete finds nothing and
    // writes no audit entry.
    assert!(
        store
            .delete_eab_credential(
                org,
                DIRECTORY,
                audit(org, "organization.eab_deleted", later)
            )
            .await?
    );
    assert!(
        !store
            .delete_eab_credential(
                org,
                DIRECTORY,
                audit(org, "organization.eab_deleted", later)
            )
            .await?
    );
    assert!(store.find_eab_credential(org, DIRECTORY).await?.is_none());
    assert!(
        store
            .find_eab_credential(org, OTHER_DIRECTORY)
            .await?
            .is_some()
    );
    assert!(
        store
            .find_eab_credential(globex_id, DIRECTORY)
            .await?
            .is_some()
    );

    let filter = AuditFilter {
        action_prefix: Some("organization.eab".to_owned()),
        limit: 100,
        ..AuditFilter::default()
    };
    let actions: Vec<String> = store
        .list_audit_entries(Some(org), &filter)
        .await?
        .into_iter()
        .map(|entry| entry.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|action| *action == "organization.eab_set")
            .count(),
        3
    );
    assert_eq!(
        actions
            .iter()
            .filter(|action| *action == "organization.eab_deleted")
            .count(),
        1
    );
    Ok(())
}

async fn eab_hmac_is_rotated(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let org = acme.id.as_str();
    let set = store
        .set_eab_credential(
            org,
            DIRECTORY,
            "kid-1",
            b"old-blob",
            NOW,
            audit(org, "organization.eab_set", NOW),
        )
        .await?;
    assert!(SealedColumn::ALL.contains(&SealedColumn::EabHmac));
    let page = store.sealed_page(SealedColumn::EabHmac, "", 10).await?;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, set.id);
    assert_eq!(page[0].organization_id, org);
    // The context's resource is the directory URL.
    assert_eq!(page[0].resource_id, DIRECTORY);
    assert_eq!(page[0].blob, b"old-blob");
    assert!(
        store
            .sealed_page(SealedColumn::EabHmac, &set.id, 10)
            .await?
            .is_empty()
    );

    // Replaced only while it still holds the blob that was read.
    assert!(
        !store
            .replace_sealed(SealedColumn::EabHmac, &set.id, b"other", b"new-blob")
            .await?
    );
    assert!(
        store
            .replace_sealed(SealedColumn::EabHmac, &set.id, b"old-blob", b"new-blob")
            .await?
    );
    let found = store
        .find_eab_credential(org, DIRECTORY)
        .await?
        .expect("binding");
    assert_eq!(found.hmac_sealed, b"new-blob");
    assert_eq!(found.key_id, "kid-1");
    Ok(())
}
