//! Caddy: certificate files on disk, loaded through Caddy's admin API
//! (<https://caddyserver.com/docs/api>) as a `load_files` entry
//! (<https://caddyserver.com/docs/json/apps/tls/certificates/load_files/>)
//! with `"@id": "certfleet-<id>"`. Only file paths go over the API, never
//! the key. Caddy applies every admin change as a graceful config reload.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::fs::{
    KEY_MODE, PUBLIC_MODE, blocking, create_dir, remove_dir_if_empty, remove_version_files,
    write_file,
};
use crate::{Bundle, COMMAND_TIMEOUT, Installed, ProxyError, Target, validate_certificate_id};

const LOAD_FILES: &str = "/config/apps/tls/certificates/load_files";

/// Installs certificates into a running Caddy through its admin API.
#[derive(Debug)]
pub struct CaddyTarget {
    /// The admin endpoint, e.g. `http://127.0.0.1:2019`.
    pub admin: String,
    /// Where certificate and key files go; Caddy must be able to read them.
    pub certs_dir: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
    lock: Mutex<()>,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl CaddyTarget {
    pub fn new(admin: impl Into<String>, certs_dir: impl Into<PathBuf>) -> Self {
        Self {
            admin: admin.into().trim_end_matches('/').to_owned(),
            certs_dir: certs_dir.into(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            lock: Mutex::new(()),
        }
    }

    fn object_path(certificate_id: &str) -> String {
        format!("/id/certfleet-{certificate_id}")
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ProxyError> {
        let url = format!("{}{path}", self.admin);
        let method_name = method_name(&method);
        let unreachable = |detail: String| ProxyError::AdminUnreachable {
            method: method_name,
            url: url.clone(),
            detail,
        };
        let mut builder = Request::builder().method(method).uri(&url);
        let payload = match body {
            Some(body) => {
                builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(payload))
            .map_err(|error| ProxyError::invalid("caddy admin url", format!("{url:?}: {error}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| unreachable(describe_client_error(&error)))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| unreachable(format!("reading the answer: {error}")))?
                .to_bytes()
                .to_vec();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_elapsed| {
                unreachable(format!("no answer within {} s", COMMAND_TIMEOUT.as_secs()))
            })?
    }

    /// Like [`call`](Self::call), but only 2xx is success.
    async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Vec<u8>, ProxyError> {
        let method_name = method_name(&method);
        let answer = self.call(method, path, body).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer.body)
        } else {
            Err(self.rejected(method_name, path, &answer))
        }
    }

    fn rejected(&self, method: &'static str, path: &str, answer: &Answer) -> ProxyError {
        ProxyError::AdminRejected {
            method,
            url: format!("{}{path}", self.admin),
            status: answer.status,
            body: String::from_utf8_lossy(&answer.body)
                .trim()
                .chars()
                .take(2000)
                .collect(),
        }
    }

    /// Adds or replaces the `load_files` entry of one certificate. A
    /// renewal replaces an entry, so that is tried first (one call); only an
    /// unknown `@id` leads to adding it.
    async fn put_entry(&self, certificate_id: &str, entry: &Value) -> Result<(), ProxyError> {
        let object = Self::object_path(certificate_id);
        let patched = self.call(Method::PATCH, &object, Some(entry)).await?;
        if (200..300).contains(&patched.status) {
            return Ok(());
        }
        if !patched.is_unknown_id() {
            return Err(self.rejected("PATCH", &object, &patched));
        }
        let list = self.call(Method::GET, LOAD_FILES, None).await?;
        let has_list = list.status == 200
            && serde_json::from_slice::<Value>(&list.body).is_ok_and(|value| value.is_array());
        if has_list {
            // POST to an array appends.
            self.call_ok(Method::POST, LOAD_FILES, Some(entry)).await?;
        } else {
            // PUT creates the key, and the missing objects on its path.
            self.call_ok(Method::PUT, LOAD_FILES, Some(&json!([entry])))
                .await?;
        }
        Ok(())
    }
}

impl Answer {
    /// Caddy answers an unknown `@id` with 404 (some versions with 400).
    fn is_unknown_id(&self) -> bool {
        self.status == 404
            || (self.status == 400
                && String::from_utf8_lossy(&self.body).contains("unknown object ID"))
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "request",
    }
}

/// The legacy client's error hides the cause (connection refused) in its
/// source chain; the message should say it.
fn describe_client_error(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn path_text(path: &Path) -> Result<String, ProxyError> {
    match path.to_str() {
        Some(text) if path.is_absolute() => Ok(text.to_owned()),
        _ => Err(ProxyError::invalid(
            "caddy certificate path",
            format!("{} must be absolute UTF-8", path.display()),
        )),
    }
}

#[async_trait::async_trait]
impl Target for CaddyTarget {
    fn kind(&self) -> &'static str {
        "caddy"
    }

    async fn install(&self, bundle: &Bundle) -> Result<(), ProxyError> {
        bundle.validate()?;
        let _one_change = self.lock.lock().await;
        let id = &bundle.certificate_id;
        let cert_dir = self.certs_dir.join(id);
        let cert_name = format!("fullchain-v{}.pem", bundle.version);
        let key_name = format!("privkey-v{}.pem", bundle.version);
        let cert_file = cert_dir.join(&cert_name);
        let key_file = cert_dir.join(&key_name);
        let cert_text = path_text(&cert_file)?;
        let key_text = path_text(&key_file)?;
        let entry = json!({
            "@id": format!("certfleet-{id}"),
            "certificate": cert_text,
            "key": key_text,
            "format": "pem",
            "tags": ["certfleet", format!("certfleet-{id}"), format!("certfleet-v{}", bundle.version)],
        });

        let fullchain = bundle.fullchain_pem.clone().into_bytes();
        let key = zeroize::Zeroizing::new(bundle.key_pem.as_bytes().to_vec());
        let (dir, cert, key_path) = (cert_dir.clone(), cert_file.clone(), key_file.clone());
        // Files of the same version may be what Caddy uses right now (a
        // repeated install); those must survive a failure below.
        let existed = blocking(move || {
            let existed = cert.exists() && key_path.exists();
            create_dir(&dir)?;
            write_file(&cert, &fullchain, PUBLIC_MODE)?;
            write_file(&key_path, &key, KEY_MODE)?;
            Ok(existed)
        })
        .await?;

        if let Err(error) = self.put_entry(id, &entry).await {
            // Caddy kept its previous configuration; the new files are unused.
            if !existed {
                let (cert, key_path) = (cert_file.clone(), key_file.clone());
                let _ignored = blocking(move || {
                    crate::fs::remove_file(&cert)?;
                    crate::fs::remove_file(&key_path)
                })
                .await;
            }
            return Err(error);
        }

        let object = Self::object_path(id);
        let body = self.call_ok(Method::GET, &object, None).await?;
        let applied: Value =
            serde_json::from_slice(&body).map_err(|error| ProxyError::NotApplied {
                target: "caddy",
                detail: format!("GET {}{object} is not JSON: {error}", self.admin),
            })?;
        if applied.get("certificate").and_then(Value::as_str) != Some(cert_text.as_str())
            || applied.get("key").and_then(Value::as_str) != Some(key_text.as_str())
        {
            return Err(ProxyError::NotApplied {
                target: "caddy",
                detail: format!(
                    "GET {}{object} names {} instead of {cert_text}",
                    self.admin,
                    applied.get("certificate").unwrap_or(&Value::Null)
                ),
            });
        }
        blocking(move || remove_version_files(&cert_dir, &[&cert_name, &key_name])).await?;
        tracing::info!(certificate_id = %id, version = bundle.version, "installed certificate into caddy");
        Ok(())
    }

    async fn remove(&self, certificate_id: &str) -> Result<(), ProxyError> {
        validate_certificate_id(certificate_id)?;
        let _one_change = self.lock.lock().await;
        let object = Self::object_path(certificate_id);
        let answer = self.call(Method::DELETE, &object, None).await?;
        if !(200..300).contains(&answer.status) && !answer.is_unknown_id() {
            return Err(self.rejected("DELETE", &object, &answer));
        }
        let cert_dir = self.certs_dir.join(certificate_id);
        blocking(move || {
            remove_version_files(&cert_dir, &[])?;
            remove_dir_if_empty(&cert_dir);
            Ok(())
        })
        .await?;
        tracing::info!(%certificate_id, "removed certificate from caddy");
        Ok(())
    }

    async fn installed(&self) -> Result<Vec<Installed>, ProxyError> {
        let answer = self.call(Method::GET, LOAD_FILES, None).await?;
        // Caddy 2.6 answers a path through a missing object with 400
        // "invalid traversal path": no tls app, nothing installed.
        let missing = String::from_utf8_lossy(&answer.body).contains("invalid traversal path");
        if answer.status == 404 || (answer.status == 400 && missing) {
            return Ok(Vec::new());
        }
        if answer.status != 200 {
            return Err(self.rejected("GET", LOAD_FILES, &answer));
        }
        let list: Value =
            serde_json::from_slice(&answer.body).map_err(|error| ProxyError::NotApplied {
                target: "caddy",
                detail: format!("GET {}{LOAD_FILES} is not JSON: {error}", self.admin),
            })?;
        let mut installed: Vec<Installed> = list
            .as_array()
            .map(|entries| entries.iter().filter_map(parse_entry).collect())
            .unwrap_or_default();
        installed.sort_by(|left, right| left.certificate_id.cmp(&right.certificate_id));
        Ok(installed)
    }
}

/// Our entries: `@id` `certfleet-<id>`, a `certfleet-v<version>` tag.
fn parse_entry(entry: &Value) -> Option<Installed> {
    let certificate_id = entry.get("@id")?.as_str()?.strip_prefix("certfleet-")?;
    validate_certificate_id(certificate_id).ok()?;
    let version = entry
        .get("tags")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|tag| tag.strip_prefix("certfleet-v")?.parse::<u32>().ok())?;
    Some(Installed {
        certificate_id: certificate_id.to_owned(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_entries_only() {
        let ours = json!({"@id": "certfleet-ab-1", "tags": ["certfleet", "certfleet-ab-1", "certfleet-v4"]});
        assert_eq!(
            parse_entry(&ours),
            Some(Installed {
                certificate_id: "ab-1".to_owned(),
                version: 4
            })
        );
        assert_eq!(
            parse_entry(&json!({"certificate": "/x", "key": "/y"})),
            None
        );
    }
}
