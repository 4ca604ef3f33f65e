//! nginx: certificate files plus a generated `server {}` block per
//! certificate, checked with `nginx -t` and applied with a graceful
//! `nginx -s reload`; a refused configuration puts the previous files back.
//!
//! Layout under `dir` (the operator's `http {}` has
//! `include <dir>/servers/*.conf;`):
//!
//! ```text
//! certs/<id>/fullchain.pem   0644
//! certs/<id>/privkey.pem     0600
//! certs/<id>/ssl.conf        ssl_certificate + ssl_certificate_key, for own server blocks
//! certs/<id>/version         the installed version
//! servers/<id>.conf          server { listen …; server_name …; ssl_certificate …; }
//! ```

use std::path::{Path, PathBuf};

use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::command::run;
use crate::fs::{
    KEY_MODE, PUBLIC_MODE, Snapshot, blocking, create_dir, remove_dir_if_empty, restore_all,
    write_file,
};
use crate::{Bundle, Installed, ProxyError, Target, validate_certificate_id};

/// Installs certificates into a running nginx.
#[derive(Debug)]
pub struct NginxTarget {
    /// Where the certificate files and server blocks go.
    pub dir: PathBuf,
    /// The nginx binary.
    pub nginx: PathBuf,
    /// Passed before `-t` and `-s reload`, e.g. `["-p", prefix, "-c", conf]`.
    pub nginx_args: Vec<String>,
    /// `listen` parameters of the generated server blocks; default `["443 ssl"]`.
    pub listen: Vec<String>,
    /// A file included into every generated server block (locations, proxying).
    pub server_include: Option<PathBuf>,
    /// One nginx change at a time: a test and reload must see one change.
    lock: Mutex<()>,
}

impl NginxTarget {
    pub fn new(dir: impl Into<PathBuf>, nginx: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            nginx: nginx.into(),
            nginx_args: Vec::new(),
            listen: vec!["443 ssl".to_owned()],
            server_include: None,
            lock: Mutex::new(()),
        }
    }

    pub fn with_nginx_args(mut self, args: Vec<String>) -> Self {
        self.nginx_args = args;
        self
    }

    pub fn with_listen(mut self, listen: Vec<String>) -> Self {
        self.listen = listen;
        self
    }

    pub fn with_server_include(mut self, include: Option<PathBuf>) -> Self {
        self.server_include = include;
        self
    }

    fn cert_dir(&self, certificate_id: &str) -> PathBuf {
        self.dir.join("certs").join(certificate_id)
    }

    fn server_file(&self, certificate_id: &str) -> PathBuf {
        self.dir
            .join("servers")
            .join(format!("{certificate_id}.conf"))
    }

    /// Every file this target writes for one certificate.
    fn files(&self, certificate_id: &str) -> Vec<PathBuf> {
        let cert_dir = self.cert_dir(certificate_id);
        vec![
            cert_dir.join("fullchain.pem"),
            cert_dir.join("privkey.pem"),
            cert_dir.join("ssl.conf"),
            cert_dir.join("version"),
            self.server_file(certificate_id),
        ]
    }

    fn render(&self, bundle: &Bundle) -> Result<Rendered, ProxyError> {
        let cert_dir = self.cert_dir(&bundle.certificate_id);
        let fullchain = config_path(&cert_dir.join("fullchain.pem"))?;
        let privkey = config_path(&cert_dir.join("privkey.pem"))?;
        let header = format!(
            "# written by certfleet: certificate {} version {}; changes are overwritten\n",
            bundle.certificate_id, bundle.version
        );
        let ssl = format!("ssl_certificate \"{fullchain}\";\nssl_certificate_key \"{privkey}\";\n");
        let mut server = format!("{header}server {{\n");
        for listen in &self.listen {
            if listen.contains([';', '{', '}', '#', '"', '\'', '\n', '\r', '$']) {
                return Err(ProxyError::invalid(
                    "nginx listen parameter",
                    format!(
                        "{listen:?} may not contain ; {{ }} # quotes $ or line breaks; \
                         give only what follows `listen`, e.g. \"443 ssl\""
                    ),
                ));
            }
            server.push_str(&format!("    listen {listen};\n"));
        }
        server.push_str(&format!("    server_name {};\n", bundle.names.join(" ")));
        server.push_str(&format!("    ssl_certificate \"{fullchain}\";\n"));
        server.push_str(&format!("    ssl_certificate_key \"{privkey}\";\n"));
        if let Some(include) = &self.server_include {
            server.push_str(&format!("    include \"{}\";\n", config_path(include)?));
        }
        server.push_str("}\n");
        Ok(Rendered {
            ssl: format!("{header}{ssl}"),
            server,
        })
    }

    /// Runs `nginx <nginx_args> <extra>`; a non-zero exit becomes
    /// `refused(command, output)`.
    async fn nginx(
        &self,
        extra: &[&str],
        refused: fn(String, String) -> ProxyError,
    ) -> Result<(), ProxyError> {
        let mut args = self.nginx_args.clone();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let finished = run(&self.nginx, &args).await?;
        if finished.success {
            Ok(())
        } else {
            Err(refused(finished.command, finished.output))
        }
    }

    /// `nginx -t`, then a graceful `nginx -s reload`; on any failure puts
    /// `snapshots` back.
    async fn apply_or_restore(
        &self,
        snapshots: Vec<Snapshot>,
        cert_dir: PathBuf,
    ) -> Result<(), ProxyError> {
        let applied = async {
            self.nginx(&["-t"], |command, output| ProxyError::ConfigRejected {
                command,
                output,
            })
            .await?;
            self.nginx(&["-s", "reload"], |command, output| ProxyError::Reload {
                command,
                output,
            })
            .await
        }
        .await;
        let failed = applied.is_err();
        blocking(move || {
            if failed {
                restore_all(&snapshots)?;
            }
            remove_dir_if_empty(&cert_dir);
            Ok(())
        })
        .await?;
        applied
    }
}

