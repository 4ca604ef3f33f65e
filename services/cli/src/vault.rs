//! `certfleet vault rewrap`: moves every sealed blob's data key to a new
//! wrapping key (a local master key or an AWS KMS key), in batches, while the
//! services keep running; and the vault key flags shared with `dev`/`server`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use certfleet_store::{SealedColumn, SealedRow, Store};
use certfleet_vault::{
    AwsKms, AwsKmsConfig, EncryptionContext, KeyWrapper, LocalMasterKey, Vault, VaultError,
};
use clap::{Args, Subcommand};

use crate::args::VaultProvider;

/// Which key wraps the data keys, and the earlier keys still opened.
#[derive(Debug, Clone, Args)]
pub struct VaultKeyArgs {
    /// File with the base64 master key; default `<data-dir>/master.key`.
    #[arg(long, env = "CERTFLEET_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The base64 master key itself (takes precedence over the file).
    #[arg(long, env = "CERTFLEET_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Earlier master key files whose blobs are still opened (never used to
    /// seal), comma-separated or the flag repeated: set during a key rotation
    /// until `certfleet vault rewrap` has moved every blob to the current key.
    #[arg(
        long,
        env = "CERTFLEET_PREVIOUS_MASTER_KEY_FILES",
        value_delimiter = ','
    )]
    pub previous_master_key_file: Vec<PathBuf>,
    /// Which key wraps the data keys of sealed private keys: `local` (the
    /// master key) or `aws-kms` (the --kms-* settings; no master key then).
    #[arg(long, env = "CERTFLEET_VAULT_PROVIDER", default_value = "local")]
    pub vault_provider: VaultProvider,
    /// aws-kms: the KMS key, as key id, key ARN or alias/NAME.
    #[arg(long, env = "CERTFLEET_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,
    /// aws-kms: the key's region.
    #[arg(long, env = "CERTFLEET_KMS_REGION", default_value = "us-east-1")]
    pub kms_region: String,
    /// aws-kms: another endpoint than AWS's (a KMS-compatible service, a proxy).
    #[arg(long, env = "CERTFLEET_KMS_ENDPOINT_URL")]
    pub kms_endpoint_url: Option<String>,
    /// aws-kms: the access key id of the credentials.
    #[arg(long, env = "CERTFLEET_KMS_ACCESS_KEY_ID", hide_env_values = true)]
    pub kms_access_key_id: Option<String>,
    /// aws-kms: the secret access key of the credentials.
    #[arg(long, env = "CERTFLEET_KMS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub kms_secret_access_key: Option<String>,
    /// aws-kms: the session token of temporary credentials.
    #[arg(long, env = "CERTFLEET_KMS_SESSION_TOKEN", hide_env_values = true)]
    pub kms_session_token: Option<String>,
}

impl VaultKeyArgs {
    /// The KMS settings with `key_id` as the key (unchecked).
    pub fn kms_config(&self, key_id: Option<String>) -> AwsKmsConfig {
        AwsKmsConfig {
            key_id: key_id.unwrap_or_default(),
            region: self.kms_region.clone(),
            endpoint_url: self
                .kms_endpoint_url
                .clone()
                .filter(|url| !url.trim().is_empty()),
            access_key_id: self.kms_access_key_id.clone().unwrap_or_default(),
            secret_access_key: self
                .kms_secret_access_key
                .clone()
                .unwrap_or_default()
                .into(),
            session_token: self
                .kms_session_token
                .clone()
                .filter(|token| !token.is_empty())
                .map(Into::into),
        }
    }

    /// The configured KMS key when the provider is `aws-kms`.
    pub fn kms(&self) -> Option<AwsKmsConfig> {
        match self.vault_provider {
            VaultProvider::Local => None,
            VaultProvider::AwsKms => Some(self.kms_config(self.kms_key_id.clone())),
        }
    }
}

/// The vault's key management.
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Re-encrypt every stored data key under a new wrapping key.
    ///
    /// Walks the private keys of all certificate versions and pending orders,
    /// the ACME account keys and the DNS provider secrets, in batches, and
    /// wraps each blob's data key under the key given by --to. The current
    /// key comes from the usual settings (--vault-provider, --master-key-file,
    /// --kms-*) and --previous-master-key-file; blobs already under the new
    /// key are skipped, so an interrupted run is resumed by running it again.
    /// Each rewrapped blob is opened with the new key before it is saved, and
    /// saved only if the row still holds the blob that was read.
    ///
    /// Services may keep running. Before the rewrap, restart them with the new
    /// key as their key and the old one as a previous key (a local master key:
    /// --previous-master-key-file; a KMS key needs nothing, KMS opens a blob
    /// under the key it names). Once the rewrap reports no blob left, the old
    /// key is no longer needed.
    Rewrap(RewrapArgs),
}

