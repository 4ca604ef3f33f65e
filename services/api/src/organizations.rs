//! OrganizationService: tenants and their API tokens, for platform admin tokens only.

use certfleet_core::{InputError, validate_email, validate_slug};
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::organization_service_server::OrganizationService;
use certfleet_store::{AuditEntry, Organization, new_id};
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, new_token};
use crate::convert::{role_from_proto, role_to_proto, seconds};
use crate::{ApiError, ApiState};

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 200;

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

    /// The admin token id of the caller.
    async fn admin<T>(&self, request: &Request<T>) -> Result<String, ApiError> {
        let principal = self.auth.authenticate(request.metadata()).await?;
        principal.platform_admin()?;
        Ok(principal.token_id)
    }

    async fn new_organization(
        &self,
        actor: &str,
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
            actor,
            "organization.created",
            Some(&organization.id),
            now,
        );
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
        actor: &str,
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
        let organization = self
            .state
            .store
            .find_organization_by_slug(&request.organization)
            .await
            .map_err(|error| ApiError::store("find organization", error))?
            .ok_or_else(|| {
                ApiError::NotFound(format!("organization {:?} not found", request.organization))
            })?;
        let now = self.state.clock.now_ms();
        let token = new_token(Some(&organization.id), role, &request.description, now);
        let mut audit = AuditEntry::new(
            Some(&organization.id),
            actor,
            "api_token.created",
            Some(&token.row.id),
            now,
        );
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
        })
    }
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
}

#[cfg(test)]
mod tests {
    use super::check_text;

    #[test]
    fn text_fields() {
        assert!(check_text("name", "Acme", 200, true).is_ok());
        assert!(check_text("name", "", 200, true).is_err());
        assert!(check_text("description", "", 200, false).is_ok());
        assert!(check_text("name", &"x".repeat(201), 200, true).is_err());
        assert!(check_text("name", "a\nb", 200, true).is_err());
    }
}
