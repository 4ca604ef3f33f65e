//! Harness of the end-to-end tests: a real Pebble (from the test kit) and a
//! certfleet, either embedded in the test process with a movable clock or as
//! the `certfleet` binary, reached over gRPC only.

#![expect(
    clippy::unwrap_used,
    reason = "test harness: a failure here is a test failure"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use certfleet_cli::client::Bearer;
use certfleet_cli::embedded::{self, Embedded, EmbeddedConfig};
use certfleet_core::ManualClock;
use certfleet_proto::v1::certificate_service_client::CertificateServiceClient;
use certfleet_proto::v1::dns_provider_service_client::DnsProviderServiceClient;
use certfleet_proto::v1::notification_service_client::NotificationServiceClient;
use certfleet_proto::v1::organization_service_client::OrganizationServiceClient;
use certfleet_proto::v1::{
    self as pb, Certificate, CertificateBundle, CreateApiTokenRequest, CreateCertificateRequest,
    CreateOrganizationRequest, GetCertificateBundleRequest, GetCertificateRequest,
};
use certfleet_testkit::acme_front::AcmeFront;
use certfleet_testkit::{Pebble, PebbleOptions};
use futures_util::StreamExt as _;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use certfleet_testkit;
pub use roles::{
    LoggedChild, RoleProcess, RoleStack, all_logs, bind_events_queue, role_binary, terminate_all,
    wait_all_healthy,
};

mod roles;

pub type Certificates = CertificateServiceClient<InterceptedService<Channel, Bearer>>;
pub type Organizations = OrganizationServiceClient<InterceptedService<Channel, Bearer>>;
pub type DnsProviders = DnsProviderServiceClient<InterceptedService<Channel, Bearer>>;
pub type Notifications = NotificationServiceClient<InterceptedService<Channel, Bearer>>;

pub async fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn bearer(token: &str) -> Bearer {
    Bearer::new(token).unwrap()
}

pub async fn notifications(address: SocketAddr, token: &str) -> Notifications {
    NotificationServiceClient::with_interceptor(channel(address).await, bearer(token))
}

pub async fn certificates(address: SocketAddr, token: &str) -> Certificates {
    CertificateServiceClient::with_interceptor(channel(address).await, bearer(token))
}

pub async fn dns_providers(address: SocketAddr, token: &str) -> DnsProviders {
    DnsProviderServiceClient::with_interceptor(channel(address).await, bearer(token))
}

pub async fn organizations(address: SocketAddr, token: &str) -> Organizations {
    OrganizationServiceClient::with_interceptor(channel(address).await, bearer(token))
}

/// Creates an organization and returns (write token, bundle token).
pub async fn organization(address: SocketAddr, admin_token: &str, slug: &str) -> (String, String) {
    let mut admin = organizations(address, admin_token).await;
    admin
        .create_organization(CreateOrganizationRequest {
            slug: slug.to_owned(),
            name: format!("Organization {slug}"),
            contact_email: format!("ops@{slug}.example.com"),
        })
        .await
        .unwrap();
    let token = |role: pb::Role| {
        let mut admin = admin.clone();
        let slug = slug.to_owned();
        async move {
            admin
                .create_api_token(CreateApiTokenRequest {
                    organization: slug,
                    role: role as i32,
                    description: String::new(),
                    expires_in_seconds: 0,
                })
                .await
                .unwrap()
                .into_inner()
                .token
        }
    };
    (token(pb::Role::Write).await, token(pb::Role::Bundle).await)
}

/// Pebble plus an embedded certfleet with a clock the test can move.
pub struct TestEnv {
    pub pebble: Pebble,
    pub embedded: Option<Embedded>,
    pub clock: Arc<ManualClock>,
    pub data_dir: tempfile::TempDir,
    pub admin_token: String,
    pub grpc: SocketAddr,
    /// The ARI front certfleet talks to instead of Pebble, when started with
    /// [`start_fronted`](Self::start_fronted).
    pub front: Option<AcmeFront>,
}

impl TestEnv {
    pub async fn start(options: PebbleOptions) -> anyhow::Result<TestEnv> {
        TestEnv::start_with(options, |_| {}).await
    }