#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// The new key: `local:PATH` (a base64 master key file, mode 0600) or
    /// `aws-kms:KEY` (a KMS key id, key ARN or alias/NAME, reached with the
    /// --kms-region, --kms-endpoint-url and credential settings).
    #[arg(long, value_name = "local:PATH|aws-kms:KEY")]
    pub to: String,
    /// Folder of `certfleet dev`/`server`: its database and master key are
    /// the defaults.
    #[arg(long, env = "CERTFLEET_DATA_DIR", default_value = "./certfleet-data")]
    pub data_dir: PathBuf,
    /// Database URL; defaults to SQLite in the data dir. `postgres://…` for PostgreSQL.
    #[arg(long, env = "CERTFLEET_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Rows read per batch.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch_size: i64,
    /// Blobs rewrapped at the same time (each is one or two key-service calls).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Count the blobs that would be rewrapped, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub keys: VaultKeyArgs,
}

/// Runs `certfleet vault …`.
pub async fn run(command: VaultCommand) -> anyhow::Result<ExitCode> {
    match command {
        VaultCommand::Rewrap(args) => rewrap_command(args).await,
    }
}

async fn rewrap_command(args: RewrapArgs) -> anyhow::Result<ExitCode> {
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("certfleet.db").display()));
    let from = current_vault(&args.keys, &args.data_dir).await?;
    let to = target_vault(&args.to, &args.keys).await?;
    let store = Store::connect(&database_url)
        .await
        .context("opening the database")?;
    let target_id = probe_key_id(&to)
        .await
        .with_context(|| format!("--to {}: the new key cannot seal", args.to))?;
    eprintln!(
        "rewrapping data keys from {} to {target_id}{}",
        std::iter::once(from.key_id())
            .chain(from.previous_key_ids())
            .collect::<Vec<_>>()
            .join(", "),
        if args.dry_run { " (dry run)" } else { "" }
    );
    let options = RewrapOptions {
        batch_size: args.batch_size,
        concurrency: usize::from(args.concurrency),
        dry_run: args.dry_run,
    };
    let report = rewrap_all(&store, &from, &to, &target_id, &options, |progress| {
        eprintln!(
            "{}: {} read, {} rewrapped, {} already under the new key, {} failed",
            progress.column.name(),
            progress.read,
            progress.rewrapped,
            progress.already,
            progress.failed
        );
    })
    .await?;
    for failure in &report.failures {
        eprintln!(
            "failed: {} row {}: {}",
            failure.column.name(),
            failure.id,
            failure.error
        );
    }
    println!(
        "{} blobs read, {} rewrapped, {} already under {target_id}, {} changed by a service meanwhile, {} failed in {:.1}s",
        report.read,
        report.rewrapped,
        report.already,
        report.changed,
        report.failures.len(),
        report.elapsed.as_secs_f64()
    );
    if !report.failures.is_empty() || report.changed > 0 {
        eprintln!(
            "not every blob is under the new key yet: fix what failed and run the same command again (done blobs are skipped); keep the old key until a run reports none left"
        );
        return Ok(ExitCode::FAILURE);
    }
    if !args.dry_run {
        eprintln!("every blob is under the new key: the old key is no longer needed");
    }
    Ok(ExitCode::SUCCESS)
}

/// The vault of the usual key settings, with the previous master keys.
pub async fn current_vault(keys: &VaultKeyArgs, data_dir: &Path) -> anyhow::Result<Vault> {
    let wrapper: Arc<dyn KeyWrapper> = match keys.kms() {
        Some(config) => Arc::new(kms_wrapper(&config, None)?),
        None => match &keys.master_key {
            Some(encoded) => {
                Arc::new(LocalMasterKey::from_base64(encoded).context("CERTFLEET_MASTER_KEY")?)
            }
            None => {
                let path = keys
                    .master_key_file
                    .clone()
                    .unwrap_or_else(|| data_dir.join("master.key"));
                Arc::new(
                    LocalMasterKey::load_file(&path)
                        .await
                        .with_context(|| format!("master key {}", path.display()))?,
                )
            }
        },
    };
    Ok(Vault::new(wrapper).with_previous(previous_keys(&keys.previous_master_key_file).await?))
}

