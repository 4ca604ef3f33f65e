//! A copy of each issued certificate version, kept outside the database in a
//! folder or an S3 bucket, and read back to verify or restore it.
//!
//! Each version lives in `{root}/{organization_id}/{certificate_id}/{serial}/`
//! as `cert.pem`, `chain.pem`, `fullchain.pem`, `privkey.enc` (the sealed
//! envelope as given; never plaintext) and `metadata.json`, written last, so
//! its presence marks a complete copy. `metadata.json` holds the
//! organization, certificate and version descriptions and the SHA-256 of the
//! other four files; reading a copy checks every one.
//!
//! The crate knows nothing of the store or the vault: it takes and gives plain
//! serde structs and bytes.

mod config;
mod copy;
mod dir;
mod error;
mod layout;
mod s3;

pub use config::{ArchiveConfig, LOCATION_SETTING, Location, S3Access, S3Config, parse_location};
pub use copy::{CertificateMeta, FORMAT, OrganizationMeta, VersionCopy, VersionMeta};
pub use error::ArchiveError;
pub use layout::{CERT_FILE, CHAIN_FILE, CopyRef, FILES, FULLCHAIN_FILE, KEY_FILE, METADATA_FILE};

use copy::Metadata;
use dir::DirArchive;
use s3::S3Archive;

/// The archive: a folder or a bucket.
#[derive(Debug)]
pub struct Archive {
    provider: Provider,
}

#[derive(Debug)]
enum Provider {
    Dir(DirArchive),
    S3(S3Archive),
}

impl Archive {
    /// Checks the settings and builds the provider; no I/O (a missing folder
    /// is created by the first [`Archive::put`], a bucket must exist).
    pub fn open(config: &ArchiveConfig) -> Result<Archive, ArchiveError> {
        config.check()?;
        let provider = match config {
            ArchiveConfig::Dir { path } => Provider::Dir(DirArchive::new(path)?),
            ArchiveConfig::S3(s3) => Provider::S3(S3Archive::new(s3)?),
        };
        Ok(Archive { provider })
    }

    /// How many keys one S3 list request asks for (1 to 1000, the default);
    /// no effect on a folder. Small pages suit tests.
    #[must_use]
    pub fn with_list_page_size(mut self, page_size: i32) -> Archive {
        if let Provider::S3(s3) = &mut self.provider {
            s3.set_page_size(page_size);
        }
        self
    }

    /// Stores `copy` and returns its location (see [`Archive::location_of`]).
    ///
    /// Idempotent: storing the same version again replaces each file
    /// atomically. When the stored `metadata.json` differs from the new one,
    /// it is removed first, so a half-replaced copy never looks complete.
    pub async fn put(&self, copy: &VersionCopy) -> Result<String, ArchiveError> {
        let at = copy.copy_ref()?;
        let files = copy.files()?;
        let [.., (_, metadata)] = &files;
        if let Some(stored) = self.read(&at, METADATA_FILE).await?
            && &stored != metadata
        {
            self.remove(&at, METADATA_FILE).await?;
        }
        for (file, bytes) in files {
            self.write(&at, file, bytes).await?;
        }
        let location = self.location_of(&at);
        tracing::info!(
            location,
            version = copy.version.version,
            "archived a certificate version"
        );
        Ok(location)
    }

    /// Every `{org}/{cert}/{serial}` with at least one file, complete or not,
    /// in order.
    pub async fn list(&self) -> Result<Vec<CopyRef>, ArchiveError> {
        match &self.provider {
            Provider::Dir(dir) => dir.list().await,
            Provider::S3(s3) => s3.list().await,
        }
    }

    /// Reads the copy at `at` and checks every file against `metadata.json`;
    /// a missing or altered file is an error naming it.
    pub async fn get(&self, at: &CopyRef) -> Result<VersionCopy, ArchiveError> {
        let metadata_bytes = self.require(at, METADATA_FILE).await?;
        let metadata = Metadata::parse(&self.path_of(at, METADATA_FILE), &metadata_bytes, at)?;
        let cert = self.verified(at, &metadata, CERT_FILE).await?;
        let chain = self.verified(at, &metadata, CHAIN_FILE).await?;
        let fullchain = self.verified(at, &metadata, FULLCHAIN_FILE).await?;
        let key = self.verified(at, &metadata, KEY_FILE).await?;
        metadata.into_copy(cert, chain, &fullchain, key, |file| self.path_of(at, file))
    }

    /// Where the copy `at` is, as a URL of its folder:
    /// `s3://bucket/prefix/org/cert/serial/` or `file:///root/org/cert/serial/`.
    pub fn location_of(&self, at: &CopyRef) -> String {
        match &self.provider {
            Provider::Dir(dir) => dir.location_of(at),
            Provider::S3(s3) => s3.location_of(at),
        }
    }

    /// The archive in a few words for logs; no secrets.
    pub fn describe(&self) -> String {
        match &self.provider {
            Provider::Dir(dir) => format!("folder {}", dir.root().display()),
            Provider::S3(s3) => s3.describe(),
        }
    }

    /// The path (or `s3://` URL) of `file` of the copy, for messages.
    fn path_of(&self, at: &CopyRef, file: &str) -> String {
        match &self.provider {
            Provider::Dir(dir) => dir.path_of(at, file).display().to_string(),
            Provider::S3(s3) => s3.path_of(at, file),
        }
    }

    async fn read(
        &self,
        at: &CopyRef,
        file: &'static str,
    ) -> Result<Option<Vec<u8>>, ArchiveError> {
        match &self.provider {
            Provider::Dir(dir) => dir.read(at, file).await,
            Provider::S3(s3) => s3.read(at, file).await,
        }
    }

    async fn require(&self, at: &CopyRef, file: &'static str) -> Result<Vec<u8>, ArchiveError> {
        self.read(at, file)
            .await?
            .ok_or_else(|| ArchiveError::Missing {
                path: self.path_of(at, file),
            })
    }

    /// The bytes of `file`, checked against `metadata.json`.
    async fn verified(
        &self,
        at: &CopyRef,
        metadata: &Metadata,
        file: &'static str,
    ) -> Result<Vec<u8>, ArchiveError> {
        let bytes = self.require(at, file).await?;
        metadata.verify(file, &self.path_of(at, file), &bytes)?;
        Ok(bytes)
    }

    async fn write(
        &self,
        at: &CopyRef,
        file: &'static str,
        bytes: Vec<u8>,
    ) -> Result<(), ArchiveError> {
        match &self.provider {
            Provider::Dir(dir) => dir.write(at, file, bytes).await,
            Provider::S3(s3) => s3.write(at, file, bytes).await,
        }
    }

    async fn remove(&self, at: &CopyRef, file: &'static str) -> Result<(), ArchiveError> {
        match &self.provider {
            Provider::Dir(dir) => dir.remove(at, file).await,
            Provider::S3(s3) => s3.remove(at, file).await,
        }
    }
}
