//! Bearer tokens: `cf1.<token id>.<secret>`, the secret 32 random bytes in
//! base64url without padding, stored only as the SHA-256 of those bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certfleet_core::{Clock, InputError, Role, validate_slug};
use certfleet_store::{ApiToken, AuditEntry, Store, new_id};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tonic::metadata::MetadataMap;

use crate::ApiError;

const TOKEN_PREFIX: &str = "cf1.";
const SECRET_LEN: usize = 32;
/// How often one process records that a token was used.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Who is calling, once the bearer token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    /// `None` for platform tokens.
    pub organization_id: Option<String>,
    pub role: Role,
}

/// The organization a call acts on, as far as the token alone tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// An organization token's own organization (its id).
    Own(&'a str),
    /// The organization a platform agent token names (a well-formed slug,
    /// not looked up yet).
    Named(&'a str),
}

impl Principal {
    /// For calls on one organization that platform agent tokens may make too:
    /// an organization token acts on its own organization and leaves
    /// `organization` empty; an agent token names the organization's slug there.
    pub fn scope<'a>(&'a self, needed: Role, organization: &'a str) -> Result<Scope<'a>, ApiError> {
        if !self.is_agent() {
            let organization_id = self.organization(needed)?;
            if !organization.is_empty() {
                return Err(InputError::new(
                    "organization",
                    organization,
                    "is for platform agent tokens; an organization token acts on its own organization, leave it empty",
                )
                .into());
            }
            return Ok(Scope::Own(organization_id));
        }
        if !self.role.allows(needed) {
            return Err(ApiError::PermissionDenied(format!(
                "this call needs a token with the {needed} role; agent tokens only read certificates and their bundles"
            )));
        }
        if organization.is_empty() {
            return Err(InputError::new(
                "organization",
                organization,
                "is empty; an agent token names the organization (slug) it acts on",
            )
            .into());
        }
        validate_slug("organization", organization)?;
        Ok(Scope::Named(organization))
    }

    /// Succeeds for platform admin and agent tokens: the calls that read
    /// across organizations (the organization list).
    pub fn platform_reader(&self) -> Result<(), ApiError> {
        if self.organization_id.is_none() && self.role.allows(Role::Agent) {
            return Ok(());
        }
        Err(ApiError::PermissionDenied(
            "this call needs a platform admin or agent token".to_owned(),
        ))
    }

    fn is_agent(&self) -> bool {
        self.organization_id.is_none() && self.role == Role::Agent
    }

    /// The caller's organization, when it is an organization token whose role allows `needed`.
    pub fn organization(&self, needed: Role) -> Result<&str, ApiError> {
        let Some(organization_id) = self.organization_id.as_deref() else {
            return Err(ApiError::PermissionDenied(
                "certificate calls need an organization token".to_owned(),
            ));
        };
        if !self.role.allows(needed) {
            return Err(ApiError::PermissionDenied(format!(
                "this call needs a token with the {needed} role; this token has the {} role",
                self.role
            )));
        }
        Ok(organization_id)
    }

    /// Succeeds for platform admin tokens only.
    pub fn platform_admin(&self) -> Result<(), ApiError> {
        if self.organization_id.is_none() && self.role == Role::Admin {
            return Ok(());
        }
        Err(ApiError::PermissionDenied(
            "organization calls need a platform admin token".to_owned(),
        ))
    }
}

/// A freshly made token: the row to store and the bearer string shown once.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub row: ApiToken,
    pub bearer: String,
}

/// SHA-256 of the raw secret bytes, as stored in `api_tokens.secret_sha256`.
pub fn hash_secret(secret: &[u8]) -> Vec<u8> {
    Sha256::digest(secret).to_vec()
}

/// Makes a token with a fresh random secret; nothing is stored yet.
/// `expires_at_ms`: when it stops authenticating, `None` for never.
pub fn new_token(
    organization_id: Option<&str>,
    role: Role,
    description: &str,
    now_ms: i64,
    expires_at_ms: Option<i64>,
) -> NewToken {
    let mut secret = [0_u8; SECRET_LEN];
    rand::rng().fill_bytes(&mut secret);
    let id = new_id();
    let bearer = format!("{TOKEN_PREFIX}{id}.{}", URL_SAFE_NO_PAD.encode(secret));
    let row = ApiToken {
        id,
        organization_id: organization_id.map(str::to_owned),
        role: role.as_str().to_owned(),
        secret_sha256: hash_secret(&secret),
        description: description.to_owned(),
        created_at: now_ms,
        last_used_at: None,
        revoked_at: None,
        expires_at: expires_at_ms,
    };
    NewToken { row, bearer }
}

