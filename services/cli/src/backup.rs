//! `certfleet backup verify` and `certfleet restore`: proving that the archive
//! (the copy of every issued version in a folder or an S3 bucket) can rebuild
//! the database, and rebuilding it. Both work on the database and the archive
//! directly, like `migrate`, and open each sealed key with the vault, so a
//! copy that verifies is one that restores.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use certfleet_archive::{Archive, ArchiveError, CopyRef, VersionCopy};
use certfleet_core::{Clock as _, SystemClock};
use certfleet_store::restore::{CertificateBackup, Restored, VersionToVerify};
use certfleet_store::{Certificate, CertificateVersion, Organization, Store};
use certfleet_vault::{EncryptionContext, Vault};
use clap::{Args, Subcommand};

use crate::archive::ArchiveArgs;
use crate::vault::{VaultKeyArgs, current_vault};

/// Versions read from the database per query, and between progress lines.
const PAGE: i64 = 100;

/// Checks of the archive.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check that every certificate in use could be restored from the archive.
    ///
    /// For every version of every certificate that is neither deleted, revoked
    /// nor expired, reads its copy from the archive (--archive-location,
    /// default <data-dir>/backups), checks each file against the checksums in
    /// its metadata.json, compares the certificate, fingerprint and sealed
    /// key with the database, and opens the sealed key with the vault key to
    /// check it belongs to the certificate.
    ///
    /// Prints one line per problem (organization/certificate/serial and why)
    /// and a summary. Exit status 0 when every copy is good, 1 otherwise.
    /// Read-only: changes nothing in the database or the archive.
    Verify(VerifyArgs),
}

/// `certfleet backup verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Folder of `certfleet dev`/`server`: its database, master key and
    /// backups folder are the defaults.
    #[arg(long, env = "CERTFLEET_DATA_DIR", default_value = "./certfleet-data")]
    pub data_dir: PathBuf,
    /// Database URL; defaults to SQLite in the data dir. `postgres://…` for PostgreSQL.
    #[arg(long, env = "CERTFLEET_DATABASE_URL")]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[command(flatten)]
    pub keys: VaultKeyArgs,
}

/// `certfleet restore`.
#[derive(Debug, Args)]
#[command(mut_arg("archive_location", |arg| arg.hide(true)))]
pub struct RestoreArgs {
    /// The archive to restore from: a folder, or `s3://BUCKET/PREFIX` (then
    /// with the --archive-s3-* settings).
    #[arg(long, value_name = "FOLDER|s3://BUCKET/PREFIX")]
    pub from: String,
    /// Folder of `certfleet dev`/`server`: its database and master key are
    /// the defaults.
    #[arg(long, env = "CERTFLEET_DATA_DIR", default_value = "./certfleet-data")]
    pub data_dir: PathBuf,
    /// Database URL to restore into; defaults to SQLite in the data dir.
    /// `postgres://…` for PostgreSQL. The database is migrated first.
    #[arg(long, env = "CERTFLEET_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Restore into a database that already holds organizations: rows whose
    /// id exists are left as they are, the rest is added.
    #[arg(long)]
    pub merge: bool,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[command(flatten)]
    pub keys: VaultKeyArgs,
}

/// Runs `certfleet backup …`.
pub async fn run(command: BackupCommand) -> anyhow::Result<ExitCode> {
    match command {
        BackupCommand::Verify(args) => verify_command(args).await,
    }
}

fn database_url(given: Option<&String>, data_dir: &std::path::Path) -> String {
    given
        .cloned()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("certfleet.db").display()))
}

