//! DnsProviderService: where an organization's DNS-01 records are written.
//! Secret settings are sealed under the master key and never leave the
//! process again; responses carry only the names of the secrets that are
//! set. Every store call is scoped by the caller's organization, so another
//! organization's provider is answered exactly like a missing one.

use std::collections::BTreeMap;

use certfleet_core::{DomainName, InputError, Role};
use certfleet_dns::{
    DnsError, DnsLookup, DnsSolver, ProbeReport, ProviderConfig, ProviderKind, SettingError,
};
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::dns_provider_service_server::DnsProviderService;
use certfleet_store::{AuditEntry, DnsProviderRow, Effects, new_id};
use certfleet_vault::EncryptionContext;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::auth::{Authenticator, OrgCaller as Caller};
use crate::convert::{check_name, seconds};
use crate::{ApiError, ApiState};

/// The gRPC implementation of `certfleet.v1.DnsProviderService`.
#[derive(Clone)]
pub struct DnsProviderApi {
    state: ApiState,
    auth: Authenticator,
}

impl std::fmt::Debug for DnsProviderApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsProviderApi").finish_non_exhaustive()
    }
}

fn not_found(id_or_name: &str) -> ApiError {
    ApiError::NotFound(format!("DNS provider {id_or_name:?} not found"))
}

impl DnsProviderApi {
    pub(crate) fn new(state: ApiState, auth: Authenticator) -> Self {
        DnsProviderApi { state, auth }
    }

    async fn caller<T>(&self, request: &Request<T>, needed: Role) -> Result<Caller, ApiError> {
        self.auth
            .organization_caller(request, needed, "DNS provider calls")
            .await
    }

