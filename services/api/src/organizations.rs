//! OrganizationService: tenants and their API tokens, for platform admin tokens only.

mod audit;

use certfleet_core::{InputError, Role, validate_email, validate_slug};
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::organization_service_server::OrganizationService;
use certfleet_store::{ApiToken, AuditEntry, Organization, new_id};
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, new_token};
use crate::convert::{optional_seconds, remote_ip, role_from_proto, role_to_proto, seconds};
use crate::{ApiError, ApiState};

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 200;
/// The longest token lifetime accepted (ten years): a longer one is more
/// likely a unit mistake than an intent; 0 asks for a token that never expires.
const MAX_EXPIRES_IN_SECONDS: i64 = 10 * 365 * 24 * 3600;

/// An authorized platform admin caller.
#[derive(Debug, Clone)]
struct Admin {
    token_id: String,
    /// Recorded in the audit entries the call writes.
    remote_addr: Option<String>,
}

/// The gRPC implementation of `certfleet.v1.OrganizationService`.
#[derive(Clone)]
pub struct OrganizationApi {
    state: ApiState,
    auth: Authenticator,
}

impl std::fmt::Debug for OrganizationApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrganizationApi").finish_non_exhaustive()
    }
}

impl OrganizationApi {
    pub(crate) fn new(state: ApiState, auth: Authenticator) -> Self {
        OrganizationApi { state, auth }
    }

    /// The caller, when it holds a platform admin token.
    async fn admin<T>(&self, request: &Request<T>) -> Result<Admin, ApiError> {
        let principal = self.auth.authenticate(request.metadata()).await?;
        principal.platform_admin()?;
        Ok(Admin {
            token_id: principal.token_id,
            remote_addr: remote_ip(request),
        })
    }

    async fn new_organization(
        &self,
        actor: &Admin,
        request: pb::CreateOrganizationRequest,
    ) -> Result<pb::Organization, ApiError> {
        validate_slug("slug", &request.slug)?;
        let name = request.name.trim();
        check_text("name", name, MAX_NAME_CHARS, true)?;
        validate_email("contact_email", &request.contact_email)?;
        let now = self.state.clock.now_ms();
        let organization = Organization {
            id: new_id(),
            slug: request.slug,
            name: name.to_owned(),
            contact_email: request.contact_email,
            created_at: now,
            deleted_at: None,
        };
        let mut audit = AuditEntry::new(
            Some(&organization.id),
            &actor.token_id,
            "organization.created",
            Some(&organization.id),
            now,
        )
        .from_remote(actor.remote_addr.as_deref());
        audit.details = organization.slug.clone();
        let created = self
            .state
            .store
            .create_organization(organization, audit)
            .await
            .map_err(|error| ApiError::store("create organization", error))?;
        tracing::info!(organization_id = %created.id, slug = %created.slug, "organization created");
        Ok(pb::Organization {
            id: created.id,
            slug: created.slug,
            name: created.name,
            contact_email: created.contact_email,
            created_at: seconds(created.created_at),
        })
    }

    async fn new_api_token(
        &self,
        actor: &Admin,
        request: pb::CreateApiTokenRequest,
    ) -> Result<pb::ApiToken, ApiError> {
        validate_slug("organization", &request.organization)?;
        let role = role_from_proto("role", request.role)?;
        check_text(
            "description",
            &request.description,
            MAX_DESCRIPTION_CHARS,
            false,
        )?;
        let lifetime_ms = lifetime_ms("expires_in_seconds", request.expires_in_seconds)?;
        let organization = self.organization(&request.organization).await?;
        let now = self.state.clock.now_ms();
        let expires_at = lifetime_ms.map(|lifetime_ms| now.saturating_add(lifetime_ms));
        let token = new_token(
            Some(&organization.id),
            role,
            &request.description,
            now,
            expires_at,
        );
        let mut audit = AuditEntry::new(
            Some(&organization.id),
            &actor.token_id,
            "api_token.created",
            Some(&token.row.id),
            now,
        )
        .from_remote(actor.remote_addr.as_deref());
        audit.details = format!("role {role}");
        let stored = self
            .state
            .store
            .insert_api_token(token.row, audit)
            .await
            .map_err(|error| ApiError::store("create api token", error))?;
        tracing::info!(
            organization_id = %organization.id,
            token_id = %stored.id,
            %role,
            "api token created"
        );
        Ok(pb::ApiToken {
            id: stored.id,
            organization_id: organization.id,
            role: role_to_proto(role).into(),
            token: token.bearer,
            created_at: seconds(stored.created_at),
            expires_at: optional_seconds(stored.expires_at),
        })
    }

    /// The live organization with this slug.
    async fn organization(&self, slug: &str) -> Result<Organization, ApiError> {
        self.state
            .store
            .find_organization_by_slug(slug)
            .await
            .map_err(|error| ApiError::store("find organization", error))?
            .ok_or_else(|| ApiError::NotFound(format!("organization {slug:?} not found")))
    }

    async fn api_tokens(
        &self,
        request: pb::ListApiTokensRequest,
    ) -> Result<pb::ListApiTokensResponse, ApiError> {
        validate_slug("organization", &request.organization)?;
        let organization = self.organization(&request.organization).await?;
        let tokens = self
            .state
            .store
            .list_api_tokens(&organization.id)
            .await
            .map_err(|error| ApiError::store("list api tokens", error))?;
        let tokens = tokens
            .into_iter()
            .map(|token| token_info(token, &organization))
            .collect();
        Ok(pb::ListApiTokensResponse { tokens })
    }

