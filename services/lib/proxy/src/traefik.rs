//! Traefik: certificate files outside the watched directory, then one
//! dynamic configuration file per certificate in the directory Traefik's
//! file provider watches.
//!
//! The format is Traefik's documented "user defined" certificates
//! (<https://doc.traefik.io/traefik/https/tls/#user-defined>) read by the
//! file provider (<https://doc.traefik.io/traefik/providers/file/>):
//!
//! ```yaml
//! tls:
//!   certificates:
//!     - certFile: /abs/path/fullchain-v3.pem
//!       keyFile: /abs/path/privkey-v3.pem
//! ```
//!
//! No Traefik binary is available to the tests, so they check the generated
//! file against that documented schema rather than against a running Traefik.
//! Certificate files carry the version in their names so that a watcher never
//! pairs a new certificate with an old key; the older files are removed once
//! the new configuration file is in place.

use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use crate::fs::{
    KEY_MODE, PUBLIC_MODE, blocking, create_dir, remove_dir_if_empty, remove_version_files,
    write_file,
};
use crate::{Bundle, Installed, ProxyError, Target, validate_certificate_id};

const HEADER_PREFIX: &str = "# written by certfleet: certificate ";

/// Installs certificates for Traefik's file provider.
#[derive(Debug)]
pub struct TraefikTarget {
    /// The directory Traefik's file provider watches.
    pub dir: PathBuf,
    /// Where certificate and key files go; outside `dir`.
    pub certs_dir: PathBuf,
    lock: Mutex<()>,
}

impl TraefikTarget {
    pub fn new(dir: impl Into<PathBuf>, certs_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            certs_dir: certs_dir.into(),
            lock: Mutex::new(()),
        }
    }

    /// The dynamic configuration file of one certificate.
    pub fn config_file(&self, certificate_id: &str) -> PathBuf {
        self.dir.join(format!("certfleet-{certificate_id}.yml"))
    }
}

fn yaml_path(path: &Path) -> Result<String, ProxyError> {
    let text = path.to_str().ok_or_else(|| {
        ProxyError::invalid("traefik path", format!("{} is not UTF-8", path.display()))
    })?;
    if !path.is_absolute() || text.contains(|c: char| c == '"' || c == '\\' || c.is_control()) {
        return Err(ProxyError::invalid(
            "traefik path",
            format!("{text:?} must be absolute and free of quotes and backslashes"),
        ));
    }
    Ok(format!("\"{text}\""))
}

fn render(bundle: &Bundle, cert_file: &Path, key_file: &Path) -> Result<String, ProxyError> {
    Ok(format!(
        "{HEADER_PREFIX}{} version {}\n# names: {}\ntls:\n  certificates:\n    - certFile: {}\n      keyFile: {}\n",
        bundle.certificate_id,
        bundle.version,
        bundle.names.join(" "),
        yaml_path(cert_file)?,
        yaml_path(key_file)?,
    ))
}

#[async_trait::async_trait]
impl Target for TraefikTarget {
    fn kind(&self) -> &'static str {
        "traefik"
    }

    async fn install(&self, bundle: &Bundle) -> Result<(), ProxyError> {
        bundle.validate()?;
        let _one_change = self.lock.lock().await;
        let cert_dir = self.certs_dir.join(&bundle.certificate_id);
        let cert_name = format!("fullchain-v{}.pem", bundle.version);
        let key_name = format!("privkey-v{}.pem", bundle.version);
        let cert_file = cert_dir.join(&cert_name);
        let key_file = cert_dir.join(&key_name);
        let config = render(bundle, &cert_file, &key_file)?;
        let config_file = self.config_file(&bundle.certificate_id);
        let watched_dir = self.dir.clone();
        let fullchain = bundle.fullchain_pem.clone().into_bytes();
        let key = zeroize::Zeroizing::new(bundle.key_pem.as_bytes().to_vec());
        blocking(move || {
            create_dir(&cert_dir)?;
            create_dir(&watched_dir)?;
            write_file(&cert_file, &fullchain, PUBLIC_MODE)?;
            write_file(&key_file, &key, KEY_MODE)?;
            write_file(&config_file, config.as_bytes(), PUBLIC_MODE)?;
            // Only now nothing refers to the older files any more.
            remove_version_files(&cert_dir, &[&cert_name, &key_name])
        })
        .await?;
        tracing::info!(
            certificate_id = %bundle.certificate_id,
            version = bundle.version,
            "installed certificate for traefik"
        );
        Ok(())
    }

    async fn remove(&self, certificate_id: &str) -> Result<(), ProxyError> {
        validate_certificate_id(certificate_id)?;
        let _one_change = self.lock.lock().await;
        let config_file = self.config_file(certificate_id);
        let cert_dir = self.certs_dir.join(certificate_id);
        let watched_dir = self.dir.clone();
        blocking(move || {
            crate::fs::remove_file(&config_file)?;
            if let Ok(directory) = std::fs::File::open(&watched_dir) {
                let _ignored = directory.sync_all();
            }
            remove_version_files(&cert_dir, &[])?;
            remove_dir_if_empty(&cert_dir);
            Ok(())
        })
        .await
    }

    async fn installed(&self) -> Result<Vec<Installed>, ProxyError> {
        let dir = self.dir.clone();
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Vec::new());
                }
                Err(error) => return Err(ProxyError::io("listing", &dir, error)),
            };
            let mut installed = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|error| ProxyError::io("listing", &dir, error))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !(name.starts_with("certfleet-") && name.ends_with(".yml")) {
                    continue;
                }
                let path = entry.path();
                let text = std::fs::read_to_string(&path)
                    .map_err(|error| ProxyError::io("reading", &path, error))?;
                if let Some(found) = parse_header(&text) {
                    installed.push(found);
                }
            }
            installed.sort_by(|left, right| left.certificate_id.cmp(&right.certificate_id));
            Ok(installed)
        })
        .await
    }
}

/// Reads `# written by certfleet: certificate <id> version <n>`.
fn parse_header(text: &str) -> Option<Installed> {
    let rest = text.lines().next()?.strip_prefix(HEADER_PREFIX)?;
    let (certificate_id, version) = rest.split_once(" version ")?;
    validate_certificate_id(certificate_id).ok()?;
    Some(Installed {
        certificate_id: certificate_id.to_owned(),
        version: version.trim().parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let found = parse_header("# written by certfleet: certificate ab-12 version 7\ntls:\n")
            .expect("header");
        assert_eq!(found.certificate_id, "ab-12");
        assert_eq!(found.version, 7);
        assert!(parse_header("tls:\n").is_none());
    }

    #[test]
    fn paths_must_be_absolute_and_plain() {
        assert_eq!(yaml_path(Path::new("/a b/c")).expect("ok"), "\"/a b/c\"");
        assert!(yaml_path(Path::new("rel/c")).is_err());
        assert!(yaml_path(Path::new("/a\"b")).is_err());
    }
}
