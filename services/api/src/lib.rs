//! certfleet-api: the gRPC front door. CertificateService and
//! DnsProviderService and NotificationService for organization tokens, OrganizationService for
//! platform admin tokens, gRPC health and server reflection (v1 and v1alpha).

pub mod auth;
mod certificates;
mod convert;
mod dns_providers;
mod error;
mod notifications;
mod organizations;

use std::future::Future;
use std::sync::Arc;

use certfleet_bus::{EventSource, OutboxRelay};
use certfleet_core::Clock;
use certfleet_proto::v1::FILE_DESCRIPTOR_SET;
use certfleet_proto::v1::certificate_service_server::CertificateServiceServer;
use certfleet_proto::v1::dns_provider_service_server::DnsProviderServiceServer;
use certfleet_proto::v1::notification_service_server::NotificationServiceServer;
use certfleet_proto::v1::organization_service_server::OrganizationServiceServer;
use certfleet_store::Store;
use certfleet_vault::Vault;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::ServerTlsConfig;
use tonic::transport::server::TcpIncoming;

pub use auth::{Principal, create_admin_token, hash_secret, new_token};
pub use certificates::CertificateApi;
pub use dns_providers::DnsProviderApi;
pub use error::{ApiError, EXISTING_ID_METADATA, UNAUTHENTICATED_MESSAGE};
pub use notifications::NotificationApi;
pub use organizations::OrganizationApi;

/// Everything the services need; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub vault: Vault,
    pub relay: OutboxRelay,
    pub events: Arc<dyn EventSource>,
    pub clock: Arc<dyn Clock>,
    /// The ACME directory new certificates are issued from.
    pub directory_url: String,
    /// DNS-01: which exec programs providers may name, and the resolver and
    /// propagation limits `TestDnsProvider` uses.
    pub dns: certfleet_dns::DnsSettings,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("store", &self.store)
            .field("directory_url", &self.directory_url)
            .field("dns", &self.dns)
            .finish_non_exhaustive()
    }
}

/// All gRPC services, ready for `Server::builder().add_routes(…)`. Open
/// WatchCertificates streams end only when their client leaves; use
/// [`grpc_routes_with_shutdown`] (or [`serve`]) to end them on shutdown.
pub async fn grpc_routes(state: ApiState) -> Result<Routes, ApiError> {
    let (_never, stopping) = watch::channel(false);
    grpc_routes_with_shutdown(state, stopping).await
}

/// Like [`grpc_routes`]; open watch streams end when `stopping` becomes true,
/// so a graceful shutdown does not wait for watchers.
pub async fn grpc_routes_with_shutdown(
    state: ApiState,
    stopping: watch::Receiver<bool>,
) -> Result<Routes, ApiError> {
    let authenticator = auth::Authenticator::new(state.store.clone(), state.clock.clone());
    let certificates = CertificateServiceServer::new(CertificateApi::new(
        state.clone(),
        authenticator.clone(),
        stopping,
    ));
    let dns_providers =
        DnsProviderServiceServer::new(DnsProviderApi::new(state.clone(), authenticator.clone()));
    let notifications =
        NotificationServiceServer::new(NotificationApi::new(state.clone(), authenticator.clone()));
    let organizations = OrganizationServiceServer::new(OrganizationApi::new(state, authenticator));

    let (health_reporter, health) = tonic_health::server::health_reporter();
    // The overall service "" starts SERVING.
    health_reporter
        .set_serving::<CertificateServiceServer<CertificateApi>>()
        .await;
    health_reporter
        .set_serving::<OrganizationServiceServer<OrganizationApi>>()
        .await;
    health_reporter
        .set_serving::<DnsProviderServiceServer<DnsProviderApi>>()
        .await;
    health_reporter
        .set_serving::<NotificationServiceServer<NotificationApi>>()
        .await;

    let reflection_v1 = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;

    let mut routes = Routes::builder();
    routes
        .add_service(certificates)
        .add_service(organizations)
        .add_service(dns_providers)
        .add_service(notifications)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let router = routes
        .routes()
        .into_axum_router()
        .layer(axum::middleware::from_fn(trace_context));
    Ok(Routes::from(router))
}

/// Runs each call in the trace of its `traceparent` header (a fresh trace
/// without a valid one), so the jobs and events it writes carry it on.
async fn trace_context(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let parent = request
        .headers()
        .get(certfleet_bus::rabbitmq::TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    certfleet_bus::in_trace(parent, next.run(request)).await
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Serves plaintext gRPC on `listener` until `shutdown` completes, then stops
/// accepting calls, ends watch streams and waits for calls in flight.
pub async fn serve(
    state: ApiState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ApiError> {
    serve_with_tls(state, listener, None, shutdown).await
}

/// Like [`serve`], over TLS when `tls` is given.
pub async fn serve_with_tls(
    state: ApiState,
    listener: tokio::net::TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ApiError> {
    let (stop, stopping) = watch::channel(false);
    let routes = grpc_routes_with_shutdown(state, stopping).await?;
    let mut server = tonic::transport::Server::builder().tcp_nodelay(true);
    let scheme = if let Some(tls) = tls {
        server = server.tls_config(tls)?;
        "https"
    } else {
        "http"
    };
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, scheme, "grpc api listening");
    }
    server
        .add_routes(routes)
        // TCP_NODELAY on every accepted connection (the builder's own setting only
        // applies to listeners it binds): without it small responses wait for a
        // delayed ACK, 40 ms a call.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                shutdown.await;
                // No receiver left is fine: then no stream is open.
                let _ = stop.send(true);
            },
        )
        .await?;
    Ok(())
}
