//! `TestApp`: the API served on a loopback port over a fresh SQLite store, a
//! local-key vault, the in-process bus and a running outbox relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use certfleet_api::{ApiState, create_admin_token};
use certfleet_bus::{InProcessBus, Job, OutboxRelay};
use certfleet_core::{Clock, ManualClock, SystemClock};
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::certificate_service_client::CertificateServiceClient;
use certfleet_proto::v1::dns_provider_service_client::DnsProviderServiceClient;
use certfleet_proto::v1::organization_service_client::OrganizationServiceClient;
use certfleet_store::{AuditEntry, Effects, NewCertificateVersion, Store, new_id};
use certfleet_vault::{EncryptionContext, LocalMasterKey, Vault};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub const LEAF_PEM: &str = "-----BEGIN CERTIFICATE-----\nbGVhZg==\n-----END CERTIFICATE-----\n";
pub const CHAIN_PEM: &str = "-----BEGIN CERTIFICATE-----\nY2hhaW4=\n-----END CERTIFICATE-----\n";
pub const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\na2V5\n-----END PRIVATE KEY-----\n";

/// The tokens of one organization, one per role.
#[derive(Debug, Clone)]
pub struct OrgTokens {
    pub id: String,
    pub read: String,
    pub write: String,
    pub bundle: String,
}

pub struct TestApp {
    pub address: SocketAddr,
    pub store: Store,
    pub vault: Vault,
    pub admin_token: String,
    /// The API's clock: the wall clock until a test moves it.
    pub clock: Arc<ManualClock>,
    jobs: Mutex<mpsc::UnboundedReceiver<Job>>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    relay: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.abort();
        self.relay.abort();
    }
}

/// Wraps a message with `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The error of a call that must fail.
pub fn failure<T: std::fmt::Debug>(result: Result<Response<T>, Status>) -> anyhow::Result<Status> {
    match result {
        Ok(response) => bail!("expected an error, got {:?}", response.get_ref()),
        Err(status) => Ok(status),
    }
}

impl TestApp {
    pub async fn spawn() -> anyhow::Result<TestApp> {
        TestApp::spawn_with_dns(certfleet_dns::DnsSettings::default()).await
    }

