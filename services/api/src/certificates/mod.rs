//! CertificateService: the certificates of the caller's organization. Every
//! store call is scoped by the caller's organization, so another organization's
//! certificate is answered exactly like a missing one. A platform agent token
//! reads in the organization its request names, and alone reports
//! installations and reads open HTTP-01 challenges.

mod agents;
mod read;
mod write;

use std::pin::Pin;

use certfleet_core::Role;
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::certificate_service_server::CertificateService;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Scope};
use crate::{ApiError, ApiState};

/// The gRPC implementation of `certfleet.v1.CertificateService`.
#[derive(Clone)]
pub struct CertificateApi {
    state: ApiState,
    auth: Authenticator,
    /// Flips to true when the server shuts down; ends open watch streams.
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for CertificateApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateApi").finish_non_exhaustive()
    }
}

impl CertificateApi {
    pub(crate) fn new(
        state: ApiState,
        auth: Authenticator,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        CertificateApi {
            state,
            auth,
            shutdown,
        }
    }

    /// The organization the call acts on and the caller's token id, when its
    /// token allows `needed`. `organization` is the request's field of that
    /// name: empty for organization tokens, the slug for agent tokens (calls
    /// without the field pass "").
    async fn caller<T>(
        &self,
        request: &Request<T>,
        needed: Role,
        organization: &str,
    ) -> Result<Caller, ApiError> {
        let principal = self.auth.authenticate(request.metadata()).await?;
        let organization_id = match principal.scope(needed, organization)? {
            Scope::Own(organization_id) => organization_id.to_owned(),
            Scope::Named(slug) => {
                self.state
                    .store
                    .find_organization_by_slug(slug)
                    .await
                    .map_err(|error| ApiError::store("find organization", error))?
                    .ok_or_else(|| ApiError::NotFound(format!("organization {slug:?} not found")))?
                    .id
            }
        };
        Ok(Caller {
            organization_id,
            token_id: principal.token_id,
            remote_addr: crate::convert::remote_ip(request),
        })
    }
}

/// An authorized organization caller.
#[derive(Debug, Clone)]
struct Caller {
    organization_id: String,
    token_id: String,
    /// Recorded in the audit entries the call writes.
    remote_addr: Option<String>,
}

fn not_found(certificate_id: &str) -> String {
    format!("certificate {certificate_id} not found")
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::CertificateEvent, Status>> + Send>>;

#[tonic::async_trait]
impl CertificateService for CertificateApi {
    async fn create_certificate(
        &self,
        request: Request<pb::CreateCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let caller = self.caller(&request, Role::Write, "").await?;
        let created = self.create(&caller, request.into_inner()).await?;
        Ok(Response::new(created))
    }

    async fn get_certificate(
        &self,
        request: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let caller = self
            .caller(&request, Role::Read, &request.get_ref().organization)
            .await?;
        let certificate = self.get(&caller, &request.get_ref().id).await?;
        Ok(Response::new(certificate))
    }

    async fn list_certificates(
        &self,
        request: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let caller = self
            .caller(&request, Role::Read, &request.get_ref().organization)
            .await?;
        let page = self.list(&caller, request.get_ref()).await?;
        Ok(Response::new(page))
    }

    async fn renew_certificate(
        &self,
        request: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let caller = self.caller(&request, Role::Write, "").await?;
        let certificate = self.renew(&caller, &request.get_ref().id).await?;
        Ok(Response::new(certificate))
    }

    async fn revoke_certificate(
        &self,
        request: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let caller = self.caller(&request, Role::Write, "").await?;
        let certificate = self.revoke(&caller, request.get_ref()).await?;
        Ok(Response::new(certificate))
    }

    async fn delete_certificate(
        &self,
        request: Request<pb::DeleteCertificateRequest>,
    ) -> Result<Response<pb::DeleteCertificateResponse>, Status> {
        let caller = self.caller(&request, Role::Write, "").await?;
        self.delete(&caller, &request.get_ref().id).await?;
        Ok(Response::new(pb::DeleteCertificateResponse {}))
    }

    async fn get_certificate_bundle(
        &self,
        request: Request<pb::GetCertificateBundleRequest>,
    ) -> Result<Response<pb::CertificateBundle>, Status> {
        let caller = self
            .caller(&request, Role::Bundle, &request.get_ref().organization)
            .await?;
        let bundle = self.bundle(&caller, &request.get_ref().id).await?;
        Ok(Response::new(bundle))
    }

    type WatchCertificatesStream = EventStream;

    async fn watch_certificates(
        &self,
        request: Request<pb::WatchCertificatesRequest>,
    ) -> Result<Response<Self::WatchCertificatesStream>, Status> {
        let caller = self
            .caller(&request, Role::Read, &request.get_ref().organization)
            .await?;
        Ok(Response::new(self.watch(caller)))
    }

    async fn report_installation(
        &self,
        request: Request<pb::ReportInstallationRequest>,
    ) -> Result<Response<pb::Installation>, Status> {
        let caller = self
            .caller(&request, Role::Agent, &request.get_ref().organization)
            .await?;
        let installation = self
            .report_installation(&caller, request.into_inner())
            .await?;
        Ok(Response::new(installation))
    }

    async fn list_http_challenges(
        &self,
        request: Request<pb::ListHttpChallengesRequest>,
    ) -> Result<Response<pb::ListHttpChallengesResponse>, Status> {
        let principal = self.auth.authenticate(request.metadata()).await?;
        if principal.organization_id.is_some() || principal.role != Role::Agent {
            return Err(ApiError::PermissionDenied(
                "this call needs a platform agent token".to_owned(),
            )
            .into());
        }
        Ok(Response::new(self.http_challenges().await?))
    }
}
