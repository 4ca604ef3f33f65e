//! Builders of rows and side effects shared by the scenarios.

use certfleet_store::{
    AuditEntry, Certificate, Effects, NewCertificateVersion, Organization, OutboxMessage, Store,
    new_id,
};

/// A fixed "now" (Unix milliseconds) so that every time in a scenario is explicit.
pub const NOW: i64 = 1_800_000_000_000;
pub const SECOND: i64 = 1_000;
pub const DAY: i64 = 86_400_000;

/// Creates an organization with the given slug.
pub async fn organization(store: &Store, slug: &str) -> anyhow::Result<Organization> {
    let organization = Organization {
        id: new_id(),
        slug: slug.to_owned(),
        name: format!("{slug} inc"),
        contact_email: format!("admin@{slug}.example"),
        created_at: NOW,
        deleted_at: None,
    };
    let audit = AuditEntry::new(
        Some(&organization.id),
        "admin",
        "organization.create",
        None,
        NOW,
    );
    Ok(store.create_organization(organization, audit).await?)
}

/// A pending HTTP-01 certificate for `names` (primary first), not yet stored.
pub fn certificate(organization_id: &str, names: &[&str], created_at: i64) -> Certificate {
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_unstable();
    Certificate {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        primary_name: names[0].to_owned(),
        names: names.join(","),
        names_key: sorted.join(","),
        wildcard: false,
        key_type: "ecdsa-p256".to_owned(),
        challenge_type: "http-01".to_owned(),
        dns_provider_id: None,
        directory_url: "https://ca.example/dir".to_owned(),
        profile: None,
        status: "pending".to_owned(),
        auto_renew: true,
        renew_before_ms: None,
        renew_at: None,
        next_attempt_at: Some(created_at),
        attempts: 0,
        last_error: None,
        current_version_id: None,
        not_after: None,
        pending_order_url: None,
        pending_reason: None,
        pending_key_sealed: None,
        order_attempt_at: None,
        lease_owner: None,
        lease_until: None,
        deleted_at: None,
        created_at,
        updated_at: created_at,
        renew_reason: None,
        waiting_reason: None,
        ari_next_at: None,
    }
}

/// Stores a certificate without side effects.
pub async fn stored(store: &Store, certificate: Certificate) -> anyhow::Result<Certificate> {
    Ok(store
        .create_certificate(certificate, Effects::default())
        .await?)
}

/// One outbox message of `topic` for the organization.
pub fn message(organization_id: &str, topic: &str) -> OutboxMessage {
    OutboxMessage {
        id: new_id(),
        topic: topic.to_owned(),
        organization_id: Some(organization_id.to_owned()),
        payload: topic.as_bytes().to_vec(),
        created_at: NOW,
        traceparent: None,
    }
}

/// Effects of one job message and one audit entry.
pub fn job(organization_id: &str, target_id: &str, topic: &str) -> Effects {
    Effects {
        outbox: vec![message(organization_id, topic)],
        audit: vec![AuditEntry::new(
            Some(organization_id),
            "token-1",
            topic,
            Some(target_id),
            NOW,
        )],
    }
}

/// An issued certificate valid from `not_before` to `not_after`.
pub fn version(not_before: i64, not_after: i64) -> NewCertificateVersion {
    let id = new_id();
    NewCertificateVersion {
        version: None,
        serial: format!("serial-{id}"),
        fingerprint_sha256: format!("fingerprint-{id}"),
        id,
        not_before,
        not_after,
        leaf_pem: "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n".to_owned(),
        chain_pem: "-----BEGIN CERTIFICATE-----\nchain\n-----END CERTIFICATE-----\n".to_owned(),
        key_sealed: b"sealed key".to_vec(),
        key_type: "ecdsa-p256".to_owned(),
        order_url: "https://ca.example/order/1".to_owned(),
        issuer: None,
    }
}

/// Leases the certificate to `owner` and records a version expiring at
/// `not_after`, renewable from `renew_at`.
pub async fn issue(
    store: &Store,
    certificate: &Certificate,
    owner: &str,
    not_after: i64,
    renew_at: i64,
) -> anyhow::Result<certfleet_store::CertificateVersion> {
    let organization_id = &certificate.organization_id;
    let leased = store
        .acquire_certificate_lease(
            organization_id,
            &certificate.id,
            owner,
            NOW,
            NOW + 60 * SECOND,
        )
        .await?;
    anyhow::ensure!(leased.is_some(), "lease of {} refused", certificate.id);
    Ok(store
        .record_issued(
            organization_id,
            &certificate.id,
            owner,
            version(NOW - DAY, not_after),
            certfleet_store::RenewalPlan::at(renew_at, "lifetime rule"),
            NOW,
            Effects::default(),
        )
        .await?)
}

/// The certificate as stored now (deleted or not is not checked: it must exist).
pub async fn reload(store: &Store, certificate: &Certificate) -> anyhow::Result<Certificate> {
    store
        .get_certificate(&certificate.organization_id, &certificate.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("certificate {} vanished", certificate.id))
}

/// Ids of every outbox message, in publication order.
pub async fn outbox_ids(store: &Store) -> anyhow::Result<Vec<String>> {
    Ok(store
        .outbox_batch(10_000)
        .await?
        .into_iter()
        .map(|message| message.id)
        .collect())
}
