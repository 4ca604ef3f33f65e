//! ACME accounts: one per organization per CA, registered on first use with the
//! organization's contact email; credentials sealed by the vault at rest.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use certfleet_core::Clock;
use certfleet_store::{AcmeAccount, Store, new_id};
use certfleet_vault::{EncryptionContext, Vault};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, BodyWrapper, ExternalAccountKey, NewAccount,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::orders_list::RawAccount;
use crate::{AcmeConfig, AcmeError, CaSettings};

/// (organization id, CA directory URL).
type AccountKey = (String, String);

/// Loaded accounts by organization id and CA directory, so each order does
/// not re-read the directory and re-open the credentials.
#[derive(Clone)]
pub struct AccountCache {
    store: Store,
    vault: Vault,
    config: Arc<AcmeConfig>,
    clock: Arc<dyn Clock>,
    accounts: Arc<Mutex<HashMap<AccountKey, Arc<Account>>>>,
}

impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCache").finish_non_exhaustive()
    }
}

/// Runs a CA call with the request timeout.
pub(crate) async fn timed<T>(
    context: &'static str,
    limit: Duration,
    call: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, AcmeError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(|error| AcmeError::problem(context, limit, error)),
        Err(_) => Err(AcmeError::Timeout {
            context,
            after: limit,
        }),
    }
}

/// Immediate repeats of a call whose nonce the CA rejected.
pub(crate) const NONCE_RETRIES: u32 = 10;