    /// Like [`start`](Self::start), with the embedded settings changed by
    /// `configure` first.
    pub async fn start_with(
        options: PebbleOptions,
        configure: impl FnOnce(&mut EmbeddedConfig),
    ) -> anyhow::Result<TestEnv> {
        TestEnv::start_inner(options, false, configure).await
    }

    /// Like [`start_with`](Self::start_with), with certfleet talking to Pebble
    /// through an [`AcmeFront`] (ARI, injected answers) in `front`.
    pub async fn start_fronted(
        options: PebbleOptions,
        configure: impl FnOnce(&mut EmbeddedConfig),
    ) -> anyhow::Result<TestEnv> {
        TestEnv::start_inner(options, true, configure).await
    }

    async fn start_inner(
        options: PebbleOptions,
        fronted: bool,
        configure: impl FnOnce(&mut EmbeddedConfig),
    ) -> anyhow::Result<TestEnv> {
        let pebble = Pebble::start(options).await?;
        let data_dir = tempfile::tempdir()?;
        let clock = ManualClock::new();
        let mut config = embedded_config(&pebble, data_dir.path());
        let front = if fronted {
            let front = AcmeFront::start(&pebble).await?;
            config.ca_directory = front.directory_url();
            config.ca_root = Some(front.ca_path());
            Some(front)
        } else {
            None
        };
        configure(&mut config);
        let embedded = embedded::start(config, clock.clone()).await?;
        let admin_token = std::fs::read_to_string(&embedded.admin_token_path)?;
        let grpc = embedded.grpc_addr;
        Ok(TestEnv {
            pebble,
            embedded: Some(embedded),
            clock,
            data_dir,
            admin_token,
            grpc,
            front,
        })
    }