async fn verify_command(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let url = database_url(args.database_url.as_ref(), &args.data_dir);
    let Some(config) = args.archive.config(Some(&args.data_dir.join("backups")))? else {
        bail!("--archive-location is none: there is no archive to verify");
    };
    let archive = Archive::open(&config)?;
    let vault = current_vault(&args.keys, &args.data_dir).await?;
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening the database {}", describe_database(&url)))?;
    eprintln!("verifying the copies in {}", archive.describe());
    let report = verify(&store, &archive, &vault, SystemClock.now_ms(), |checked| {
        eprintln!("{checked} versions checked");
    })
    .await?;
    for problem in &report.problems {
        println!("{problem}");
    }
    println!(
        "{} versions checked: {} restorable, {} with a problem",
        report.checked,
        report.checked.saturating_sub(report.problems.len() as u64),
        report.problems.len()
    );
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `certfleet restore`.
pub async fn restore_command(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let url = database_url(args.database_url.as_ref(), &args.data_dir);
    let config = args.archive.location(args.from.trim())?;
    let archive = Archive::open(&config).context("--from")?;
    let vault = current_vault(&args.keys, &args.data_dir).await?;
    if args.database_url.is_none() {
        tokio::fs::create_dir_all(&args.data_dir)
            .await
            .with_context(|| format!("--data-dir {}", args.data_dir.display()))?;
    }
    let database = describe_database(&url);
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening the database {database}"))?;
    eprintln!("restoring from {} into {database}", archive.describe());
    let options = RestoreOptions {
        merge: args.merge,
        database,
    };
    let report = restore(&store, &archive, &vault, SystemClock.now_ms(), &options).await?;
    for skipped in &report.skipped {
        println!("skipped {skipped}");
    }
    println!("{report}");
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A database URL without its credentials, for messages.
pub fn describe_database(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// One copy (or certificate) that is not as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `organization/certificate/serial`.
    pub copy: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.copy, self.reason)
    }
}

/// What `backup verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Versions checked.
    pub checked: u64,
    pub problems: Vec<Problem>,
}

/// Checks the copy of every valid version of a live certificate (see
/// [`BackupCommand::Verify`]); `progress` is called every [`PAGE`] versions.
pub async fn verify(
    store: &Store,
    archive: &Archive,
    vault: &Vault,
    now_ms: i64,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .versions_to_verify(now_ms, after.as_deref(), PAGE)
            .await
            .context("reading the certificate versions")?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.version.id.clone());
        for row in &page {
            if let Err(reason) = verify_version(archive, vault, row).await {
                report.problems.push(Problem {
                    copy: copy_name(&row.version),
                    reason,
                });
            }
            report.checked += 1;
            if report.checked.is_multiple_of(PAGE as u64) {
                progress(report.checked);
            }
        }
    }
    report.problems.sort_by(|a, b| a.copy.cmp(&b.copy));
    Ok(report)
}

fn copy_name(version: &CertificateVersion) -> String {
    format!(
        "{}/{}/{}",
        version.organization_id, version.certificate_id, version.serial
    )
}

async fn verify_version(
    archive: &Archive,
    vault: &Vault,
    row: &VersionToVerify,
) -> Result<(), String> {
    let version = &row.version;
    let at = CopyRef::new(
        &version.organization_id,
        &version.certificate_id,
        &version.serial,
    )
    .map_err(|error| format!("cannot be archived: {error}"))?;
    let copy = match archive.get(&at).await {
        Ok(copy) => copy,
        Err(error) => return Err(format!("{error}{}", recorded_state(row))),
    };
    if copy.leaf_pem != version.leaf_pem {
        return Err(format!(
            "{} differs from the certificate in the database",
            certfleet_archive::CERT_FILE
        ));
    }
    if !copy
        .version
        .fingerprint_sha256
        .eq_ignore_ascii_case(&version.fingerprint_sha256)
    {
        return Err(format!(
            "{} records fingerprint {}, the database {}",
            certfleet_archive::METADATA_FILE,
            copy.version.fingerprint_sha256,
            version.fingerprint_sha256
        ));
    }
    if copy.key_sealed != version.key_sealed {
        return Err(format!(
            "{} differs from the sealed key in the database",
            certfleet_archive::KEY_FILE
        ));
    }
    check_copy(vault, &copy).await
}

/// Why the database holds no copy of a version yet, after a failed read.
fn recorded_state(row: &VersionToVerify) -> String {
    if row.version.backup_location.is_some() {
        return String::new();
    }
    match &row.backup_error {
        Some(error) => format!(
            " (no copy recorded; last backup error after {} attempts: {error})",
            row.backup_attempts
        ),
        None => " (no copy recorded and no backup attempt failed yet)".to_owned(),
    }
}

