//! Restoring organizations, certificates and versions from the archive, and
//! reading back the versions `backup verify` checks.

use certfleet_store::restore::{CertificateBackup, Restored};
use certfleet_store::{CertificateVersion, Organization, Store, StoreError, new_id};

use crate::support::{DAY, NOW, certificate, organization, stored};

on_both_backends!(
    restores_into_an_empty_database,
    existing_rows_are_left_alone,
    conflicts_write_nothing,
    versions_to_verify_are_valid_and_live
);

fn restored_organization(slug: &str) -> Organization {
    Organization {
        id: new_id(),
        slug: slug.to_owned(),
        name: format!("{slug} inc"),
        contact_email: format!("admin@{slug}.example"),
        created_at: NOW - 200 * DAY,
        deleted_at: None,
    }
}

fn restored_version(
    organization_id: &str,
    certificate_id: &str,
    number: i32,
    not_after: i64,
) -> CertificateVersion {
    let id = new_id();
    CertificateVersion {
        serial: format!("0{number}AB"),
        fingerprint_sha256: format!("fingerprint-{id}"),
        id,
        certificate_id: certificate_id.to_owned(),
        organization_id: organization_id.to_owned(),
        version: number,
        not_before: not_after - 90 * DAY,
        not_after,
        leaf_pem: "leaf".to_owned(),
        chain_pem: "chain".to_owned(),
        key_sealed: b"sealed key".to_vec(),
        key_type: "ecdsa-p256".to_owned(),
        order_url: "https://ca.example/order/1".to_owned(),
        ari_start: None,
        ari_end: None,
        revoked_at: None,
        revocation_reason: None,
        backup_location: Some(format!(
            "s3://bucket/{organization_id}/{certificate_id}/0{number}AB/"
        )),
        backup_at: None,
        backup_error: None,
        backup_attempts: 0,
        backup_next_at: None,
        issuer: None,
        created_at: not_after - 90 * DAY,
    }
}

/// An organization with one certificate of two versions, the newest valid.
fn backup(slug: &str, names: &[&str]) -> anyhow::Result<(Organization, CertificateBackup)> {
    let organization = restored_organization(slug);
    let settings = certificate(&organization.id, names, NOW - 150 * DAY);
    let versions = vec![
        restored_version(&organization.id, &settings.id, 2, NOW + 60 * DAY),
        restored_version(&organization.id, &settings.id, 1, NOW - 30 * DAY),
    ];
    let backup = CertificateBackup::new(settings, versions).map_err(anyhow::Error::msg)?;
    Ok((organization, backup))
}

async fn restores_into_an_empty_database(store: &Store) -> anyhow::Result<()> {
    assert!(store.is_empty().await?);
    let (organization, backup) = backup("acme", &["www.acme.example", "acme.example"])?;
    let certificate_id = backup.certificate().id.clone();
    let newest = backup.versions()[1].clone();

    let restored = store
        .restore_organization(organization.clone(), NOW)
        .await?;
    assert_eq!(restored, Restored::Inserted);
    assert!(!store.is_empty().await?);
    let outcome = store.restore_certificate(backup, NOW).await?;
    assert_eq!(outcome.certificate, Restored::Inserted);
    assert_eq!(outcome.versions_inserted.len(), 2);
    assert!(outcome.versions_existed.is_empty());

    let found = store
        .get_certificate(&organization.id, &certificate_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("restored certificate not found"))?;
    assert_eq!(found.status, "valid");
    assert_eq!(
        found.current_version_id.as_deref(),
        Some(newest.id.as_str())
    );
    assert_eq!(found.not_after, Some(newest.not_after));
    assert_eq!(found.renew_at, Some(newest.not_after - 30 * DAY));
    assert_eq!(found.names, "www.acme.example,acme.example");
    assert!(found.lease_owner.is_none());

    let versions = store
        .list_versions(&organization.id, &certificate_id)
        .await?;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(versions[1].backup_location, newest.backup_location);
    let states = store.backup_states().await?;
    assert_eq!(states.len(), 2);
    for state in &states {
        assert_eq!(state.backup_at, Some(NOW), "{state:?}");
        assert!(state.location.is_some(), "{state:?}");
    }
    // Nothing of a restored version is due for another copy.
    assert!(store.backups_due(NOW + DAY, 10).await?.is_empty());
    // Due for renewal when its time comes, like an issued one.
    let due = store
        .due_for_renewal(newest.not_after - 30 * DAY, 10)
        .await?;
    assert_eq!(due, [(organization.id.clone(), certificate_id.clone())]);
    Ok(())
}