    /// Like [`TestApp::spawn`], with these DNS-01 settings (exec programs,
    /// resolver) for the DNS provider calls.
    pub async fn spawn_with_dns(dns: certfleet_dns::DnsSettings) -> anyhow::Result<TestApp> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("certfleet.db");
        let store = Store::connect(path.to_str().context("utf-8 temp path")?).await?;
        store.migrate().await?;
        let vault = Vault::new(Arc::new(LocalMasterKey::generate()?));
        let (bus, jobs) = InProcessBus::new();
        let relay = OutboxRelay::new(
            store.clone(),
            Arc::new(bus.clone()),
            Duration::from_millis(50),
        );
        let manual_clock = ManualClock::new();
        let clock: Arc<dyn Clock> = manual_clock.clone();
        let admin_token = create_admin_token(&store, clock.as_ref(), "tests").await?;
        let state = ApiState {
            store: store.clone(),
            vault: vault.clone(),
            relay: relay.clone(),
            events: Arc::new(bus),
            clock,
            directory_url: "https://ca.test/dir".to_owned(),
            dns,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) = certfleet_api::serve(state, listener, shutdown).await {
                eprintln!("api server failed: {error}");
            }
        });
        let relay = tokio::spawn(relay.run());
        Ok(TestApp {
            address,
            store,
            vault,
            admin_token,
            clock: manual_clock,
            jobs: Mutex::new(jobs),
            stop: Some(stop),
            server,
            relay,
            _dir: dir,
        })
    }

    /// Shuts the server down gracefully; fails when it does not stop within 5 s.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .context("server did not stop within 5 s")??;
        Ok(())
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.address))?
            .connect()
            .await?)
    }

    pub async fn certificates(&self) -> anyhow::Result<CertificateServiceClient<Channel>> {
        Ok(CertificateServiceClient::new(self.channel().await?))
    }

    pub async fn dns_providers(&self) -> anyhow::Result<DnsProviderServiceClient<Channel>> {
        Ok(DnsProviderServiceClient::new(self.channel().await?))
    }

    pub async fn organizations(&self) -> anyhow::Result<OrganizationServiceClient<Channel>> {
        Ok(OrganizationServiceClient::new(self.channel().await?))
    }

    /// Creates an organization with a read, a write and a bundle token.
    pub async fn organization(&self, slug: &str) -> anyhow::Result<OrgTokens> {
        let mut client = self.organizations().await?;
        let organization = client
            .create_organization(authed(
                pb::CreateOrganizationRequest {
                    slug: slug.to_owned(),
                    name: format!("{slug} inc"),
                    contact_email: format!("ops@{slug}.example.com"),
                },
                &self.admin_token,
            ))
            .await?
            .into_inner();
        let mut token = async |role: pb::Role| -> anyhow::Result<String> {
            Ok(client
                .create_api_token(authed(
                    pb::CreateApiTokenRequest {
                        organization: slug.to_owned(),
                        role: role.into(),
                        description: format!("{slug} {}", role.as_str_name()),
                        expires_in_seconds: 0,
                    },
                    &self.admin_token,
                ))
                .await?
                .into_inner()
                .token)
        };
        let read = token(pb::Role::Read).await?;
        let write = token(pb::Role::Write).await?;
        let bundle = token(pb::Role::Bundle).await?;
        Ok(OrgTokens {
            id: organization.id,
            read,
            write,
            bundle,
        })
    }

    pub async fn create_certificate(
        &self,
        token: &str,
        names: &[&str],
    ) -> Result<pb::Certificate, Status> {
        let mut client = self
            .certificates()
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        let request = pb::CreateCertificateRequest {
            names: names.iter().map(|name| (*name).to_owned()).collect(),
            ..Default::default()
        };
        Ok(client
            .create_certificate(authed(request, token))
            .await?
            .into_inner())
    }

    /// Stores an issued version as an issuer would, with a sealed private key.
    pub async fn issue_fake_version(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> anyhow::Result<()> {
        let now = SystemClock.now_ms();
        let owner = "test-issuer";
        self.store
            .acquire_certificate_lease(organization_id, certificate_id, owner, now, now + 60_000)
            .await?
            .context("lease the certificate")?;
        let number = self
            .store
            .latest_version_number(organization_id, certificate_id)
            .await?
            + 1;
        let context =
            EncryptionContext::private_key_version(organization_id, certificate_id, number);
        let key_sealed = self.vault.seal(&context, KEY_PEM.as_bytes()).await?;
        let version = NewCertificateVersion {
            id: new_id(),
            version: Some(number),
            serial: "0A1B".to_owned(),
            fingerprint_sha256: "00".repeat(32),
            not_before: now,
            not_after: now + 90 * 86_400_000,
            leaf_pem: LEAF_PEM.to_owned(),
            chain_pem: CHAIN_PEM.to_owned(),
            key_sealed,
            key_type: "ecdsa-p256".to_owned(),
            order_url: "https://ca.test/order/1".to_owned(),
            issuer: None,
        };
        let effects = Effects {
            outbox: Vec::new(),
            audit: vec![AuditEntry::new(
                Some(organization_id),
                "system",
                "certificate.issued",
                Some(certificate_id),
                now,
            )],
        };
        self.store
            .record_issued(
                organization_id,
                certificate_id,
                owner,
                version,
                certfleet_store::RenewalPlan::at(now + 60 * 86_400_000, "lifetime rule"),
                now,
                effects,
            )
            .await?;
        Ok(())
    }

    /// Waits for the job published for `certificate_id`, skipping others.
    pub async fn next_job_for(&self, certificate_id: &str) -> anyhow::Result<Job> {
        let mut jobs = self.jobs.lock().await;
        let wait = async {
            while let Some(job) = jobs.recv().await {
                if job.certificate_id == certificate_id {
                    return Some(job);
                }
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .context("no job within 10 s")?
            .context("job queue closed")
    }
}
