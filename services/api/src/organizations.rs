//! OrganizationService: tenants and their API tokens, for platform admin
//! tokens; platform agent tokens may list the organizations.

mod audit;
mod eab;
mod tokens;

use certfleet_core::{InputError, validate_email, validate_slug};
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::organization_service_server::OrganizationService;
use certfleet_store::{AuditEntry, Organization, new_id};
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::convert::{remote_ip, seconds};
use crate::{ApiError, ApiState};

const MAX_NAME_CHARS: usize = 200;

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

    /// The live organizations, for platform admin and agent tokens.
    async fn organizations(&self) -> Result<pb::ListOrganizationsResponse, ApiError> {
        let organizations = self
            .state
            .store
            .list_organizations()
            .await
            .map_err(|error| ApiError::store("list organizations", error))?
            .into_iter()
            .map(organization_to_proto)
            .collect();
        Ok(pb::ListOrganizationsResponse { organizations })
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
        Ok(organization_to_proto(created))
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
}

fn organization_to_proto(organization: Organization) -> pb::Organization {
    pb::Organization {
        id: organization.id,
        slug: organization.slug,
        name: organization.name,
        contact_email: organization.contact_email,
        created_at: seconds(organization.created_at),
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

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let principal = self.auth.authenticate(request.metadata()).await?;
        principal.platform_reader()?;
        let organizations = self.organizations().await?;
        Ok(Response::new(organizations))
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

    async fn set_external_account_binding(
        &self,
        request: Request<pb::SetExternalAccountBindingRequest>,
    ) -> Result<Response<pb::ExternalAccountBinding>, Status> {
        let actor = self.admin(&request).await?;
        let binding = self.set_eab(&actor, request.into_inner()).await?;
        Ok(Response::new(binding))
    }

    async fn delete_external_account_binding(
        &self,
        request: Request<pb::DeleteExternalAccountBindingRequest>,
    ) -> Result<Response<pb::DeleteExternalAccountBindingResponse>, Status> {
        let actor = self.admin(&request).await?;
        let deleted = self.delete_eab(&actor, request.into_inner()).await?;
        Ok(Response::new(deleted))
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
