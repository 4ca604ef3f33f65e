//! What the agent does: makes the proxy hold exactly the current version of
//! every certificate it should serve, checks the proxy serves it, and tells
//! the API. Driven by events (a new version, a revocation, a deletion), by a
//! periodic reconcile that catches what events missed, and by retries of
//! what failed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certfleet_proto::v1 as pb;
use certfleet_proto::v1::{CertificateStatus, EventType};
use certfleet_proxy::{Bundle, ProxyError, Target, Webroot, verify_served};
use tonic::Code;
use zeroize::Zeroizing;

use crate::client::{Certificates, Organizations};

/// How long the check waits for the proxy to serve a new version (a reload
/// replaces workers gracefully, not at once).
const VERIFY_PATIENCE: Duration = Duration::from_secs(15);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry pauses after a failed install, check or removal; the last repeats.
const RETRY_PAUSES: [Duration; 5] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
];

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Unique among the platform's agents, e.g. `web-1/nginx`.
    pub name: String,
    pub host: String,
    /// Where the proxy serves HTTPS, for the check; none skips it.
    pub verify_address: Option<SocketAddr>,
    /// Only these organizations (slugs); empty: every organization.
    pub organizations: Vec<String>,
}

/// A certificate to bring up to date: its organization's slug and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Work {
    slug: String,
    certificate_id: String,
}

#[derive(Debug)]
struct Retry {
    failures: usize,
    due: Instant,
}

pub struct Agent {
    config: AgentConfig,
    target: Arc<dyn Target>,
    certificates: Certificates,
    organizations: Organizations,
    /// Organization id → slug.
    slugs: BTreeMap<String, String>,
    retries: HashMap<Work, Retry>,
    /// Installed, but the proxy was not seen serving them yet.
    unverified: HashSet<String>,
}

impl Agent {
    pub fn new(
        config: AgentConfig,
        target: Arc<dyn Target>,
        certificates: Certificates,
        organizations: Organizations,
    ) -> Agent {
        Agent {
            config,
            target,
            certificates,
            organizations,
            slugs: BTreeMap::new(),
            retries: HashMap::new(),
            unverified: HashSet::new(),
        }
    }

    fn wanted(&self, slug: &str) -> bool {
        self.config.organizations.is_empty() || self.config.organizations.iter().any(|s| s == slug)
    }

    async fn refresh_slugs(&mut self) -> Result<(), tonic::Status> {
        let listed = self
            .organizations
            .list_organizations(pb::ListOrganizationsRequest {})
            .await?
            .into_inner();
        self.slugs = listed
            .organizations
            .into_iter()
            .map(|organization| (organization.id, organization.slug))
            .collect();
        Ok(())
    }

    async fn slug_of(&mut self, organization_id: &str) -> Result<Option<String>, tonic::Status> {
        if !self.slugs.contains_key(organization_id) {
            self.refresh_slugs().await?;
        }
        Ok(self.slugs.get(organization_id).cloned())
    }