/// The earlier master keys given by --previous-master-key-file.
pub async fn previous_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<Arc<dyn KeyWrapper>>> {
    LocalMasterKey::load_previous(paths)
        .await
        .context("--previous-master-key-file (CERTFLEET_PREVIOUS_MASTER_KEY_FILES)")
}

/// The vault of `--to`.
async fn target_vault(spec: &str, keys: &VaultKeyArgs) -> anyhow::Result<Vault> {
    if let Some(path) = spec.strip_prefix("local:") {
        if path.is_empty() {
            bail!(
                "--to {spec:?}: give the master key file after local:, like local:/etc/certfleet/new.key"
            );
        }
        let key = LocalMasterKey::load_file(path)
            .await
            .with_context(|| format!("--to {spec}"))?;
        return Ok(Vault::new(Arc::new(key)));
    }
    if let Some(key_id) = spec.strip_prefix("aws-kms:") {
        let config = keys.kms_config(Some(key_id.to_owned()));
        return Ok(Vault::new(Arc::new(kms_wrapper(&config, Some("--to"))?)));
    }
    bail!("--to {spec:?} is not local:PATH or aws-kms:KEY")
}

/// The KMS wrapper of `config`, checked before anything is written; setting
/// errors name the flag and its variable (the key itself as `key_flag` when
/// it came from another flag, like `--to`), never a secret.
pub(crate) fn kms_wrapper(config: &AwsKmsConfig, key_flag: Option<&str>) -> anyhow::Result<AwsKms> {
    AwsKms::new(config).map_err(|error| match (error, key_flag) {
        (
            VaultError::Setting {
                setting: "kms_key_id",
                message,
            },
            Some(flag),
        ) => anyhow::anyhow!("{flag}: {message}"),
        (VaultError::Setting { setting, message }, _) => anyhow::anyhow!(
            "--{} (CERTFLEET_{}): {message}",
            setting.replace('_', "-"),
            setting.to_ascii_uppercase()
        ),
        (other, _) => anyhow::Error::new(other),
    })
}

/// The key id the vault records in the blobs it seals (a KMS alias resolves
/// to its key's ARN), found by sealing a throw-away value; this also shows
/// the key works before any row is touched.
pub async fn probe_key_id(vault: &Vault) -> anyhow::Result<String> {
    let context = EncryptionContext::new("certfleet", "rewrap-probe", "probe");
    let blob = vault.seal(&context, b"probe").await?;
    vault.open(&context, &blob).await?;
    Ok(Vault::blob_key_id(&blob)?)
}

/// How a rewrap walks the database.
#[derive(Debug, Clone)]
pub struct RewrapOptions {
    pub batch_size: i64,
    pub concurrency: usize,
    pub dry_run: bool,
}

/// Counts of one column so far, reported after each batch.
#[derive(Debug, Clone)]
pub struct RewrapProgress {
    pub column: SealedColumn,
    pub read: u64,
    pub rewrapped: u64,
    pub already: u64,
    pub failed: u64,
}

/// A blob that could not be rewrapped, and why.
#[derive(Debug)]
pub struct RewrapFailure {
    pub column: SealedColumn,
    pub id: String,
    pub error: String,
}

/// What a rewrap did.
#[derive(Debug, Default)]
pub struct RewrapReport {
    pub read: u64,
    pub rewrapped: u64,
    pub already: u64,
    /// Rows a service wrote while they were being rewrapped (left as written).
    pub changed: u64,
    pub failures: Vec<RewrapFailure>,
    pub elapsed: Duration,
}

enum Outcome {
    Rewrapped,
    Already,
    Changed,
    Failed(String),
}