/// Checks that a copy read back is one certificate and its key: cert.pem
/// has the serial and fingerprint metadata.json records, and privkey.enc
/// opens with the vault to the private key of that certificate.
pub async fn check_copy(vault: &Vault, copy: &VersionCopy) -> Result<(), String> {
    let parsed = certfleet_acme::parse_chain(&copy.leaf_pem)
        .map_err(|error| format!("{} cannot be read: {error}", certfleet_archive::CERT_FILE))?;
    if parsed.serial != copy.version.serial {
        return Err(format!(
            "{} has serial {}, metadata.json records {}",
            certfleet_archive::CERT_FILE,
            parsed.serial,
            copy.version.serial
        ));
    }
    if !parsed
        .fingerprint_sha256
        .eq_ignore_ascii_case(&copy.version.fingerprint_sha256)
    {
        return Err(format!(
            "{} has fingerprint {}, metadata.json records {}",
            certfleet_archive::CERT_FILE,
            parsed.fingerprint_sha256,
            copy.version.fingerprint_sha256
        ));
    }
    let context = EncryptionContext::private_key_version(
        &copy.organization.id,
        &copy.certificate.id,
        copy.version.version,
    );
    let key = vault
        .open(&context, &copy.key_sealed)
        .await
        .map_err(|error| {
            format!(
                "{} cannot be opened with the vault key: {error}",
                certfleet_archive::KEY_FILE
            )
        })?;
    let key_pem = std::str::from_utf8(&key)
        .map_err(|_| format!("{} does not hold a PEM key", certfleet_archive::KEY_FILE))?;
    key_matches(key_pem, &parsed.public_key_der)
}

/// Whether the PKCS#8 PEM `key_pem` is the private key of the public key
/// `public_key_der` (a DER SubjectPublicKeyInfo).
pub fn key_matches(key_pem: &str, public_key_der: &[u8]) -> Result<(), String> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|error| {
        format!(
            "{} does not hold a PKCS#8 private key: {error}",
            certfleet_archive::KEY_FILE
        )
    })?;
    if rcgen::PublicKeyData::subject_public_key_info(&key) != public_key_der {
        return Err(format!(
            "the key in {} does not match the certificate's public key",
            certfleet_archive::KEY_FILE
        ));
    }
    Ok(())
}

/// How `restore` treats the target database.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Add to a database that holds organizations already.
    pub merge: bool,
    /// The database for messages (no credentials).
    pub database: String,
}

/// What `restore` did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    pub organizations: u64,
    pub certificates: u64,
    pub versions: u64,
    /// Rows already there (with --merge), left as they were.
    pub existing: u64,
    pub skipped: Vec<Problem>,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "restored {} organizations, {} certificates, {} versions; {} rows already there; {} copies skipped",
            self.organizations,
            self.certificates,
            self.versions,
            self.existing,
            self.skipped.len()
        )
    }
}