    async fn revoke(
        &self,
        actor: &Admin,
        request: pb::RevokeApiTokenRequest,
    ) -> Result<pb::ApiTokenInfo, ApiError> {
        validate_slug("organization", &request.organization)?;
        check_text("id", &request.id, MAX_NAME_CHARS, true)?;
        let organization = self.organization(&request.organization).await?;
        let now = self.state.clock.now_ms();
        let audit = AuditEntry::new(
            Some(&organization.id),
            &actor.token_id,
            "api_token.revoked",
            Some(&request.id),
            now,
        )
        .from_remote(actor.remote_addr.as_deref());
        let revoked = self
            .state
            .store
            .revoke_api_token(&organization.id, &request.id, now, audit)
            .await
            .map_err(|error| ApiError::store("revoke api token", error))?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "api token {:?} not found in organization {:?}",
                    request.id, organization.slug
                ))
            })?;
        tracing::info!(
            organization_id = %organization.id,
            token_id = %revoked.id,
            "api token revoked"
        );
        Ok(token_info(revoked, &organization))
    }
}

/// A stored token as listed: everything but the secret hash.
fn token_info(token: ApiToken, organization: &Organization) -> pb::ApiTokenInfo {
    let role = match Role::parse("role", &token.role) {
        Ok(role) => role_to_proto(role),
        Err(_) => {
            tracing::error!(token_id = %token.id, role = %token.role, "api token has an unknown role");
            pb::Role::Unspecified
        }
    };
    pb::ApiTokenInfo {
        id: token.id,
        organization_id: organization.id.clone(),
        organization: organization.slug.clone(),
        role: role.into(),
        description: token.description,
        created_at: seconds(token.created_at),
        last_used_at: optional_seconds(token.last_used_at),
        expires_at: optional_seconds(token.expires_at),
        revoked_at: optional_seconds(token.revoked_at),
    }
}

/// A requested token lifetime in milliseconds: `None` for 0 (never expires).
fn lifetime_ms(field: &str, seconds: i64) -> Result<Option<i64>, InputError> {
    if seconds < 0 {
        return Err(InputError::new(
            field,
            seconds.to_string(),
            "is negative; give a number of seconds, or 0 for a token that never expires",
        ));
    }
    if seconds > MAX_EXPIRES_IN_SECONDS {
        return Err(InputError::new(
            field,
            seconds.to_string(),
            format!("is longer than {MAX_EXPIRES_IN_SECONDS} seconds (ten years)"),
        ));
    }
    Ok((seconds > 0).then(|| seconds * 1000))
}

/// A free-text field: at most `max_chars` characters, non-empty when `required`.
fn check_text(
    field: &str,
    value: &str,
    max_chars: usize,
    required: bool,
) -> Result<(), InputError> {
    if required && value.is_empty() {
        return Err(InputError::new(field, value, "is empty"));
    }
    if value.chars().count() > max_chars {
        let shown: String = value.chars().take(40).collect();
        return Err(InputError::new(
            field,
            format!("{shown}…"),
            format!("is longer than {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InputError::new(field, value, "contains control characters"));
    }
    Ok(())
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let actor = self.admin(&request).await?;
        let organization = self.new_organization(&actor, request.into_inner()).await?;
        Ok(Response::new(organization))
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::ApiToken>, Status> {
        let actor = self.admin(&request).await?;
        let token = self.new_api_token(&actor, request.into_inner()).await?;
        Ok(Response::new(token))
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        self.admin(&request).await?;
        let tokens = self.api_tokens(request.into_inner()).await?;
        Ok(Response::new(tokens))
    }

    async fn revoke_api_token(
        &self,
        request: Request<pb::RevokeApiTokenRequest>,
    ) -> Result<Response<pb::ApiTokenInfo>, Status> {
        let actor = self.admin(&request).await?;
        let token = self.revoke(&actor, request.into_inner()).await?;
        Ok(Response::new(token))
    }

    async fn list_audit_entries(
        &self,
        request: Request<pb::ListAuditEntriesRequest>,
    ) -> Result<Response<pb::ListAuditEntriesResponse>, Status> {
        self.admin(&request).await?;
        let entries = self.audit_entries(request.into_inner()).await?;
        Ok(Response::new(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_EXPIRES_IN_SECONDS, check_text, lifetime_ms};

    #[test]
    fn token_lifetimes() {
        assert_eq!(lifetime_ms("expires_in_seconds", 0).ok(), Some(None));
        assert_eq!(
            lifetime_ms("expires_in_seconds", 90).ok(),
            Some(Some(90_000))
        );
        let negative = lifetime_ms("expires_in_seconds", -1).map_err(|error| error.to_string());
        assert!(
            matches!(&negative, Err(message) if message.contains("expires_in_seconds") && message.contains("-1")),
            "{negative:?}"
        );
        assert!(lifetime_ms("expires_in_seconds", MAX_EXPIRES_IN_SECONDS + 1).is_err());
        assert!(lifetime_ms("expires_in_seconds", i64::MAX).is_err());
    }

    #[test]
    fn text_fields() {
        assert!(check_text("name", "Acme", 200, true).is_ok());
        assert!(check_text("name", "", 200, true).is_err());
        assert!(check_text("description", "", 200, false).is_ok());
        assert!(check_text("name", &"x".repeat(201), 200, true).is_err());
        assert!(check_text("name", "a\nb", 200, true).is_err());
    }
}