    async fn create(
        &self,
        caller: &Caller,
        request: pb::CreateDnsProviderRequest,
    ) -> Result<pb::DnsProvider, ApiError> {
        check_name(&request.name)?;
        let kind = ProviderKind::parse("kind", &request.kind)?;
        let values: BTreeMap<String, String> = request.settings.into_iter().collect();
        let config = ProviderConfig::parse(kind, values, &self.state.dns.policy)?;
        self.check_zone(&config).await?;
        let (plain, secret) = config.split();
        drop(config);

        let organization_id = caller.organization_id.as_str();
        let id = new_id();
        let settings = serde_json::to_string(&plain)
            .map_err(|error| ApiError::Internal(format!("dns provider settings: {error}")))?;
        let secret_names: Vec<String> = secret.keys().cloned().collect();
        let secrets_sealed = if secret.is_empty() {
            None
        } else {
            let plaintext = Zeroizing::new(serde_json::to_vec(&secret).map_err(|error| {
                ApiError::Internal(format!("dns provider secret settings: {error}"))
            })?);
            drop(secret);
            let context = EncryptionContext::dns_provider(organization_id, &id);
            let sealed = self
                .state
                .vault
                .seal(&context, &plaintext)
                .await
                .map_err(|error| ApiError::vault("seal dns provider secrets", error))?;
            Some(sealed)
        };
        let now = self.state.clock.now_ms();
        let row = DnsProviderRow {
            id: id.clone(),
            organization_id: organization_id.to_owned(),
            name: request.name,
            kind: kind.as_str().to_owned(),
            settings,
            secret_names: secret_names.join(","),
            secrets_sealed,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let mut audit = AuditEntry::new(
            Some(organization_id),
            &caller.token_id,
            "dns_provider.created",
            Some(&id),
            now,
        )
        .from_remote(caller.remote_addr.as_deref());
        // Names only: a secret value must never reach the audit log.
        audit.details = format!("name {} kind {kind}", row.name);
        let effects = Effects {
            outbox: Vec::new(),
            audit: vec![audit],
        };
        let created = self
            .state
            .store
            .create_dns_provider(row, effects)
            .await
            .map_err(|error| ApiError::store("create dns provider", error))?;
        tracing::info!(
            organization_id,
            dns_provider_id = %created.id,
            name = %created.name,
            kind = %created.kind,
            "dns provider created"
        );
        provider_to_proto(&created, secret_names)
    }

    /// A `zone` setting must name a zone: the resolver must find its SOA
    /// record at exactly that name. Skipped when the propagation check is off
    /// (the zone may not be visible from here), and when the resolver cannot
    /// be asked (logged; the provider test and the first issuance will tell).
    async fn check_zone(&self, config: &ProviderConfig) -> Result<(), ApiError> {
        let Some(zone) = &config.zone else {
            return Ok(());
        };
        if !config.propagation_check {
            return Ok(());
        }
        let lookup = DnsLookup::new(self.state.dns.lookup.clone());
        let problem = match lookup.find_zone(zone).await {
            Ok(Some(found)) if found == *zone => return Ok(()),
            Ok(Some(found)) => format!("is not a DNS zone (the zone holding it is {found})"),
            Ok(None) => "is not a DNS zone the resolver knows (no SOA record)".to_owned(),
            Err(error) => {
                tracing::warn!(%zone, %error, "cannot check the zone setting of a new dns provider");
                return Ok(());
            }
        };
        Err(ApiError::InvalidSetting(SettingError::new(
            "settings.zone",
            zone,
            problem,
        )))
    }

    /// The provider `id_or_name` of the caller's organization.
    async fn find(&self, caller: &Caller, id_or_name: &str) -> Result<DnsProviderRow, ApiError> {
        self.state
            .store
            .find_dns_provider(&caller.organization_id, id_or_name)
            .await
            .map_err(|error| ApiError::store("find dns provider", error))?
            .ok_or_else(|| not_found(id_or_name))
    }

    /// The opened secret settings of `row` (a JSON object), if it has any.
    async fn open_secrets(
        &self,
        row: &DnsProviderRow,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ApiError> {
        let Some(sealed) = &row.secrets_sealed else {
            return Ok(None);
        };
        let context = EncryptionContext::dns_provider(&row.organization_id, &row.id);
        self.state
            .vault
            .open(&context, sealed)
            .await
            .map(Some)
            .map_err(|error| ApiError::vault("open dns provider secrets", error))
    }

    /// `row` as the API shows it: plain settings and the names of its secrets
    /// (stored in the clear: showing a provider opens nothing).
    fn shown(&self, row: &DnsProviderRow) -> Result<pb::DnsProvider, ApiError> {
        let names = row
            .secret_names
            .split(',')
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        provider_to_proto(row, names)
    }

    async fn list(&self, caller: &Caller) -> Result<pb::ListDnsProvidersResponse, ApiError> {
        let rows = self
            .state
            .store
            .list_dns_providers(&caller.organization_id)
            .await
            .map_err(|error| ApiError::store("list dns providers", error))?;
        let mut providers = Vec::with_capacity(rows.len());
        for row in &rows {
            providers.push(self.shown(row)?);
        }
        Ok(pb::ListDnsProvidersResponse { providers })
    }

    async fn delete(&self, caller: &Caller, id_or_name: &str) -> Result<(), ApiError> {
        let row = self.find(caller, id_or_name).await?;
        let organization_id = caller.organization_id.as_str();
        let now = self.state.clock.now_ms();
        let mut audit = AuditEntry::new(
            Some(organization_id),
            &caller.token_id,
            "dns_provider.deleted",
            Some(&row.id),
            now,
        )
        .from_remote(caller.remote_addr.as_deref());
        audit.details = format!("name {}", row.name);
        let effects = Effects {
            outbox: Vec::new(),
            audit: vec![audit],
        };
        let missing = format!("DNS provider {id_or_name:?} not found");
        self.state
            .store
            .delete_dns_provider(organization_id, &row.id, now, effects)
            .await
            .map_err(|error| ApiError::from_store("delete dns provider", &missing, error))?;
        tracing::info!(organization_id, dns_provider_id = %row.id, name = %row.name, "dns provider deleted");
        Ok(())
    }

    /// Writes a probe record for the domain, waits until every authoritative
    /// server answers it and removes it: the same path an issuance takes.
    async fn test(
        &self,
        caller: &Caller,
        request: &pb::TestDnsProviderRequest,
    ) -> Result<pb::TestDnsProviderResponse, ApiError> {
        let domain = DomainName::parse(&request.domain)
            .map_err(|error| InputError::new("domain", &request.domain, error.to_string()))?;
        let row = self.find(caller, &request.id).await?;
        let secrets = self.open_secrets(&row).await?;
        let policy = &self.state.dns.policy;
        let unusable = |error: SettingError| {
            ApiError::FailedPrecondition(format!(
                "the DNS provider {:?} cannot be used: {error}",
                row.name
            ))
        };
        let config = ProviderConfig::from_stored(
            &row.kind,
            &row.settings,
            secrets.as_deref().map(Vec::as_slice),
            policy,
        )
        .map_err(unusable)?;
        drop(secrets);
        let lookup = DnsLookup::new(self.state.dns.lookup.clone());
        let solver = DnsSolver::new(config, policy, lookup).map_err(unusable)?;
        let report = match solver.probe(domain.as_str()).await {
            Ok(report) => report,
            Err(error) => {
                tracing::info!(
                    organization_id = %caller.organization_id,
                    dns_provider_id = %row.id,
                    domain = %domain.as_str(),
                    %error,
                    "dns provider test failed"
                );
                return Err(dns_error(&row.name, error));
            }
        };
        tracing::info!(
            organization_id = %caller.organization_id,
            dns_provider_id = %row.id,
            domain = %domain.as_str(),
            record = %report.record.fqdn,
            propagation_ms = report.propagation_ms,
            "dns provider test passed"
        );
        Ok(report_to_proto(report))
    }
}

fn provider_to_proto(
    row: &DnsProviderRow,
    secret_settings: Vec<String>,
) -> Result<pb::DnsProvider, ApiError> {
    let settings: BTreeMap<String, String> =
        serde_json::from_str(&row.settings).map_err(|error| {
            ApiError::Internal(format!(
                "stored settings of dns provider {} are unreadable: {error}",
                row.id
            ))
        })?;
    Ok(pb::DnsProvider {
        id: row.id.clone(),
        organization_id: row.organization_id.clone(),
        name: row.name.clone(),
        kind: row.kind.clone(),
        settings: settings.into_iter().collect(),
        secret_settings,
        created_at: seconds(row.created_at),
    })
}

fn report_to_proto(report: ProbeReport) -> pb::TestDnsProviderResponse {
    pb::TestDnsProviderResponse {
        record_name: report.record.fqdn,
        zone: report.record.zone.unwrap_or_default(),
        nameservers: report.nameservers.iter().map(ToString::to_string).collect(),
        present_ms: report.present_ms,
        propagation_ms: report.propagation_ms,
        cleanup_ms: report.cleanup_ms,
    }
}

/// A failed probe: what retrying cannot fix is FAILED_PRECONDITION, what may
/// pass on a second try UNAVAILABLE; both in the provider's plain words.
fn dns_error(name: &str, error: DnsError) -> ApiError {
    let message = format!("testing the DNS provider {name:?}: {error}");
    match error {
        DnsError::Refused { .. } | DnsError::NoZone { .. } | DnsError::Config(_) => {
            ApiError::FailedPrecondition(message)
        }
        DnsError::Unavailable { .. } | DnsError::NotPropagated { .. } | DnsError::Lookup { .. } => {
            ApiError::DnsUnavailable(message)
        }
    }
}

#[tonic::async_trait]
impl DnsProviderService for DnsProviderApi {
    async fn create_dns_provider(
        &self,
        request: Request<pb::CreateDnsProviderRequest>,
    ) -> Result<Response<pb::DnsProvider>, Status> {
        let caller = self.caller(&request, Role::Write).await?;
        let created = self.create(&caller, request.into_inner()).await?;
        Ok(Response::new(created))
    }

    async fn list_dns_providers(
        &self,
        request: Request<pb::ListDnsProvidersRequest>,
    ) -> Result<Response<pb::ListDnsProvidersResponse>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        Ok(Response::new(self.list(&caller).await?))
    }

    async fn get_dns_provider(
        &self,
        request: Request<pb::GetDnsProviderRequest>,
    ) -> Result<Response<pb::DnsProvider>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        let row = self.find(&caller, &request.get_ref().id).await?;
        Ok(Response::new(self.shown(&row)?))
    }

