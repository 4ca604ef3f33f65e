//! DNS providers of an organization and the DNS-01 values waiting for their
//! clean-up.

use certfleet_store::{AcmeChallenge, DnsProviderRow, Effects, Store, StoreError, new_id};

use crate::support::{NOW, SECOND, certificate, issue, organization, stored};

on_both_backends!(
    dns_providers,
    dns_records_to_clean,
    dns_leftovers_of_settled_certificates
);

fn provider(organization_id: &str, name: &str) -> DnsProviderRow {
    DnsProviderRow {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        name: name.to_owned(),
        kind: "rfc2136".to_owned(),
        settings: r#"{"server":"192.0.2.53"}"#.to_owned(),
        secret_names: "tsig_secret".to_owned(),
        secrets_sealed: Some(vec![1, 2, 3]),
        created_at: NOW,
        updated_at: NOW,
        deleted_at: None,
    }
}

async fn dns_providers(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;
    let org = acme.id.as_str();
    let bind = store
        .create_dns_provider(provider(org, "bind"), Effects::default())
        .await?;
    store
        .create_dns_provider(provider(org, "another"), Effects::default())
        .await?;
    let taken = store
        .create_dns_provider(provider(org, "bind"), Effects::default())
        .await
        .expect_err("a taken name");
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");
    // Names are per organization.
    store
        .create_dns_provider(provider(&globex.id, "bind"), Effects::default())
        .await?;

    let names: Vec<String> = store
        .list_dns_providers(org)
        .await?
        .into_iter()
        .map(|row| row.name)
        .collect();
    assert_eq!(names, ["another", "bind"]);
    let by_name = store
        .find_dns_provider(org, "bind")
        .await?
        .expect("by name");
    assert_eq!(by_name.id, bind.id);
    assert_eq!(by_name.secrets_sealed, Some(vec![1, 2, 3]));
    assert_eq!(by_name.secret_names, "tsig_secret");
    assert!(store.find_dns_provider(org, &bind.id).await?.is_some());
    assert!(
        store
            .find_dns_provider(&globex.id, &bind.id)
            .await?
            .is_none()
    );

    // In use by an active certificate: refused; after the certificate is
    // deleted: gone from lists, still there for clean-ups.
    let mut using = certificate(org, &["dns.acme.example"], NOW);
    using.dns_provider_id = Some(bind.id.clone());
    using.challenge_type = "dns-01".to_owned();
    let using = stored(store, using).await?;
    let error = store
        .delete_dns_provider(org, &bind.id, NOW, Effects::default())
        .await
        .expect_err("in use");
    assert!(matches!(error, StoreError::InUse(_)), "{error:?}");
    let other_org = store
        .delete_dns_provider(&globex.id, &bind.id, NOW, Effects::default())
        .await
        .expect_err("another organization's provider");
    assert!(matches!(other_org, StoreError::NotFound), "{other_org:?}");
    store
        .delete_certificate(org, &using.id, NOW + SECOND, Effects::default())
        .await?;
    store
        .delete_dns_provider(org, &bind.id, NOW + 2 * SECOND, Effects::default())
        .await?;
    assert!(store.find_dns_provider(org, "bind").await?.is_none());
    assert!(store.get_dns_provider_any(org, &bind.id).await?.is_some());
    let again = store
        .delete_dns_provider(org, &bind.id, NOW, Effects::default())
        .await
        .expect_err("already deleted");
    assert!(matches!(again, StoreError::NotFound), "{again:?}");
    // The name is free again.
    store
        .create_dns_provider(provider(org, "bind"), Effects::default())
        .await?;
    Ok(())
}

fn dns_challenge(
    certificate: &certfleet_store::Certificate,
    authorization: &str,
    value: &str,
) -> AcmeChallenge {
    AcmeChallenge {
        id: new_id(),
        organization_id: certificate.organization_id.clone(),
        certificate_id: certificate.id.clone(),
        order_url: "https://ca.example/order/1".to_owned(),
        authorization_url: authorization.to_owned(),
        name: certificate.primary_name.clone(),
        challenge_type: "dns-01".to_owned(),
        token: format!("token-{value}"),
        key_authorization: format!("{value}.thumbprint"),
        dns_record_name: Some(format!("_acme-challenge.{}", certificate.primary_name)),
        dns_record_value: Some(value.to_owned()),
        status: "pending".to_owned(),
        validated_at: None,
        error: None,
        created_at: NOW,
        updated_at: NOW,
        dns_zone: Some("acme.example".to_owned()),
        dns_cleaned_at: None,
    }
}