/// Restores every readable copy of `archive` into `store` (migrated first).
/// A copy that is missing a file, altered, or whose key does not open or
/// match is skipped and reported; each certificate is written with its
/// versions in one transaction. Refuses a database with organizations
/// unless `options.merge`.
pub async fn restore(
    store: &Store,
    archive: &Archive,
    vault: &Vault,
    now_ms: i64,
    options: &RestoreOptions,
) -> anyhow::Result<RestoreReport> {
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", options.database))?;
    if !options.merge && !store.is_empty().await? {
        bail!(
            "the database {} already holds organizations: restore into an empty database, or give --merge to add only what is missing",
            options.database
        );
    }
    let copies = archive
        .list()
        .await
        .with_context(|| format!("listing {}", archive.describe()))?;
    let mut report = RestoreReport::default();
    // Whether each organization was written (or found), or why it was not.
    let mut organizations: HashMap<String, Result<(), String>> = HashMap::new();
    for group in copies.chunk_by(|a, b| {
        a.organization_id() == b.organization_id() && a.certificate_id() == b.certificate_id()
    }) {
        let mut good: Vec<(VersionCopy, String)> = Vec::with_capacity(group.len());
        for at in group {
            match read_copy(archive, vault, at).await {
                Ok(copy) => good.push((copy, archive.location_of(at))),
                Err(reason) => report.skipped.push(Problem {
                    copy: at.to_string(),
                    reason,
                }),
            }
        }
        let Some(newest) = good.iter().max_by_key(|(copy, _)| copy.version.version) else {
            continue;
        };
        let newest = newest.0.clone();
        let skip_all = |report: &mut RestoreReport, reason: &str| {
            for (copy, _) in &good {
                report.skipped.push(Problem {
                    copy: copy_ref_name(copy),
                    reason: reason.to_owned(),
                });
            }
        };
        let organization = organizations
            .entry(newest.organization.id.clone())
            .or_insert(Err(String::new()));
        if organization.as_ref().is_err_and(String::is_empty) {
            *organization = match store
                .restore_organization(organization_row(&newest), now_ms)
                .await
            {
                Ok(Restored::Inserted) => {
                    report.organizations += 1;
                    Ok(())
                }
                Ok(Restored::Existed) => {
                    report.existing += 1;
                    Ok(())
                }
                Err(error) => Err(format!(
                    "organization {} cannot be restored: {error}",
                    newest.organization.id
                )),
            };
        }
        if let Err(reason) = organization.clone() {
            skip_all(&mut report, &reason);
            continue;
        }
        let versions = good
            .iter()
            .map(|(copy, location)| version_row(copy, location))
            .collect();
        let backup = match CertificateBackup::new(certificate_row(&newest), versions) {
            Ok(backup) => backup,
            Err(reason) => {
                skip_all(&mut report, &reason);
                continue;
            }
        };
        match store.restore_certificate(backup, now_ms).await {
            Ok(outcome) => {
                match outcome.certificate {
                    Restored::Inserted => report.certificates += 1,
                    Restored::Existed => report.existing += 1,
                }
                report.versions += outcome.versions_inserted.len() as u64;
                report.existing += outcome.versions_existed.len() as u64;
            }
            Err(error) => skip_all(
                &mut report,
                &format!(
                    "certificate {} cannot be restored: {error}",
                    newest.certificate.id
                ),
            ),
        }
    }
    Ok(report)
}

fn copy_ref_name(copy: &VersionCopy) -> String {
    format!(
        "{}/{}/{}",
        copy.organization.id, copy.certificate.id, copy.version.serial
    )
}

/// The copy at `at`, read and checked; why not otherwise.
async fn read_copy(archive: &Archive, vault: &Vault, at: &CopyRef) -> Result<VersionCopy, String> {
    let copy = archive.get(at).await.map_err(|error| match error {
        ArchiveError::Missing { .. } | ArchiveError::Corrupt { .. } => error.to_string(),
        other => format!("cannot be read: {other}"),
    })?;
    check_copy(vault, &copy).await?;
    Ok(copy)
}

fn organization_row(copy: &VersionCopy) -> Organization {
    let meta = &copy.organization;
    Organization {
        id: meta.id.clone(),
        slug: meta.slug.clone(),
        name: meta.name.clone(),
        contact_email: meta.contact_email.clone(),
        created_at: meta.created_at,
        deleted_at: None,
    }
}

/// The certificate's settings from a copy; its state is derived by the store.
fn certificate_row(copy: &VersionCopy) -> Certificate {
    let meta = &copy.certificate;
    let mut sorted: Vec<&str> = meta.names.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    Certificate {
        id: meta.id.clone(),
        organization_id: copy.organization.id.clone(),
        primary_name: meta.primary_name.clone(),
        names: meta.names.join(","),
        names_key: sorted.join(","),
        wildcard: meta.wildcard,
        key_type: meta.key_type.clone(),
        challenge_type: meta.challenge_type.clone(),
        dns_provider_id: meta.dns_provider_id.clone(),
        directory_url: meta.directory_url.clone(),
        profile: meta.profile.clone(),
        status: String::new(),
        auto_renew: meta.auto_renew,
        renew_before_ms: meta.renew_before_ms,
        renew_at: None,
        next_attempt_at: None,
        attempts: 0,
        last_error: None,
        current_version_id: None,
        not_after: None,
        pending_order_url: None,
        pending_reason: None,
        pending_key_sealed: None,
        order_attempt_at: None,
        lease_owner: None,
        lease_until: None,
        deleted_at: None,
        created_at: meta.created_at,
        updated_at: meta.created_at,
        renew_reason: None,
        waiting_reason: None,
        ari_next_at: None,
    }
}