/// Creates and stores a platform admin token (audited); returns the bearer string.
pub async fn create_admin_token(
    store: &Store,
    clock: &dyn Clock,
    description: &str,
) -> Result<String, ApiError> {
    let now = clock.now_ms();
    let token = new_token(None, Role::Admin, description, now, None);
    let audit = AuditEntry::new(
        None,
        "system",
        "api_token.created",
        Some(&token.row.id),
        now,
    );
    store
        .insert_api_token(token.row, audit)
        .await
        .map_err(|error| ApiError::store("create admin token", error))?;
    Ok(token.bearer)
}

/// Whether the token's lifetime is over at `now_ms`.
fn is_expired(token: &ApiToken, now_ms: i64) -> bool {
    token
        .expires_at
        .is_some_and(|expires_at| expires_at <= now_ms)
}

/// Splits a bearer string into token id and secret bytes.
fn parse_bearer(bearer: &str) -> Option<(&str, Vec<u8>)> {
    let (token_id, secret) = bearer.strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
    if token_id.is_empty() {
        return None;
    }
    let secret = URL_SAFE_NO_PAD.decode(secret).ok()?;
    (secret.len() == SECRET_LEN).then_some((token_id, secret))
}

/// The token in an `authorization: Bearer …` header.
fn bearer_from(metadata: &MetadataMap) -> Option<&str> {
    let header = metadata.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Checks bearer tokens against the store.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    clock: Arc<dyn Clock>,
    /// Last time this process recorded each token's use.
    touched: Arc<Mutex<HashMap<String, i64>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// An authorized organization-token caller: its organization, its token
/// (the audit entries' actor) and its address.
#[derive(Debug, Clone)]
pub(crate) struct OrgCaller {
    pub organization_id: String,
    pub token_id: String,
    /// Recorded in the audit entries the call writes.
    pub remote_addr: Option<String>,
}

impl Authenticator {
    /// The caller of a service only organization tokens may use (`what`
    /// names it in the refusal, e.g. "DNS provider calls"), when its token
    /// allows `needed`.
    pub(crate) async fn organization_caller<T>(
        &self,
        request: &tonic::Request<T>,
        needed: Role,
        what: &str,
    ) -> Result<OrgCaller, ApiError> {
        let principal = self.authenticate(request.metadata()).await?;
        if principal.organization_id.is_none() {
            return Err(ApiError::PermissionDenied(format!(
                "{what} need an organization token"
            )));
        }
        let organization_id = principal.organization(needed)?.to_owned();
        Ok(OrgCaller {
            organization_id,
            token_id: principal.token_id,
            remote_addr: crate::convert::remote_ip(request),
        })
    }
}

impl Authenticator {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Authenticator {
            store,
            clock,
            touched: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The principal of a request; every kind of bad token is the same
    /// [`ApiError::Unauthenticated`].
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, ApiError> {
        let (token_id, secret) = bearer_from(metadata)
            .and_then(parse_bearer)
            .ok_or(ApiError::Unauthenticated)?;
        let presented = hash_secret(&secret);
        let stored = self
            .store
            .find_api_token(token_id)
            .await
            .map_err(|error| ApiError::store("find api token", error))?;
        // Compare even for an unknown id, so both paths do the same work.
        let (expected, token) = match stored {
            Some(token) => (token.secret_sha256.clone(), Some(token)),
            None => (vec![0_u8; presented.len()], None),
        };
        let matches = bool::from(presented.ct_eq(&expected));
        // Unknown, wrong secret, revoked and expired look the same to the caller.
        let now = self.clock.now_ms();
        let token = match token {
            Some(token) if matches && token.revoked_at.is_none() && !is_expired(&token, now) => {
                token
            }
            _ => return Err(ApiError::Unauthenticated),
        };
        let Ok(role) = Role::parse("role", &token.role) else {
            tracing::error!(token_id = %token.id, role = %token.role, "api token has an unknown role");
            return Err(ApiError::Unauthenticated);
        };
        // A removed organization's tokens are not found (`find_api_token`).
        self.touch(&token.id);
        Ok(Principal {
            token_id: token.id,
            organization_id: token.organization_id,
            role,
        })
    }

    /// Records the token's use in the background, at most once a minute per process.
    fn touch(&self, token_id: &str) {
        let now = self.clock.now_ms();
        {
            let Ok(mut touched) = self.touched.lock() else {
                return;
            };
            if touched
                .get(token_id)
                .is_some_and(|last| now - last < TOUCH_INTERVAL_MS)
            {
                return;
            }
            touched.insert(token_id.to_owned(), now);
        }
        let store = self.store.clone();
        let token_id = token_id.to_owned();
        tokio::spawn(async move {
            if let Err(error) = store.touch_api_token(&token_id, now).await {
                tracing::debug!(%token_id, %error, "cannot record api token use");
            }
        });
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn bearer_round_trip() {
        let token = new_token(Some("org"), Role::Read, "ci", 1, None);
        let (id, secret) = parse_bearer(&token.bearer).unwrap();
        assert_eq!(id, token.row.id);
        assert_eq!(hash_secret(&secret), token.row.secret_sha256);
        assert_eq!(token.row.role, "read");
    }

    #[test]
    fn malformed_bearers_are_refused() {
        let token = new_token(None, Role::Admin, "", 1, None);
        let short = &token.bearer[..token.bearer.len() - 2];
        for bad in [
            "",
            "cf1.",
            "cf1..AAAA",
            "cf2.id.AAAA",
            "cf1.id",
            short,
            "cf1.id.not*base64",
        ] {
            assert!(parse_bearer(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn header_needs_the_bearer_scheme() {
        let mut metadata = MetadataMap::new();
        assert_eq!(bearer_from(&metadata), None);
        metadata.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_from(&metadata), None);
        metadata.insert("authorization", "bearer cf1.a.b".parse().unwrap());
        assert_eq!(bearer_from(&metadata), Some("cf1.a.b"));
    }

    #[test]
    fn roles_and_scopes() {
        let org = Principal {
            token_id: "t".into(),
            organization_id: Some("o".into()),
            role: Role::Read,
        };
        assert_eq!(org.organization(Role::Read).ok(), Some("o"));
        assert!(matches!(
            org.organization(Role::Write),
            Err(ApiError::PermissionDenied(_))
        ));
        assert!(org.platform_admin().is_err());
        let admin = Principal {
            token_id: "t".into(),
            organization_id: None,
            role: Role::Admin,
        };
        assert!(admin.platform_admin().is_ok());
        assert!(admin.organization(Role::Read).is_err());
        assert!(admin.platform_reader().is_ok());
        assert!(matches!(
            admin.scope(Role::Read, "acme"),
            Err(ApiError::PermissionDenied(_))
        ));
        assert!(org.platform_reader().is_err());
    }

    #[test]
    fn agents_name_the_organization_and_only_read() {
        let agent = Principal {
            token_id: "t".into(),
            organization_id: None,
            role: Role::Agent,
        };
        assert_eq!(
            agent.scope(Role::Read, "acme").ok(),
            Some(Scope::Named("acme"))
        );
        assert_eq!(
            agent.scope(Role::Bundle, "acme").ok(),
            Some(Scope::Named("acme"))
        );
        assert!(matches!(
            agent.scope(Role::Write, "acme"),
            Err(ApiError::PermissionDenied(_))
        ));
        for bad in ["", "Not_A_Slug"] {
            let Err(ApiError::InvalidArgument(error)) = agent.scope(Role::Read, bad) else {
                panic!("{bad:?} accepted");
            };
            assert!(error.to_string().starts_with("organization: "), "{error}");
        }
        assert!(agent.platform_reader().is_ok());
        assert!(agent.platform_admin().is_err());
        assert!(agent.organization(Role::Read).is_err());

        let org = Principal {
            token_id: "t".into(),
            organization_id: Some("o".into()),
            role: Role::Bundle,
        };
        assert_eq!(org.scope(Role::Bundle, "").ok(), Some(Scope::Own("o")));
        assert!(matches!(
            org.scope(Role::Read, "other"),
            Err(ApiError::InvalidArgument(_))
        ));
        assert!(matches!(
            org.scope(Role::Write, ""),
            Err(ApiError::PermissionDenied(_))
        ));
    }

    /// A store with one live and one soft-deleted organization, a read token
    /// for each, and an admin token.
    async fn store_with_tokens() -> (tempfile::TempDir, Store, [String; 3]) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(dir.path().join("certfleet.db").to_str().unwrap())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let mut bearers = Vec::new();
        for (slug, deleted_at) in [("live", None), ("gone", Some(2))] {
            let organization = certfleet_store::Organization {
                id: new_id(),
                slug: slug.to_owned(),
                name: slug.to_owned(),
                contact_email: format!("ops@{slug}.example.com"),
                created_at: 1,
                deleted_at,
            };
            let audit = AuditEntry::new(None, "test", "organization.created", None, 1);
            let organization = store
                .create_organization(organization, audit)
                .await
                .unwrap();
            let token = new_token(Some(&organization.id), Role::Read, "", 1, None);
            let audit = AuditEntry::new(None, "test", "api_token.created", None, 1);
            store.insert_api_token(token.row, audit).await.unwrap();
            bearers.push(token.bearer);
        }
        let admin = create_admin_token(&store, &certfleet_core::SystemClock, "test")
            .await
            .unwrap();
        bearers.push(admin);
        (dir, store, bearers.try_into().unwrap())
    }

    fn metadata(bearer: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", format!("Bearer {bearer}").parse().unwrap());
        metadata
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tokens_of_a_deleted_organization_do_not_authenticate() {
        let (_dir, store, [live, gone, admin]) = store_with_tokens().await;
        let authenticator = Authenticator::new(store, Arc::new(certfleet_core::SystemClock));
        let principal = authenticator.authenticate(&metadata(&live)).await.unwrap();
        assert_eq!(principal.role, Role::Read);
        assert!(principal.organization_id.is_some());
        assert!(matches!(
            authenticator.authenticate(&metadata(&gone)).await,
            Err(ApiError::Unauthenticated)
        ));
        // Platform tokens belong to no organization and are unaffected.
        let principal = authenticator.authenticate(&metadata(&admin)).await.unwrap();
        assert_eq!(principal.role, Role::Admin);
        assert_eq!(principal.organization_id, None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn expired_and_revoked_tokens_are_refused_like_unknown_ones() {
        let (_dir, store, [live, _gone, _admin]) = store_with_tokens().await;
        let clock = certfleet_core::ManualClock::new();
        let authenticator = Authenticator::new(store.clone(), clock.clone());
        let organization = store
            .find_organization_by_slug("live")
            .await
            .unwrap()
            .unwrap();
        let now = clock.now_ms();
        let expiring = new_token(
            Some(&organization.id),
            Role::Write,
            "",
            now,
            Some(now + 1000),
        );
        let audit = AuditEntry::new(None, "test", "api_token.created", None, now);
        store.insert_api_token(expiring.row, audit).await.unwrap();
        assert!(
            authenticator
                .authenticate(&metadata(&expiring.bearer))
                .await
                .is_ok()
        );
        clock.advance(std::time::Duration::from_millis(1000));
        assert!(matches!(
            authenticator
                .authenticate(&metadata(&expiring.bearer))
                .await,
            Err(ApiError::Unauthenticated)
        ));

        // Authenticated (and so touched) just before; refused right after.
        assert!(authenticator.authenticate(&metadata(&live)).await.is_ok());
        let (token_id, _) = parse_bearer(&live).unwrap();
        let audit = AuditEntry::new(None, "test", "api_token.revoked", None, now);
        store
            .revoke_api_token(
                certfleet_store::TokenOwner::Organization(&organization.id),
                token_id,
                clock.now_ms(),
                audit,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            authenticator.authenticate(&metadata(&live)).await,
            Err(ApiError::Unauthenticated)
        ));
    }

    #[test]
    fn expiry_is_inclusive_and_none_is_never() {
        let mut token = new_token(None, Role::Admin, "", 1, Some(100)).row;
        assert!(!is_expired(&token, 99));
        assert!(is_expired(&token, 100));
        token.expires_at = None;
        assert!(!is_expired(&token, i64::MAX));
    }
}
