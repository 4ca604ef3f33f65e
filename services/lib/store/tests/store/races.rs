//! Races between workers: the database, not the caller, decides the winner.

use std::sync::Arc;

use certfleet_store::{Store, StoreError};

use crate::support::{NOW, SECOND, certificate, job, organization, outbox_ids, stored};

on_both_backends!(
    racing_creates_make_one_certificate,
    racing_leases_have_one_winner
);

const RACERS: usize = 8;

async fn racing_creates_make_one_certificate(store: &Store) -> anyhow::Result<()> {
    let acme = Arc::new(organization(store, "acme").await?);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..RACERS {
        let (store, acme) = (store.clone(), Arc::clone(&acme));
        tasks.spawn(async move {
            let new = certificate(&acme.id, &["acme.example", "www.acme.example"], NOW);
            let effects = job(&acme.id, &new.id, "job.issue");
            store.create_certificate(new, effects).await
        });
    }
    let mut created = Vec::new();
    let mut existing = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result? {
            Ok(certificate) => created.push(certificate.id),
            Err(StoreError::AlreadyExists { existing_id }) => existing.push(existing_id),
            Err(other) => anyhow::bail!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one creation wins");
    assert_eq!(existing.len(), RACERS - 1);
    assert!(existing.iter().all(|id| id == &created[0]), "{existing:?}");
    assert_eq!(outbox_ids(store).await?.len(), 1);
    Ok(())
}

async fn racing_leases_have_one_winner(store: &Store) -> anyhow::Result<()> {
    let acme = organization(store, "acme").await?;
    let target = stored(store, certificate(&acme.id, &["acme.example"], NOW)).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for racer in 0..RACERS {
        let (store, organization_id, id) = (store.clone(), acme.id.clone(), target.id.clone());
        tasks.spawn(async move {
            let owner = format!("worker-{racer}");
            let leased = store
                .acquire_certificate_lease(&organization_id, &id, &owner, NOW, NOW + 30 * SECOND)
                .await?;
            let named = store
                .acquire_named_lease("scheduler", &owner, NOW, NOW + 30 * SECOND)
                .await?;
            Ok::<_, StoreError>((owner, leased.is_some(), named))
        });
    }
    let mut certificate_winners = Vec::new();
    let mut named_winners = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (owner, leased, named) = result??;
        if leased {
            certificate_winners.push(owner.clone());
        }
        if named {
            named_winners.push(owner);
        }
    }
    assert_eq!(certificate_winners.len(), 1, "{certificate_winners:?}");
    assert_eq!(named_winners.len(), 1, "{named_winners:?}");
    let row = crate::support::reload(store, &target).await?;
    assert_eq!(row.lease_owner.as_ref(), certificate_winners.first());
    Ok(())
}