struct Rendered {
    ssl: String,
    server: String,
}

/// An absolute path as it can stand in double quotes in nginx configuration;
/// `$` would start a variable in `ssl_certificate`.
fn config_path(path: &Path) -> Result<String, ProxyError> {
    let text = path.to_str().ok_or_else(|| {
        ProxyError::invalid("nginx path", format!("{} is not UTF-8", path.display()))
    })?;
    if !path.is_absolute() || text.contains(['"', '\\', '$', '\n', '\r']) {
        return Err(ProxyError::invalid(
            "nginx path",
            format!("{text:?} must be absolute and free of quotes, backslashes and $"),
        ));
    }
    Ok(text.to_owned())
}

#[async_trait::async_trait]
impl Target for NginxTarget {
    fn kind(&self) -> &'static str {
        "nginx"
    }

    async fn install(&self, bundle: &Bundle) -> Result<(), ProxyError> {
        bundle.validate()?;
        let rendered = self.render(bundle)?;
        let _one_change = self.lock.lock().await;
        let files = self.files(&bundle.certificate_id);
        let cert_dir = self.cert_dir(&bundle.certificate_id);
        let servers_dir = self.dir.join("servers");
        let contents: Vec<(Zeroizing<Vec<u8>>, u32)> = vec![
            (bundle.fullchain_pem.as_bytes().to_vec().into(), PUBLIC_MODE),
            (bundle.key_pem.as_bytes().to_vec().into(), KEY_MODE),
            (rendered.ssl.into_bytes().into(), PUBLIC_MODE),
            (
                format!("{}\n", bundle.version).into_bytes().into(),
                PUBLIC_MODE,
            ),
            (rendered.server.into_bytes().into(), PUBLIC_MODE),
        ];
        let dir_for_write = cert_dir.clone();
        let snapshots = blocking(move || {
            create_dir(&dir_for_write)?;
            create_dir(&servers_dir)?;
            let snapshots = files
                .iter()
                .map(|path| Snapshot::take(path))
                .collect::<Result<Vec<_>, _>>()?;
            for (path, (bytes, mode)) in files.iter().zip(contents.iter()) {
                if let Err(error) = write_file(path, bytes, *mode) {
                    restore_all(&snapshots)?;
                    return Err(error);
                }
            }
            Ok(snapshots)
        })
        .await?;
        self.apply_or_restore(snapshots, cert_dir).await?;
        tracing::info!(
            certificate_id = %bundle.certificate_id,
            version = bundle.version,
            "installed certificate into nginx"
        );
        Ok(())
    }

    async fn remove(&self, certificate_id: &str) -> Result<(), ProxyError> {
        validate_certificate_id(certificate_id)?;
        let _one_change = self.lock.lock().await;
        let files = self.files(certificate_id);
        let cert_dir = self.cert_dir(certificate_id);
        let snapshots = blocking(move || {
            if !files.iter().any(|path| path.exists()) {
                return Ok(None);
            }
            let snapshots = files
                .iter()
                .map(|path| Snapshot::take(path))
                .collect::<Result<Vec<_>, _>>()?;
            // The server block first: without it nothing refers to the files.
            for path in files.iter().rev() {
                if let Err(error) = crate::fs::remove_file(path) {
                    restore_all(&snapshots)?;
                    return Err(error);
                }
            }
            Ok(Some(snapshots))
        })
        .await?;
        let Some(snapshots) = snapshots else {
            return Ok(());
        };
        self.apply_or_restore(snapshots, cert_dir).await?;
        tracing::info!(%certificate_id, "removed certificate from nginx");
        Ok(())
    }

    async fn installed(&self) -> Result<Vec<Installed>, ProxyError> {
        let certs_dir = self.dir.join("certs");
        blocking(move || read_versions(&certs_dir)).await
    }
}

/// Reads `<certs_dir>/<id>/version` for every certificate directory.
fn read_versions(certs_dir: &Path) -> Result<Vec<Installed>, ProxyError> {
    let entries = match std::fs::read_dir(certs_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(ProxyError::io("listing", certs_dir, error)),
    };
    let mut installed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| ProxyError::io("listing", certs_dir, error))?;
        let Ok(certificate_id) = entry.file_name().into_string() else {
            continue;
        };
        if validate_certificate_id(&certificate_id).is_err() {
            continue;
        }
        let version_path = entry.path().join("version");
        let text = match std::fs::read_to_string(&version_path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(ProxyError::io("reading", &version_path, error)),
        };
        let version = text.trim().parse::<u32>().map_err(|error| {
            ProxyError::invalid(
                "version file",
                format!("{}: {error}", version_path.display()),
            )
        })?;
        installed.push(Installed {
            certificate_id,
            version,
        });
    }
    installed.sort_by(|left, right| left.certificate_id.cmp(&right.certificate_id));
    Ok(installed)
}