/// Runs a CA call with a time limit, repeating it at once when the CA rejected
/// its nonce (each try fetches a fresh nonce). `$call` is evaluated per try.
macro_rules! acme_call {
    ($context:expr, $limit:expr, $call:expr) => {{
        let mut rejected_nonces = 0u32;
        loop {
            match $crate::accounts::timed($context, $limit, $call).await {
                Err(error)
                    if error.problem_type() == Some("badNonce")
                        && rejected_nonces < $crate::accounts::NONCE_RETRIES =>
                {
                    rejected_nonces += 1;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use acme_call;

impl AccountCache {
    pub fn new(
        store: Store,
        vault: Vault,
        config: Arc<AcmeConfig>,
        clock: Arc<dyn Clock>,
    ) -> AccountCache {
        AccountCache {
            store,
            vault,
            config,
            clock,
            accounts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The organization's account at `ca`, registered if needed.
    pub async fn get(
        &self,
        organization_id: &str,
        ca: &CaSettings,
    ) -> Result<Arc<Account>, AcmeError> {
        let key = (organization_id.to_owned(), ca.directory_url.clone());
        let mut accounts = self.accounts.lock().await;
        if let Some(account) = accounts.get(&key) {
            return Ok(account.clone());
        }
        let account = Arc::new(self.load_or_register(organization_id, ca).await?);
        accounts.insert(key, account.clone());
        Ok(account)
    }

    /// Drops the organization's account everywhere, because the CA no longer
    /// knows it (a CA reset its data); the next call registers a new one.
    pub async fn reset(&self, organization_id: &str, ca: &CaSettings) -> Result<(), AcmeError> {
        self.accounts
            .lock()
            .await
            .remove(&(organization_id.to_owned(), ca.directory_url.clone()));
        self.store
            .delete_acme_account(organization_id, &ca.directory_url)
            .await?;
        tracing::warn!(organization_id, directory = %ca.directory_url, "the CA does not know the stored ACME account; registering a new one");
        Ok(())
    }

    /// The organization's account for requests instant-acme does not make (the
    /// orders list); `Err` in plain words when it cannot be had.
    pub(crate) async fn raw(
        &self,
        organization_id: &str,
        ca: &CaSettings,
    ) -> Result<RawAccount, String> {
        let directory_url = &ca.directory_url;
        let stored = self
            .store
            .find_acme_account(organization_id, directory_url)
            .await
            .map_err(|error| error.to_string())?
            .ok_or("the organization has no ACME account")?;
        let context = EncryptionContext::acme_account(organization_id, directory_url);
        let credentials_json = self
            .vault
            .open(&context, &stored.credentials_sealed)
            .await
            .map_err(|error| error.to_string())?;
        let client = HyperClient::builder(TokioExecutor::new())
            .build(self.connector(ca).map_err(|error| error.to_string())?);
        RawAccount::from_credentials(
            client,
            &credentials_json,
            directory_url,
            self.config.request_timeout,
        )
    }

    fn builder(&self, ca: &CaSettings) -> Result<AccountBuilder, AcmeError> {
        let client = HyperClient::builder(TokioExecutor::new())
            .build::<_, BodyWrapper<Bytes>>(self.connector(ca)?);
        Ok(Account::builder_with_http(Box::new(RetryAfterNoted(
            client,
        ))))
    }

    /// The accounts' HTTPS connector: TCP_NODELAY (without it every POST to the
    /// CA waits for a delayed ACK, tens of milliseconds), a connect timeout, and
    /// the platform's roots, plus the configured CA root if there is one.
    fn connector(&self, ca: &CaSettings) -> Result<HttpsConnector<HttpConnector>, AcmeError> {
        let connector_error = |message: String| AcmeError::Connection {
            context: "preparing the HTTPS client",
            message,
        };
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.config.request_timeout));
        let tls = match &ca.ca_root {
            // The platform's roots plus the configured one (a private or test CA).
            Some(path) => {
                let root_error =
                    |error: String| connector_error(format!("CA root {}: {error}", path.display()));
                let mut extra = Vec::new();
                for certificate in CertificateDer::pem_file_iter(path)
                    .map_err(|error| root_error(error.to_string()))?
                {
                    extra.push(certificate.map_err(|error| root_error(error.to_string()))?);
                }
                if extra.is_empty() {
                    return Err(root_error("no certificate in the file".to_owned()));
                }
                let provider = rustls::crypto::CryptoProvider::get_default()
                    .cloned()
                    .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
                let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
                    extra,
                    provider.clone(),
                )
                .map_err(|error| root_error(error.to_string()))?;
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|error| connector_error(error.to_string()))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(config)
            }
            None => HttpsConnectorBuilder::new()
                .try_with_platform_verifier()
                .map_err(|error| connector_error(error.to_string()))?,
        };
        Ok(tls
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http))
    }

    async fn load_or_register(
        &self,
        organization_id: &str,
        ca: &CaSettings,
    ) -> Result<Account, AcmeError> {
        let directory_url = &ca.directory_url;
        let context = EncryptionContext::acme_account(organization_id, directory_url);
        if let Some(stored) = self
            .store
            .find_acme_account(organization_id, directory_url)
            .await?
        {
            return self.restore(&context, &stored, ca).await;
        }
        let organization = self
            .store
            .find_organization(organization_id)
            .await?
            .ok_or_else(|| AcmeError::OrganizationGone(organization_id.to_owned()))?;
        let contact = format!("mailto:{}", organization.contact_email);
        let new_account = NewAccount {
            contact: &[&contact],
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let binding = self
            .external_account_key(organization_id, directory_url)
            .await?;
        let (account, credentials) = acme_call!(
            "registering the ACME account",
            self.config.request_timeout,
            self.builder(ca)?.create(
                &new_account,
                directory_url.clone(),
                binding.as_ref().map(|(_, key)| key)
            )
        )
        .map_err(|error| {
            binding_error(
                error,
                &organization.slug,
                directory_url,
                binding.as_ref().map(|(key_id, _)| key_id.as_str()),
            )
        })?;
        let credentials_json = Zeroizing::new(
            serde_json::to_vec(&credentials)
                .map_err(|error| AcmeError::Key(format!("account credentials: {error}")))?,
        );
        let sealed = self.vault.seal(&context, &credentials_json).await?;
        let row = AcmeAccount {
            id: new_id(),
            organization_id: organization_id.to_owned(),
            directory_url: directory_url.clone(),
            account_url: account.id().to_owned(),
            contact,
            credentials_sealed: sealed,
            eab_key_id: binding.map(|(key_id, _)| key_id),
            created_at: self.clock.now_ms(),
        };
        let stored = self.store.insert_acme_account(row).await?;
        tracing::info!(organization_id, account_url = %stored.account_url, "registered ACME account");
        if stored.account_url == account.id() {
            Ok(account)
        } else {
            // Another worker registered first; use theirs so there is one account.
            self.restore(&context, &stored, ca).await
        }
    }

    /// The organization's External Account Binding at `directory_url`, its
    /// HMAC key opened by the vault, when one is set.
    async fn external_account_key(
        &self,
        organization_id: &str,
        directory_url: &str,
    ) -> Result<Option<(String, ExternalAccountKey)>, AcmeError> {
        let Some(stored) = self
            .store
            .find_eab_credential(organization_id, directory_url)
            .await?
        else {
            return Ok(None);
        };
        let context = EncryptionContext::eab(organization_id, directory_url);
        let hmac = self.vault.open(&context, &stored.hmac_sealed).await?;
        let key = ExternalAccountKey::new(stored.key_id.clone(), &hmac);
        Ok(Some((stored.key_id, key)))
    }

    async fn restore(
        &self,
        context: &EncryptionContext,
        stored: &AcmeAccount,
        ca: &CaSettings,
    ) -> Result<Account, AcmeError> {
        let credentials_json = self.vault.open(context, &stored.credentials_sealed).await?;
        let credentials: AccountCredentials = serde_json::from_slice(&credentials_json)
            .map_err(|error| AcmeError::Key(format!("stored account credentials: {error}")))?;
        let builder = self.builder(ca)?;
        timed(
            "loading the ACME account",
            self.config.request_timeout,
            builder.from_credentials(credentials),
        )
        .await
    }
}

/// The HTTP client of accounts: the hyper client, with one change. instant-acme
/// drops the `Retry-After` header of an error answer, so when the CA sends
/// one (a `rateLimited` problem, say) it is appended to the problem's
/// `detail` as "retry after RFC3339", the words Let's Encrypt uses, where
/// [`AcmeError::retry_after_ms`] reads it.
struct RetryAfterNoted<C>(C);

impl<C: instant_acme::HttpClient> instant_acme::HttpClient for RetryAfterNoted<C> {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<instant_acme::BytesResponse, instant_acme::Error>> + Send>,
    > {
        let call = self.0.request(request);
        Box::pin(async move {
            let mut response = call.await?;
            let status = response.parts.status;
            if status.is_success() || status.is_redirection() {
                return Ok(response);
            }
            let Some(retry_at) = response
                .parts
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(parse_retry_after)
            else {
                return Ok(response);
            };
            let body = response
                .body
                .into_bytes()
                .await
                .map_err(instant_acme::Error::Other)?;
            let body = note_retry_after(&body, retry_at).unwrap_or(body);
            let parts = response.parts;
            Ok(instant_acme::BytesResponse::from(
                http::Response::from_parts(parts, http_body_util::Full::new(body)),
            ))
        })
    }
}

/// A `Retry-After` value (seconds or an HTTP date) as Unix seconds.
fn parse_retry_after(value: &str) -> Option<i64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<i64>() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        return i64::try_from(now).ok()?.checked_add(seconds);
    }
    let format = time::format_description::well_known::Rfc2822;
    time::OffsetDateTime::parse(&value.replace("GMT", "+0000"), &format)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// The problem document `body` with "; retry after RFC3339" added to its
/// detail; `None` when it is not a JSON object.
fn note_retry_after(body: &[u8], retry_at_unix: i64) -> Option<Bytes> {
    let mut problem: serde_json::Value = serde_json::from_slice(body).ok()?;
    let when = time::OffsetDateTime::from_unix_timestamp(retry_at_unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
    let object = problem.as_object_mut()?;
    let detail = object
        .get("detail")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_owned();
    let noted = if detail.is_empty() {
        format!("retry after {when}")
    } else {
        format!("{detail}; retry after {when}")
    };
    object.insert("detail".to_owned(), serde_json::Value::from(noted));
    serde_json::to_vec(&problem).ok().map(Bytes::from)
}

/// A refused registration in words that say what to do, when the refusal is
/// about External Account Binding: required and not set (`slug` names the
/// organization), or sent with `key_id` and refused.
fn binding_error(
    error: AcmeError,
    slug: &str,
    directory_url: &str,
    key_id: Option<&str>,
) -> AcmeError {
    match (key_id, error.problem_type()) {
        (None, Some("externalAccountRequired")) => AcmeError::EabRequired {
            organization: slug.to_owned(),
            directory: directory_url.to_owned(),
        },
        (Some(key_id), Some("externalAccountRequired" | "unauthorized" | "malformed")) => {
            AcmeError::EabRefused {
                key_id: key_id.to_owned(),
                directory: directory_url.to_owned(),
                detail: error.to_string(),
            }
        }
        _ => error,
    }
}
