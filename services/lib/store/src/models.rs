//! Row types: `*Row` is what a query returns, `New*` what an insert writes.

use diesel::prelude::*;

use crate::schema::{
    acme_accounts, acme_challenges, api_tokens, audit_log, certificate_versions, certificates,
    dns_providers, eab_credentials, installations, notification_channels, notifications_sent,
    organizations, outbox,
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = organizations)]
pub struct Organization {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub contact_email: String,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: String,
    /// `None` for platform-scoped tokens (admin).
    pub organization_id: Option<String>,
    pub role: String,
    pub secret_sha256: Vec<u8>,
    pub description: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// From this time (Unix milliseconds) the token no longer authenticates;
    /// `None`: never.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = acme_accounts)]
pub struct AcmeAccount {
    pub id: String,
    pub organization_id: String,
    pub directory_url: String,
    pub account_url: String,
    pub contact: String,
    /// Vault-sealed account credentials (contains the account private key).
    pub credentials_sealed: Vec<u8>,
    pub eab_key_id: Option<String>,
    pub created_at: i64,
}

/// An organization's External Account Binding at one CA directory: the key id
/// the CA gave, and its HMAC key sealed by the vault (context `eab-hmac`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = eab_credentials)]
pub struct EabCredential {
    pub id: String,
    pub organization_id: String,
    pub directory_url: String,
    pub key_id: String,
    /// Vault-sealed HMAC key (raw bytes, not base64).
    pub hmac_sealed: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = certificates)]
pub struct Certificate {
    pub id: String,
    pub organization_id: String,
    pub primary_name: String,
    /// Names joined with `,` in request order (primary first).
    pub names: String,
    /// Names sorted and joined with `,`: the identity of the name set.
    pub names_key: String,
    pub wildcard: bool,
    pub key_type: String,
    pub challenge_type: String,
    pub dns_provider_id: Option<String>,
    pub directory_url: String,
    pub profile: Option<String>,
    pub status: String,
    pub auto_renew: bool,
    pub renew_before_ms: Option<i64>,
    pub renew_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub current_version_id: Option<String>,
    pub not_after: Option<i64>,
    pub pending_order_url: Option<String>,
    pub pending_reason: Option<String>,
    /// Vault-sealed key of the order being finalized (see `record_pending_key`).
    pub pending_key_sealed: Option<Vec<u8>>,
    /// When an attempt started placing an order whose URL is not saved yet
    /// (see `record_order_attempt`).
    pub order_attempt_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub deleted_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Why `renew_at` is when it is: the CA's ARI window or the lifetime rule.
    pub renew_reason: Option<String>,
    /// Why the next attempt waits until `next_attempt_at` (a rate-limit
    /// budget, the CA's `rateLimited`); none when nothing holds it back.
    pub waiting_reason: Option<String>,
    /// When the CA's renewal information is fetched again (none: the issuing
    /// CA offers none).
    pub ari_next_at: Option<i64>,
}

impl Certificate {
    /// The names in request order.
    pub fn name_list(&self) -> Vec<String> {
        self.names.split(',').map(str::to_owned).collect()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = certificate_versions)]
pub struct CertificateVersion {
    pub id: String,
    pub certificate_id: String,
    pub organization_id: String,
    pub version: i32,
    pub serial: String,
    pub fingerprint_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    pub leaf_pem: String,
    pub chain_pem: String,
    /// Vault-sealed PKCS#8 private key; never plaintext.
    pub key_sealed: Vec<u8>,
    pub key_type: String,
    pub order_url: String,
    pub ari_start: Option<i64>,
    pub ari_end: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<String>,
    /// Where the archive's copy is, and when it was written.
    pub backup_location: Option<String>,
    pub created_at: i64,
    pub backup_at: Option<i64>,
    /// Why the last attempt to write the copy failed (none once written).
    pub backup_error: Option<String>,
    pub backup_attempts: i32,
    /// When the next attempt is due after a failure.
    pub backup_next_at: Option<i64>,
    /// The configured name of the CA that issued this version.
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = acme_challenges)]
pub struct AcmeChallenge {
    pub id: String,
    pub organization_id: String,
    pub certificate_id: String,
    pub order_url: String,
    pub authorization_url: String,
    pub name: String,
    pub challenge_type: String,
    pub token: String,
    pub key_authorization: String,
    pub dns_record_name: Option<String>,
    pub dns_record_value: Option<String>,
    pub status: String,
    pub validated_at: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// DNS-01: the zone the value was written in.
    pub dns_zone: Option<String>,
    /// DNS-01: when the value was removed from DNS again.
    pub dns_cleaned_at: Option<i64>,
}