async fn existing_rows_are_left_alone(store: &Store) -> anyhow::Result<()> {
    let (organization, backup) = backup("globex", &["globex.example"])?;
    store
        .restore_organization(organization.clone(), NOW)
        .await?;
    let first = store.restore_certificate(backup.clone(), NOW).await?;
    assert_eq!(first.versions_inserted.len(), 2);

    assert_eq!(
        store
            .restore_organization(organization.clone(), NOW)
            .await?,
        Restored::Existed
    );
    // Again, with one more version: only that one is added.
    let mut versions = backup.versions().to_vec();
    versions.push(restored_version(
        &organization.id,
        &backup.certificate().id,
        3,
        NOW + 80 * DAY,
    ));
    let again = CertificateBackup::new(backup.certificate().clone(), versions)
        .map_err(anyhow::Error::msg)?;
    let outcome = store.restore_certificate(again, NOW + 1).await?;
    assert_eq!(outcome.certificate, Restored::Existed);
    assert_eq!(outcome.versions_existed, first.versions_inserted);
    assert_eq!(outcome.versions_inserted.len(), 1);
    let versions = store
        .list_versions(&organization.id, &backup.certificate().id)
        .await?;
    assert_eq!(versions.len(), 3);
    Ok(())
}

async fn conflicts_write_nothing(store: &Store) -> anyhow::Result<()> {
    let live = organization(store, "initech").await?;
    let taken = stored(store, certificate(&live.id, &["initech.example"], NOW)).await?;

    // Another organization with a slug in use.
    let (mut other, _) = backup("initech", &["x.example"])?;
    other.id = new_id();
    let Err(error) = store.restore_organization(other, NOW).await else {
        anyhow::bail!("an organization with a taken slug was restored");
    };
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");

    // A certificate for names the organization already has active.
    let settings = certificate(&live.id, &["initech.example"], NOW - 150 * DAY);
    let versions = vec![restored_version(&live.id, &settings.id, 1, NOW + DAY)];
    let clash = CertificateBackup::new(settings.clone(), versions).map_err(anyhow::Error::msg)?;
    let Err(error) = store.restore_certificate(clash, NOW).await else {
        anyhow::bail!("a certificate for names in use was restored");
    };
    assert!(error.to_string().contains("initech.example"), "{error}");
    assert!(
        store
            .get_certificate(&live.id, &settings.id)
            .await?
            .is_none()
    );
    assert!(
        store
            .list_versions(&live.id, &settings.id)
            .await?
            .is_empty()
    );
    assert!(store.get_certificate(&live.id, &taken.id).await?.is_some());
    Ok(())
}

async fn versions_to_verify_are_valid_and_live(store: &Store) -> anyhow::Result<()> {
    let (organization, backup) = backup("hooli", &["hooli.example"])?;
    let newest = backup.versions()[1].id.clone();
    store
        .restore_organization(organization.clone(), NOW)
        .await?;
    store.restore_certificate(backup, NOW).await?;
    let revoked = revoke_all(backup_in(&organization, &["revoked.hooli.example"])?)?;
    store.restore_certificate(revoked, NOW).await?;

    // The expired version 1 and the revoked certificate are left out.
    let rows = store.versions_to_verify(NOW, None, 100).await?;
    assert_eq!(
        rows.iter()
            .map(|row| row.version.id.as_str())
            .collect::<Vec<_>>(),
        [newest.as_str()]
    );
    assert_eq!(rows[0].backup_at, Some(NOW));
    let after = store.versions_to_verify(NOW, Some(&newest), 100).await?;
    assert!(after.is_empty());
    Ok(())
}

/// A certificate of `organization` with one valid version.
fn backup_in(organization: &Organization, names: &[&str]) -> anyhow::Result<CertificateBackup> {
    let settings = certificate(&organization.id, names, NOW - 10 * DAY);
    let versions = vec![restored_version(
        &organization.id,
        &settings.id,
        1,
        NOW + DAY,
    )];
    CertificateBackup::new(settings, versions).map_err(anyhow::Error::msg)
}

fn revoke_all(backup: CertificateBackup) -> anyhow::Result<CertificateBackup> {
    let versions = backup
        .versions()
        .iter()
        .cloned()
        .map(|mut version| {
            version.revoked_at = Some(NOW - DAY);
            version.revocation_reason = Some("keyCompromise".to_owned());
            version
        })
        .collect();
    CertificateBackup::new(backup.certificate().clone(), versions).map_err(anyhow::Error::msg)
}