fn version_row(copy: &VersionCopy, location: &str) -> CertificateVersion {
    let meta = &copy.version;
    CertificateVersion {
        id: meta.id.clone(),
        certificate_id: copy.certificate.id.clone(),
        organization_id: copy.organization.id.clone(),
        version: meta.version,
        serial: meta.serial.clone(),
        fingerprint_sha256: meta.fingerprint_sha256.clone(),
        not_before: meta.not_before,
        not_after: meta.not_after,
        leaf_pem: copy.leaf_pem.clone(),
        chain_pem: copy.chain_pem.clone(),
        key_sealed: copy.key_sealed.clone(),
        key_type: meta.key_type.clone(),
        order_url: meta.order_url.clone(),
        ari_start: None,
        ari_end: None,
        revoked_at: meta.revoked_at,
        revocation_reason: meta.revocation_reason.clone(),
        backup_location: Some(location.to_owned()),
        backup_at: None,
        backup_error: None,
        backup_attempts: 0,
        backup_next_at: None,
        issuer: meta.issuer.clone(),
        created_at: meta.created_at,
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn self_signed() -> (rcgen::KeyPair, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (key, certificate.pem())
    }

    #[test]
    fn a_key_matches_only_its_certificate() {
        let (key, pem) = self_signed();
        let (other, _) = self_signed();
        let public_key = certfleet_acme::parse_chain(&pem).unwrap().public_key_der;
        assert_eq!(key_matches(&key.serialize_pem(), &public_key), Ok(()));
        let error = key_matches(&other.serialize_pem(), &public_key).unwrap_err();
        assert!(error.contains("does not match"), "{error}");
        let error = key_matches("not a key", &public_key).unwrap_err();
        assert!(error.starts_with("privkey.enc does not hold"), "{error}");
    }

    #[test]
    fn database_urls_lose_their_credentials() {
        assert_eq!(
            describe_database("postgres://user:secret@db:5432/certfleet"),
            "postgres://db:5432/certfleet"
        );
        assert_eq!(
            describe_database("sqlite:///var/lib/certfleet.db"),
            "sqlite:///var/lib/certfleet.db"
        );
    }

    #[test]
    fn a_missing_copy_says_why_none_was_recorded() {
        let version = CertificateVersion {
            id: "v".to_owned(),
            certificate_id: "c".to_owned(),
            organization_id: "o".to_owned(),
            version: 1,
            serial: "01".to_owned(),
            fingerprint_sha256: String::new(),
            not_before: 0,
            not_after: 1,
            leaf_pem: String::new(),
            chain_pem: String::new(),
            key_sealed: Vec::new(),
            key_type: String::new(),
            order_url: String::new(),
            ari_start: None,
            ari_end: None,
            revoked_at: None,
            revocation_reason: None,
            backup_location: None,
            backup_at: None,
            backup_error: None,
            backup_attempts: 0,
            backup_next_at: None,
            issuer: None,
            created_at: 0,
        };
        let mut row = VersionToVerify {
            version,
            backup_at: None,
            backup_error: Some("access denied".to_owned()),
            backup_attempts: 3,
        };
        assert_eq!(
            recorded_state(&row),
            " (no copy recorded; last backup error after 3 attempts: access denied)"
        );
        row.version.backup_location = Some("s3://b/o/c/01/".to_owned());
        assert_eq!(recorded_state(&row), "");
        assert_eq!(copy_name(&row.version), "o/c/01");
    }
}