/// A DNS provider of an organization. `settings` is a JSON object of the plain
/// settings; `secrets_sealed` the vault-sealed JSON object of the secret ones,
/// `secret_names` their names, comma-separated.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = dns_providers)]
pub struct DnsProviderRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub kind: String,
    pub settings: String,
    pub secret_names: String,
    pub secrets_sealed: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

/// A job or event waiting to be published. Written in the same transaction as
/// the state change that causes it.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = outbox)]
pub struct OutboxMessage {
    /// UUIDv7: sorts by creation time.
    pub id: String,
    pub topic: String,
    pub organization_id: Option<String>,
    pub payload: Vec<u8>,
    pub created_at: i64,
    /// W3C trace context of the call or job that wrote it; published in the
    /// message's `traceparent` header (a fresh one when `None`).
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: String,
    pub organization_id: Option<String>,
    /// Token id, or `system` for the scheduler and workers.
    pub actor: String,
    pub action: String,
    pub target_id: Option<String>,
    pub details: String,
    pub created_at: i64,
    /// The caller's IP address, for entries written by the API.
    pub remote_addr: Option<String>,
}

impl AuditEntry {
    pub fn new(
        organization_id: Option<&str>,
        actor: &str,
        action: &str,
        target_id: Option<&str>,
        now_ms: i64,
    ) -> Self {
        Self {
            id: crate::new_id(),
            organization_id: organization_id.map(str::to_owned),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target_id: target_id.map(str::to_owned),
            details: String::new(),
            created_at: now_ms,
            remote_addr: None,
        }
    }

    /// The entry with the caller's address (`None` when the transport gave none).
    #[must_use]
    pub fn from_remote(mut self, remote_addr: Option<&str>) -> Self {
        self.remote_addr = remote_addr.map(str::to_owned);
        self
    }
}

/// Side effects written atomically with a state change.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub outbox: Vec<OutboxMessage>,
    pub audit: Vec<AuditEntry>,
}

/// A notification channel of an organization. `kind` is `email` or
/// `webhook`; `settings` the JSON object of its plain settings;
/// `secrets_sealed` the vault-sealed JSON object of its secret ones (SMTP
/// password, webhook signing secret), when it has any.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = notification_channels)]
pub struct NotificationChannelRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub kind: String,
    pub settings: String,
    pub secrets_sealed: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

/// One notification: an event to deliver to one channel, and how that went.
/// `status` is `pending` (to be sent at `next_attempt_at`), `sent`, or
/// `failed` (given up after the last attempt, or the channel was deleted).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = notifications_sent)]
pub struct NotificationRow {
    pub event_id: String,
    pub channel_id: String,
    pub organization_id: String,
    pub certificate_id: String,
    /// The lifecycle event, protobuf-encoded.
    pub event: Vec<u8>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<i64>,
    pub claimed_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// What one proxy agent last reported for a certificate.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = installations)]
pub struct InstallationRow {
    pub certificate_id: String,
    /// The agent's name (unique per proxy host and target).
    pub agent: String,
    pub organization_id: String,
    pub host: String,
    /// `nginx`, `traefik` or `caddy`.
    pub target: String,
    pub version: i32,
    pub serial: String,
    /// Installed, and the served leaf matched the version's fingerprint.
    pub ok: bool,
    pub error: Option<String>,
    pub verified_at: Option<i64>,
    pub updated_at: i64,
}