    async fn delete_dns_provider(
        &self,
        request: Request<pb::DeleteDnsProviderRequest>,
    ) -> Result<Response<pb::DeleteDnsProviderResponse>, Status> {
        let caller = self.caller(&request, Role::Write).await?;
        self.delete(&caller, &request.get_ref().id).await?;
        Ok(Response::new(pb::DeleteDnsProviderResponse {}))
    }

    async fn test_dns_provider(
        &self,
        request: Request<pb::TestDnsProviderRequest>,
    ) -> Result<Response<pb::TestDnsProviderResponse>, Status> {
        let caller = self.caller(&request, Role::Write).await?;
        let report = self.test(&caller, request.get_ref()).await?;
        Ok(Response::new(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_slug_rules_and_are_not_ids() {
        assert!(check_name("bind-primary").is_ok());
        assert!(check_name("r53").is_ok());
        for bad in ["", "Bind", "with space", "-lead", "a_b"] {
            let error = check_name(bad).err();
            assert_eq!(
                error.map(|error| error.field),
                Some("name".to_owned()),
                "{bad}"
            );
        }
        let id = "01a2261e-cf25-779e-8920-b4d993e99fe7";
        assert!(check_name(id).is_err());
        assert!(check_name(&id.replace('-', "x")).is_ok());
    }

    #[test]
    fn dns_errors_map_by_whether_retrying_helps() {
        let refused = DnsError::Refused {
            provider: "webhook",
            detail: "HTTP 403".to_owned(),
        };
        let status = Status::from(dns_error("hook", refused));
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status.message().contains("HTTP 403"),
            "{}",
            status.message()
        );
        let lookup = DnsError::Lookup {
            name: "_acme-challenge.example.com".to_owned(),
            record_type: "CNAME",
            detail: "no answer".to_owned(),
        };
        let status = Status::from(dns_error("hook", lookup));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("no answer"),
            "{}",
            status.message()
        );
    }
}