    /// A second write token of an existing organization (for the CLI).
    pub async fn write_token(&self, slug: &str) -> String {
        organizations(self.grpc, &self.admin_token)
            .await
            .create_api_token(CreateApiTokenRequest {
                organization: slug.to_owned(),
                role: pb::Role::Write as i32,
                description: String::new(),
                expires_in_seconds: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    pub async fn organization(&self, slug: &str) -> (Certificates, Certificates) {
        let (write, bundle) = organization(self.grpc, &self.admin_token, slug).await;
        (
            certificates(self.grpc, &write).await,
            certificates(self.grpc, &bundle).await,
        )
    }

    pub async fn stop(mut self) {
        if let Some(embedded) = self.embedded.take() {
            embedded.shutdown().await;
        }
    }
}

/// Settings for a certfleet against this Pebble: the responder on the port
/// Pebble validates HTTP-01 on, the self-check pointed there too.
pub fn embedded_config(pebble: &Pebble, data_dir: &Path) -> EmbeddedConfig {
    let http01 = SocketAddr::from(([127, 0, 0, 1], pebble.http01_port()));
    EmbeddedConfig {
        dev: true,
        data_dir: data_dir.to_owned(),
        database_url: None,
        master_key_file: data_dir.join("master.key"),
        master_key: None,
        previous_master_key_files: Vec::new(),
        archive: Some(certfleet_archive::ArchiveConfig::Dir {
            path: data_dir.join("backups"),
        }),
        kms: None,
        grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        grpc_tls: None,
        grpc_tls_client_ca: None,
        http01_listen: http01,
        self_check_addr: Some(http01),
        self_check: true,
        self_check_timeout: Duration::from_secs(10),
        ca_directory: pebble.directory_url(),
        ca_root: Some(pebble.listener_ca_path()),
        fallback_cas: Vec::new(),
        fallback_ca_roots: Vec::new(),
        rate_limits: Vec::new(),
        scheduler_interval: Duration::from_millis(300),
        issuer_concurrency: 8,
        dns: certfleet_dns::DnsSettings::default(),
    }
}

/// DNS-01 lookups (CNAME, SOA, NS) through `resolver`, a test's BIND or
/// PowerDNS.
pub fn use_dns(config: &mut EmbeddedConfig, resolver: SocketAddr) {
    config.dns.lookup.resolver = resolver;
}

/// Every event a `WatchCertificates` stream delivers, collected in the
/// background until dropped.
pub struct EventLog {
    events: Arc<std::sync::Mutex<Vec<pb::CertificateEvent>>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl EventLog {
    /// Starts watching the caller's organization (before the work whose
    /// events the test wants, so none is missed).
    pub async fn watch(client: &mut Certificates) -> EventLog {
        let mut stream = client
            .watch_certificates(pb::WatchCertificatesRequest::default())
            .await
            .unwrap()
            .into_inner();
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = events.clone();
        let watcher = tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                recorded.lock().unwrap().push(event);
            }
        });
        EventLog { events, watcher }
    }

    /// The events so far, oldest first.
    pub fn events(&self) -> Vec<pb::CertificateEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Stops watching (also on drop).
    pub fn stop(&self) {
        self.watcher.abort();
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// A CreateCertificate request for HTTP-01 with the given key type.
pub fn request(names: &[&str], key_type: pb::KeyType) -> CreateCertificateRequest {
    CreateCertificateRequest {
        names: names.iter().map(|name| (*name).to_owned()).collect(),
        key_type: key_type as i32,
        challenge_type: pb::ChallengeType::Http01 as i32,
        auto_renew: Some(true),
        renew_before_expiry_seconds: 0,
        dns_provider: String::new(),
        profile: String::new(),
    }
}

/// Polls until `done` holds for the certificate, or fails with its last state.
pub async fn wait_for(
    client: &mut Certificates,
    id: &str,
    limit: Duration,
    done: impl Fn(&Certificate) -> bool,
) -> anyhow::Result<Certificate> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let certificate = client
            .get_certificate(GetCertificateRequest {
                id: id.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if done(&certificate) {
            return Ok(certificate);
        }
        if certificate.status == pb::CertificateStatus::Failed as i32 {
            bail!("certificate failed: {}", certificate.last_error);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("gave up waiting; last state: {certificate:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn is_valid(certificate: &Certificate) -> bool {
    certificate.status == pb::CertificateStatus::Valid as i32
}

pub async fn bundle(client: &mut Certificates, id: &str) -> anyhow::Result<CertificateBundle> {
    Ok(client
        .get_certificate_bundle(GetCertificateBundleRequest {
            id: id.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// Verifies `bundle`'s chain up to `root_pem` with openssl; returns its output on failure.
pub fn verify_chain(bundle: &CertificateBundle, root_pem: &str) -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    let write = |name: &str, contents: &str| -> anyhow::Result<PathBuf> {
        let path = directory.path().join(name);
        std::fs::write(&path, contents)?;
        Ok(path)
    };
    let root = write("root.pem", root_pem)?;
    let chain = write("chain.pem", &bundle.chain_pem)?;
    let leaf = write("cert.pem", &bundle.certificate_pem)?;
    let output = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&leaf)
        .output()
        .context("running openssl verify")?;
    if !output.status.success() {
        bail!(
            "chain does not verify: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// What the leaf of a bundle says about itself.
#[derive(Debug)]
pub struct LeafFacts {
    pub names: Vec<String>,
    pub public_key_der: Vec<u8>,
    pub key_algorithm: String,
    pub serial: String,
}

pub fn leaf_facts(certificate_pem: &str) -> LeafFacts {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes()).unwrap();
    let (_, leaf) = X509Certificate::from_der(&pem.contents).unwrap();
    let mut names = Vec::new();
    if let Ok(Some(extension)) = leaf.subject_alternative_name() {
        for name in &extension.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    names.sort();
    let spki = leaf.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|parameters| parameters.as_oid().ok())
        .map(|oid| oid.to_id_string())
        .unwrap_or_default();
    let key_algorithm = match (
        spki.algorithm.algorithm.to_id_string().as_str(),
        curve.as_str(),
    ) {
        ("1.2.840.10045.2.1", "1.2.840.10045.3.1.7") => "ecdsa-p256".to_owned(),
        ("1.2.840.10045.2.1", "1.3.132.0.34") => "ecdsa-p384".to_owned(),
        ("1.2.840.113549.1.1.1", _) => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => format!("rsa-{}", rsa.key_size()),
            _ => "rsa-?".to_owned(),
        },
        (other, _) => other.to_owned(),
    };
    LeafFacts {
        names,
        public_key_der: spki.raw.to_vec(),
        key_algorithm,
        serial: leaf
            .raw_serial()
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect(),
    }
}

/// The SubjectPublicKeyInfo of a PKCS#8 PEM private key.
pub fn public_key_of(private_key_pem: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::from_pem(private_key_pem).unwrap();
    rcgen::PublicKeyData::subject_public_key_info(&key)
}

/// The `certfleet` binary next to the test executable (built by the same
/// `cargo nextest run --workspace`), or `CERTFLEET_BIN`.
pub fn certfleet_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CERTFLEET_BIN") {
        return PathBuf::from(path);
    }
    roles::role_binary("certfleet")
}

impl TestEnv {
    /// The certfleet clock now, in Unix milliseconds.
    pub fn clock_now_ms(&self) -> i64 {
        certfleet_core::Clock::now_ms(self.clock.as_ref())
    }
}

/// `certfleet dev` as a separate process, logging to a file.
pub struct DevProcess {
    process: roles::LoggedChild,
    pub grpc: SocketAddr,
}

impl std::ops::Deref for DevProcess {
    type Target = roles::LoggedChild;
    fn deref(&self) -> &roles::LoggedChild {
        &self.process
    }
}

impl std::ops::DerefMut for DevProcess {
    fn deref_mut(&mut self) -> &mut roles::LoggedChild {
        &mut self.process
    }
}

impl DevProcess {
    /// Starts the binary against `pebble` with the self-check pointed at
    /// `self_check_addr`; returns once the gRPC port accepts connections.
    pub async fn spawn(
        pebble: &Pebble,
        data_dir: &Path,
        grpc: SocketAddr,
        self_check_addr: SocketAddr,
        log_name: &str,
    ) -> anyhow::Result<DevProcess> {
        DevProcess::spawn_with_env(pebble, data_dir, grpc, self_check_addr, log_name, &[]).await
    }

    /// Like [`spawn`](Self::spawn), with extra `CERTFLEET_*` settings in the
    /// environment.
    pub async fn spawn_with_env(
        pebble: &Pebble,
        data_dir: &Path,
        grpc: SocketAddr,
        self_check_addr: SocketAddr,
        log_name: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<DevProcess> {
        let mut command = std::process::Command::new(certfleet_binary());
        command.envs(env.iter().map(|(key, value)| (*key, value.as_str())));
        command
            .arg("dev")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--grpc-listen")
            .arg(grpc.to_string())
            .arg("--http01-listen")
            .arg(format!("127.0.0.1:{}", pebble.http01_port()))
            .arg("--http01-self-check-addr")
            .arg(self_check_addr.to_string())
            .arg("--http01-self-check-timeout")
            .arg("120")
            .arg("--ca-directory")
            .arg(pebble.directory_url())
            .arg("--ca-root")
            .arg(pebble.listener_ca_path())
            .arg("--scheduler-interval")
            .arg("1")
            .env("CERTFLEET_LOG", "debug")
            .env_remove("CERTFLEET_MASTER_KEY");
        let mut process = DevProcess {
            process: roles::LoggedChild::spawn(
                command,
                data_dir.with_file_name(log_name),
                "certfleet dev",
            )?,
            grpc,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(grpc).await.is_err() {
            if let Some(status) = process.exited()? {
                bail!("certfleet dev exited with {status}: {}", process.log());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("certfleet dev did not listen on {grpc}: {}", process.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(process)
    }

    /// Like [`DevProcess::spawn`] on a free loopback port for gRPC, picking
    /// another when the port was taken between the pick and the bind (tests
    /// run in parallel).
    pub async fn spawn_on_free_port(
        pebble: &Pebble,
        data_dir: &Path,
        self_check_addr: SocketAddr,
        log_name: &str,
    ) -> anyhow::Result<DevProcess> {
        let mut last_error = None;
        for _ in 0..5 {
            let grpc = SocketAddr::from(([127, 0, 0, 1], certfleet_testkit::free_port()));
            match DevProcess::spawn(pebble, data_dir, grpc, self_check_addr, log_name).await {
                Ok(process) => return Ok(process),
                Err(error) if format!("{error:#}").contains("binding the gRPC address") => {
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no free port")))
    }
}