/// Rewraps every sealed blob not yet under `target_id` from `from` to `to`.
/// A blob that fails is reported and the walk goes on; the database and the
/// key services being away stop it (a later run resumes).
pub async fn rewrap_all(
    store: &Store,
    from: &Vault,
    to: &Vault,
    target_id: &str,
    options: &RewrapOptions,
    mut on_batch: impl FnMut(&RewrapProgress),
) -> anyhow::Result<RewrapReport> {
    let started = Instant::now();
    let mut report = RewrapReport::default();
    for column in SealedColumn::ALL {
        let mut progress = RewrapProgress {
            column,
            read: 0,
            rewrapped: 0,
            already: 0,
            failed: 0,
        };
        let mut after = String::new();
        loop {
            let rows = store
                .sealed_page(column, &after, options.batch_size)
                .await
                .with_context(|| format!("reading {}", column.name()))?;
            let Some(last) = rows.last() else { break };
            after = last.id.clone();
            let count = rows.len();
            let outcomes = rewrap_batch(store, from, to, target_id, options, rows).await;
            for (id, outcome) in outcomes {
                progress.read += 1;
                match outcome {
                    Outcome::Rewrapped => progress.rewrapped += 1,
                    Outcome::Already => progress.already += 1,
                    Outcome::Changed => report.changed += 1,
                    Outcome::Failed(error) => {
                        progress.failed += 1;
                        report.failures.push(RewrapFailure { column, id, error });
                    }
                }
            }
            on_batch(&progress);
            if i64::try_from(count).unwrap_or(i64::MAX) < options.batch_size {
                break;
            }
        }
        report.read += progress.read;
        report.rewrapped += progress.rewrapped;
        report.already += progress.already;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One batch, `options.concurrency` blobs at a time.
async fn rewrap_batch(
    store: &Store,
    from: &Vault,
    to: &Vault,
    target_id: &str,
    options: &RewrapOptions,
    rows: Vec<SealedRow>,
) -> Vec<(String, Outcome)> {
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<SealedRow> = rows.by_ref().take(options.concurrency.max(1)).collect();
        if chunk.is_empty() {
            break;
        }
        let results = futures_util::future::join_all(
            chunk
                .into_iter()
                .map(|row| rewrap_one(store, from, to, target_id, options.dry_run, row)),
        )
        .await;
        outcomes.extend(results);
    }
    outcomes
}

async fn rewrap_one(
    store: &Store,
    from: &Vault,
    to: &Vault,
    target_id: &str,
    dry_run: bool,
    row: SealedRow,
) -> (String, Outcome) {
    let outcome = match Vault::blob_key_id(&row.blob) {
        Err(error) => Outcome::Failed(error.to_string()),
        Ok(key_id) if key_id == target_id => Outcome::Already,
        Ok(_) if dry_run => Outcome::Rewrapped,
        Ok(key_id) => {
            let context = match context_of(store, &row).await {
                Ok(context) => context,
                Err(error) => return (row.id, Outcome::Failed(format!("reading: {error}"))),
            };
            match rewrap_with_retry(from, to, &context, &row.blob).await {
                Err(error) => Outcome::Failed(format!("sealed under {key_id}: {error}")),
                Ok(blob) => match store
                    .replace_sealed(row.column, &row.id, &row.blob, &blob)
                    .await
                {
                    Ok(true) => Outcome::Rewrapped,
                    Ok(false) => Outcome::Changed,
                    Err(error) => Outcome::Failed(format!("saving: {error}")),
                },
            }
        }
    };
    (row.id, outcome)
}

/// The encryption context the row's blob was sealed with: a version's key
/// names its version, an order's pending key the version it is for (the
/// next one); keys sealed before versions were bound open under it too.
async fn context_of(
    store: &Store,
    row: &SealedRow,
) -> Result<EncryptionContext, certfleet_store::StoreError> {
    Ok(match row.column {
        SealedColumn::VersionKey => match row.version {
            Some(version) => EncryptionContext::private_key_version(
                &row.organization_id,
                &row.resource_id,
                version,
            ),
            None => EncryptionContext::private_key(&row.organization_id, &row.resource_id),
        },
        SealedColumn::PendingKey => {
            let next = store
                .latest_version_number(&row.organization_id, &row.resource_id)
                .await?
                + 1;
            EncryptionContext::private_key_version(&row.organization_id, &row.resource_id, next)
        }
        SealedColumn::AcmeAccount => {
            EncryptionContext::acme_account(&row.organization_id, &row.resource_id)
        }
        SealedColumn::DnsProviderSecrets => {
            EncryptionContext::dns_provider(&row.organization_id, &row.resource_id)
        }
        SealedColumn::EabHmac => EncryptionContext::eab(&row.organization_id, &row.resource_id),
        SealedColumn::NotificationChannelSecrets => {
            EncryptionContext::notification_channel(&row.organization_id, &row.resource_id)
        }
    })
}

/// A key service that is busy or away is asked again, three times in all.
async fn rewrap_with_retry(
    from: &Vault,
    to: &Vault,
    context: &EncryptionContext,
    blob: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match from.rewrap(context, blob, to).await {
            Err(error) if error.is_transient() && attempt < 3 => {
                tokio::time::sleep(delay).await;
                delay *= 4;
                attempt += 1;
            }
            other => return other,
        }
    }
}