async fn dns_records_to_clean(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let globex = organization(store, "globex").await?;
    let org = acme.id.as_str();
    let managed = stored(store, certificate(org, &["acme.example"], NOW)).await?;
    let foreign = stored(store, certificate(&globex.id, &["globex.example"], NOW)).await?;
    let apex = dns_challenge(&managed, "https://ca.example/authz/1", "apex-value");
    let wildcard = dns_challenge(&managed, "https://ca.example/authz/2", "wildcard-value");
    store.upsert_challenge(apex.clone()).await?;
    store.upsert_challenge(wildcard.clone()).await?;
    store
        .upsert_challenge(dns_challenge(
            &foreign,
            "https://ca.example/authz/3",
            "globex",
        ))
        .await?;

    let left = store.dns_records_to_clean(org, &managed.id).await?;
    assert_eq!(left.len(), 2);
    assert!(
        store
            .dns_records_to_clean(org, &foreign.id)
            .await?
            .is_empty()
    );

    store
        .mark_dns_cleaned(org, &[left[0].id.clone()], NOW + SECOND)
        .await?;
    // Another organization's ids are not touched.
    let foreign_left = store.dns_records_to_clean(&globex.id, &foreign.id).await?;
    store
        .mark_dns_cleaned(org, &[foreign_left[0].id.clone()], NOW)
        .await?;
    assert_eq!(
        store
            .dns_records_to_clean(&globex.id, &foreign.id)
            .await?
            .len(),
        1
    );
    let left = store.dns_records_to_clean(org, &managed.id).await?;
    assert_eq!(left.len(), 1);

    // A resumed order writes the value again: it waits for clean-up again.
    let mut rewritten = dns_challenge(&managed, "https://ca.example/authz/1", "apex-value-2");
    rewritten.id = new_id();
    store.upsert_challenge(rewritten).await?;
    let left = store.dns_records_to_clean(org, &managed.id).await?;
    let values: Vec<_> = left
        .iter()
        .filter_map(|row| row.dns_record_value.clone())
        .collect();
    assert_eq!(left.len(), 2, "{values:?}");
    assert!(values.contains(&"apex-value-2".to_owned()), "{values:?}");
    Ok(())
}

/// Values left by the last attempt of a certificate nobody works on are
/// found once they have been quiet long enough, and queuing their removal
/// makes them quiet again; certificates in flight or leased are left alone.
async fn dns_leftovers_of_settled_certificates(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let org = acme.id.as_str();
    let settled = stored(store, certificate(org, &["settled.acme.example"], NOW)).await?;
    issue(
        store,
        &settled,
        "w",
        NOW + 90 * 86_400_000,
        NOW + 60 * 86_400_000,
    )
    .await?;
    let in_flight = stored(store, certificate(org, &["flight.acme.example"], NOW)).await?;
    store
        .upsert_challenge(dns_challenge(
            &settled,
            "https://ca.example/authz/s",
            "left",
        ))
        .await?;
    store
        .upsert_challenge(dns_challenge(
            &in_flight,
            "https://ca.example/authz/f",
            "busy",
        ))
        .await?;

    let later = NOW + 600 * SECOND;
    // Not quiet long enough yet.
    assert!(
        store
            .dns_leftovers_due(later, NOW - 1, 10)
            .await?
            .is_empty()
    );
    let due = store.dns_leftovers_due(later, NOW, 10).await?;
    assert_eq!(due, vec![(org.to_owned(), settled.id.clone())]);

    store
        .queue_dns_cleanup(org, &settled.id, later, Effects::default())
        .await?;
    assert!(store.dns_leftovers_due(later, NOW, 10).await?.is_empty());
    assert_eq!(store.dns_leftovers_due(later, later, 10).await?.len(), 1);

    // Leased: left to its worker.
    store
        .acquire_certificate_lease(org, &settled.id, "w", later, later + 30 * SECOND)
        .await?;
    assert!(store.dns_leftovers_due(later, later, 10).await?.is_empty());
    store
        .release_certificate_lease(org, &settled.id, "w")
        .await?;

    // Removed: nothing due.
    let left = store.dns_records_to_clean(org, &settled.id).await?;
    let ids: Vec<String> = left.into_iter().map(|row| row.id).collect();
    store.mark_dns_cleaned(org, &ids, later).await?;
    assert!(store.dns_leftovers_due(later, later, 10).await?.is_empty());

    // Deleted while in flight (its worker killed): due whatever its status,
    // and readable for the removal although deleted.
    assert!(
        store
            .deleted_certificate_with_dns_leftovers(org, &in_flight.id, later)
            .await?
            .is_none()
    );
    store
        .delete_certificate(org, &in_flight.id, later, Effects::default())
        .await?;
    let due = store.dns_leftovers_due(later, later, 10).await?;
    assert_eq!(due, vec![(org.to_owned(), in_flight.id.clone())]);
    let deleted = store
        .deleted_certificate_with_dns_leftovers(org, &in_flight.id, later)
        .await?
        .expect("a deleted certificate with values left");
    assert_eq!(deleted.id, in_flight.id);
    assert!(
        store
            .deleted_certificate_with_dns_leftovers(org, &settled.id, later)
            .await?
            .is_none(),
        "not deleted"
    );
    Ok(())
}