    /// One lifecycle event from the queue. Err only when the API could not
    /// be asked which organization it is (the event comes back).
    pub async fn handle_event(&mut self, event: pb::CertificateEvent) -> Result<(), String> {
        let kind = EventType::try_from(event.r#type).unwrap_or(EventType::Unspecified);
        if !matches!(
            kind,
            EventType::Issued | EventType::Renewed | EventType::Revoked | EventType::Deleted
        ) {
            return Ok(());
        }
        let slug = match self.slug_of(&event.organization_id).await {
            Ok(Some(slug)) => slug,
            Ok(None) => {
                tracing::debug!(organization_id = %event.organization_id, "event of an unknown organization skipped");
                return Ok(());
            }
            Err(status) => return Err(format!("cannot list organizations: {}", status.message())),
        };
        if !self.wanted(&slug) {
            return Ok(());
        }
        tracing::info!(certificate_id = %event.certificate_id, event = kind.as_str_name(), "event");
        let work = Work {
            slug,
            certificate_id: event.certificate_id,
        };
        self.sync(&work).await;
        Ok(())
    }

    /// Brings one certificate up to date; a failure is retried later.
    async fn sync(&mut self, work: &Work) {
        let result = self.sync_once(work).await;
        self.record(work, result);
    }

    /// Forgets a certificate's retry after a success; schedules the next
    /// one (5 s, 30 s, … 30 min) after a failure.
    fn record(&mut self, work: &Work, result: Result<(), String>) {
        let Err(error) = result else {
            self.retries.remove(work);
            return;
        };
        let failures = self.retries.get(work).map_or(0, |retry| retry.failures) + 1;
        let pause = RETRY_PAUSES[(failures - 1).min(RETRY_PAUSES.len() - 1)];
        tracing::warn!(
            certificate_id = %work.certificate_id,
            organization = %work.slug,
            %error,
            retry_in_seconds = pause.as_secs(),
            "certificate not brought up to date"
        );
        self.retries.insert(
            work.clone(),
            Retry {
                failures,
                due: Instant::now() + pause,
            },
        );
    }

    /// Retries whose time has come.
    pub async fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Work> = self
            .retries
            .iter()
            .filter(|(_, retry)| retry.due <= now)
            .map(|(work, _)| work.clone())
            .collect();
        for work in due {
            self.sync(&work).await;
        }
    }

    async fn sync_once(&mut self, work: &Work) -> Result<(), String> {
        let found = self
            .certificates
            .get_certificate(pb::GetCertificateRequest {
                id: work.certificate_id.clone(),
                organization: work.slug.clone(),
            })
            .await;
        let certificate = match found {
            Ok(response) => Some(response.into_inner()),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => {
                return Err(format!("cannot read the certificate: {}", status.message()));
            }
        };
        let current = certificate.as_ref().and_then(serving_version);
        let Some((certificate, version)) = certificate.zip(current) else {
            return self.remove(&work.certificate_id).await;
        };
        // A proxy that cannot say what it holds (Caddy's admin API down) gets
        // the install anyway: it fails there, and the failure is reported.
        let installed = match self.target.installed().await {
            Ok(held) => held
                .into_iter()
                .find(|installed| installed.certificate_id == certificate.id)
                .map(|installed| installed.version),
            Err(error) => {
                tracing::warn!(certificate_id = %certificate.id, %error, "cannot read what the proxy holds");
                None
            }
        };
        if installed == Some(version) && !self.unverified.contains(&certificate.id) {
            return Ok(());
        }
        self.install(work, &certificate, version).await
    }

    async fn remove(&self, certificate_id: &str) -> Result<(), String> {
        let present = self
            .target
            .installed()
            .await
            .map_err(|error| error.to_string())?
            .iter()
            .any(|installed| installed.certificate_id == certificate_id);
        if !present {
            return Ok(());
        }
        self.target
            .remove(certificate_id)
            .await
            .map_err(|error| format!("cannot remove it from {}: {error}", self.target.kind()))?;
        tracing::info!(
            certificate_id,
            target = self.target.kind(),
            "certificate removed"
        );
        Ok(())
    }

