//! API tokens: creating one (its secret shown once), listing an
//! organization's tokens or the platform agent tokens, revoking one.

use certfleet_core::{InputError, Role, validate_slug};
use certfleet_proto::v1 as pb;
use certfleet_store::{ApiToken, AuditEntry, Organization, TokenOwner};

use super::{Admin, MAX_NAME_CHARS, OrganizationApi, check_text};
use crate::ApiError;
use crate::auth::new_token;
use crate::convert::{optional_seconds, role_from_proto, role_to_proto, seconds};

const MAX_DESCRIPTION_CHARS: usize = 200;
/// The longest token lifetime accepted (ten years): a longer one is more
/// likely a unit mistake than an intent; 0 asks for a token that never expires.
const MAX_EXPIRES_IN_SECONDS: i64 = 10 * 365 * 24 * 3600;

impl OrganizationApi {
    pub(super) async fn new_api_token(
        &self,
        actor: &Admin,
        request: pb::CreateApiTokenRequest,
    ) -> Result<pb::ApiToken, ApiError> {
        let role = role_from_proto("role", request.role)?;
        if role.is_platform() {
            if !request.organization.is_empty() {
                return Err(InputError::new(
                    "organization",
                    &request.organization,
                    format!("must be empty for the {role} role: {role} tokens belong to the platform, not to an organization"),
                )
                .into());
            }
        } else {
            validate_slug("organization", &request.organization)?;
        }
        check_text(
            "description",
            &request.description,
            MAX_DESCRIPTION_CHARS,
            false,
        )?;
        let lifetime_ms = lifetime_ms("expires_in_seconds", request.expires_in_seconds)?;
        let organization = if role.is_platform() {
            None
        } else {
            Some(self.organization(&request.organization).await?)
        };
        let organization_id = organization
            .as_ref()
            .map(|organization| organization.id.as_str());
        let now = self.state.clock.now_ms();
        let expires_at = lifetime_ms.map(|lifetime_ms| now.saturating_add(lifetime_ms));
        let token = new_token(organization_id, role, &request.description, now, expires_at);
        let mut audit = AuditEntry::new(
            organization_id,
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
            organization_id = organization_id.unwrap_or_default(),
            token_id = %stored.id,
            %role,
            "api token created"
        );
        Ok(pb::ApiToken {
            id: stored.id,
            organization_id: organization_id.unwrap_or_default().to_owned(),
            role: role_to_proto(role).into(),
            token: token.bearer,
            created_at: seconds(stored.created_at),
            expires_at: optional_seconds(stored.expires_at),
        })
    }

    pub(super) async fn api_tokens(
        &self,
        request: pb::ListApiTokensRequest,
    ) -> Result<pb::ListApiTokensResponse, ApiError> {
        if request.organization.is_empty() {
            let tokens = self
                .state
                .store
                .list_api_tokens(TokenOwner::Platform {
                    role: Role::Agent.as_str(),
                })
                .await
                .map_err(|error| ApiError::store("list agent tokens", error))?;
            let tokens = tokens
                .into_iter()
                .map(|token| token_info(token, None))
                .collect();
            return Ok(pb::ListApiTokensResponse { tokens });
        }
        validate_slug("organization", &request.organization)?;
        let organization = self.organization(&request.organization).await?;
        let tokens = self
            .state
            .store
            .list_api_tokens(TokenOwner::Organization(&organization.id))
            .await
            .map_err(|error| ApiError::store("list api tokens", error))?;
        let tokens = tokens
            .into_iter()
            .map(|token| token_info(token, Some(&organization)))
            .collect();
        Ok(pb::ListApiTokensResponse { tokens })
    }

    pub(super) async fn revoke(
        &self,
        actor: &Admin,
        request: pb::RevokeApiTokenRequest,
    ) -> Result<pb::ApiTokenInfo, ApiError> {
        check_text("id", &request.id, MAX_NAME_CHARS, true)?;
        if request.organization.is_empty() {
            return self.revoke_agent_token(actor, &request.id).await;
        }
        validate_slug("organization", &request.organization)?;
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
            .revoke_api_token(
                TokenOwner::Organization(&organization.id),
                &request.id,
                now,
                audit,
            )
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
        Ok(token_info(revoked, Some(&organization)))
    }

    /// Revokes a platform agent token (a request naming no organization).
    async fn revoke_agent_token(
        &self,
        actor: &Admin,
        token_id: &str,
    ) -> Result<pb::ApiTokenInfo, ApiError> {
        let now = self.state.clock.now_ms();
        let audit = AuditEntry::new(
            None,
            &actor.token_id,
            "api_token.revoked",
            Some(token_id),
            now,
        )
        .from_remote(actor.remote_addr.as_deref());
        let revoked = self
            .state
            .store
            .revoke_api_token(TokenOwner::Platform { role: Role::Agent.as_str() }, token_id, now, audit)
            .await
            .map_err(|error| ApiError::store("revoke agent token", error))?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "platform agent token {token_id:?} not found; give the organization of an organization token"
                ))
            })?;
        tracing::info!(token_id = %revoked.id, "agent token revoked");
        Ok(token_info(revoked, None))
    }
}

/// A stored token as listed: everything but the secret hash. `organization`
/// is `None` for platform tokens.
fn token_info(token: ApiToken, organization: Option<&Organization>) -> pb::ApiTokenInfo {
    let role = match Role::parse("role", &token.role) {
        Ok(role) => role_to_proto(role),
        Err(_) => {
            tracing::error!(token_id = %token.id, role = %token.role, "api token has an unknown role");
            pb::Role::Unspecified
        }
    };
    pb::ApiTokenInfo {
        id: token.id,
        organization_id: organization
            .map(|organization| organization.id.clone())
            .unwrap_or_default(),
        organization: organization
            .map(|organization| organization.slug.clone())
            .unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::{MAX_EXPIRES_IN_SECONDS, lifetime_ms};

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
}