    /// Fetches the bundle, installs it, checks the proxy serves it, and
    /// reports either way.
    async fn install(
        &mut self,
        work: &Work,
        certificate: &pb::Certificate,
        version: u32,
    ) -> Result<(), String> {
        let bundle = self
            .certificates
            .get_certificate_bundle(pb::GetCertificateBundleRequest {
                id: certificate.id.clone(),
                organization: work.slug.clone(),
            })
            .await
            .map_err(|status| format!("cannot fetch the bundle: {}", status.message()))?
            .into_inner();
        let bundle = Bundle {
            certificate_id: bundle.certificate_id.clone(),
            organization_id: certificate.organization_id.clone(),
            version: bundle.version,
            names: certificate.names.clone(),
            fullchain_pem: bundle.fullchain_pem.clone(),
            key_pem: Zeroizing::new(bundle.private_key_pem.clone()),
        };
        if bundle.version != version {
            // Renewed in between: the newer one is installed (and reported) instead.
            tracing::info!(certificate_id = %certificate.id, version = bundle.version, "a newer version arrived meanwhile");
        }
        let started = Instant::now();
        let outcome = match self.target.install(&bundle).await {
            Ok(()) => self.check(&bundle).await,
            Err(error) => Err(Failure::Install(error)),
        };
        let report = match &outcome {
            Ok(served) => {
                tracing::info!(
                    certificate_id = %certificate.id,
                    version = bundle.version,
                    target = self.target.kind(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "certificate installed and served"
                );
                self.report(work, &bundle, true, served.as_ref(), "")
            }
            Err(Failure::Install(error)) => {
                self.report(work, &bundle, false, None, &error.to_string())
            }
            Err(Failure::Check(served, error)) => {
                self.report(work, &bundle, true, served.as_ref(), error)
            }
        };
        if let Err(status) = self.certificates.report_installation(report).await {
            tracing::warn!(certificate_id = %certificate.id, error = %status.message(), "cannot report the installation");
        }
        if matches!(outcome, Err(Failure::Check(..))) {
            self.unverified.insert(certificate.id.clone());
        } else {
            self.unverified.remove(&certificate.id);
        }
        match outcome {
            Ok(_) => Ok(()),
            Err(Failure::Install(error)) => Err(format!(
                "{} refused version {}: {error}",
                self.target.kind(),
                bundle.version
            )),
            Err(Failure::Check(_, error)) => Err(error),
        }
    }

    /// Shakes hands for every name until each gets the new leaf, or gives up
    /// after [`VERIFY_PATIENCE`]. What was served (first name) on success.
    async fn check(&self, bundle: &Bundle) -> Result<Option<certfleet_proxy::Served>, Failure> {
        let Some(address) = self.config.verify_address else {
            return Ok(None);
        };
        let expected = bundle
            .leaf_fingerprint()
            .map_err(|error| Failure::Check(None, error.to_string()))?;
        let deadline = Instant::now() + VERIFY_PATIENCE;
        let mut first = None;
        for name in &bundle.names {
            loop {
                let seen = verify_served(address, name, HANDSHAKE_TIMEOUT).await;
                match seen {
                    Ok(served) if served.fingerprint == expected => {
                        first.get_or_insert(served);
                        break;
                    }
                    other => {
                        if Instant::now() >= deadline {
                            return Err(match other {
                                Ok(served) => {
                                    let error = format!(
                                        "{address} serves serial {} for {name}, not version {}",
                                        served.serial, bundle.version
                                    );
                                    Failure::Check(Some(served), error)
                                }
                                Err(error) => Failure::Check(
                                    None,
                                    format!("checking {name} at {address}: {error}"),
                                ),
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        Ok(first)
    }

    fn report(
        &self,
        work: &Work,
        bundle: &Bundle,
        installed: bool,
        served: Option<&certfleet_proxy::Served>,
        error: &str,
    ) -> pb::ReportInstallationRequest {
        pb::ReportInstallationRequest {
            organization: work.slug.clone(),
            certificate_id: bundle.certificate_id.clone(),
            agent: self.config.name.clone(),
            host: self.config.host.clone(),
            target: self.target.kind().to_owned(),
            version: bundle.version,
            installed,
            served_fingerprint_sha256: served.map(|s| s.fingerprint.clone()).unwrap_or_default(),
            served_serial: served.map(|s| s.serial.clone()).unwrap_or_default(),
            error: error.to_owned(),
        }
    }

    /// Compares what the proxy holds with what it should hold, in every
    /// organization the agent serves, and fixes the differences.
    pub async fn reconcile(&mut self) -> Result<(), String> {
        self.refresh_slugs()
            .await
            .map_err(|status| format!("cannot list organizations: {}", status.message()))?;
        // When the proxy cannot say what it holds, every certificate is
        // installed again (each failure reported and retried) and nothing is
        // removed.
        let (installed, known): (HashMap<String, u32>, bool) = match self.target.installed().await {
            Ok(held) => (
                held.into_iter()
                    .map(|installed| (installed.certificate_id, installed.version))
                    .collect(),
                true,
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot read what the proxy holds");
                (HashMap::new(), false)
            }
        };
        let mut wanted: HashMap<String, (Work, pb::Certificate, u32)> = HashMap::new();
        let slugs: Vec<String> = self
            .slugs
            .values()
            .filter(|slug| self.wanted(slug))
            .cloned()
            .collect();
        for slug in slugs {
            let mut page_token = String::new();
            loop {
                let page = self
                    .certificates
                    .list_certificates(pb::ListCertificatesRequest {
                        organization: slug.clone(),
                        page_size: 500,
                        page_token: page_token.clone(),
                        ..pb::ListCertificatesRequest::default()
                    })
                    .await
                    .map_err(|status| {
                        format!(
                            "cannot list the certificates of {slug}: {}",
                            status.message()
                        )
                    })?
                    .into_inner();
                for certificate in page.certificates {
                    if let Some(version) = serving_version(&certificate) {
                        let work = Work {
                            slug: slug.clone(),
                            certificate_id: certificate.id.clone(),
                        };
                        wanted.insert(certificate.id.clone(), (work, certificate, version));
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        let mut changed = 0_usize;
        // The listing already holds each certificate and the proxy's
        // versions are known: install what differs straight away.
        for (certificate_id, (work, certificate, version)) in &wanted {
            if installed.get(certificate_id) != Some(version) && !self.retries.contains_key(work) {
                changed += 1;
                let result = self.install(work, certificate, *version).await;
                self.record(work, result);
            }
        }
        for certificate_id in installed.keys().filter(|_| known) {
            if !wanted.contains_key(certificate_id) {
                changed += 1;
                match self.target.remove(certificate_id).await {
                    Ok(()) => {
                        tracing::info!(
                            certificate_id,
                            target = self.target.kind(),
                            "certificate removed"
                        );
                    }
                    Err(error) => {
                        tracing::warn!(certificate_id, %error, "cannot remove a certificate no longer served");
                    }
                }
            }
        }
        tracing::info!(certificates = wanted.len(), changed, "reconciled");
        Ok(())
    }
}

/// Answers HTTP-01 challenges from a webroot: writes the open ones as files
/// and removes those no longer open. Runs apart from the installs, so a slow
/// proxy never delays an answer.
pub struct WebrootSync {
    webroot: Webroot,
    certificates: Certificates,
    /// Token files in the webroot (those found at start included, so files
    /// left by an earlier run are removed once their challenge closed).
    tokens: HashSet<String>,
}

impl WebrootSync {
    pub fn new(webroot: Webroot, certificates: Certificates) -> WebrootSync {
        let tokens = std::fs::read_dir(webroot.dir.join(".well-known/acme-challenge"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        WebrootSync {
            webroot,
            certificates,
            tokens,
        }
    }

    /// Writes the open challenges and removes the files of closed ones.
    pub async fn sync(&mut self) -> Result<(), String> {
        let open = self
            .certificates
            .list_http_challenges(pb::ListHttpChallengesRequest {})
            .await
            .map_err(|status| format!("cannot list open challenges: {}", status.message()))?
            .into_inner()
            .challenges;
        let mut now_open = HashSet::new();
        for challenge in open {
            if !self.tokens.contains(&challenge.token) {
                match self
                    .webroot
                    .put(&challenge.token, &challenge.key_authorization)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(name = %challenge.name, "challenge written to the webroot");
                    }
                    Err(error) => {
                        tracing::warn!(name = %challenge.name, %error, "cannot write a challenge to the webroot");
                        continue;
                    }
                }
            }
            now_open.insert(challenge.token);
        }
        for token in self.tokens.difference(&now_open) {
            if let Err(error) = self.webroot.remove(token).await {
                tracing::warn!(%error, "cannot remove an answered challenge from the webroot");
            }
        }
        self.tokens = now_open;
        Ok(())
    }
}

enum Failure {
    Install(ProxyError),
    Check(Option<certfleet_proxy::Served>, String),
}

/// The version a proxy should serve: the current one, unless the
/// certificate was revoked (or its current version was).
fn serving_version(certificate: &pb::Certificate) -> Option<u32> {
    let current = certificate.current.as_ref()?;
    if current.revoked_at != 0 || certificate.status == CertificateStatus::Revoked as i32 {
        return None;
    }
    Some(current.version)
}
