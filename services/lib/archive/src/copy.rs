//! What a copy holds: plain serde descriptions of the organization,
//! certificate and version, the PEM files and the sealed key; and
//! `metadata.json`, which records all of it with the SHA-256 of each file so
//! a copy read back can be checked file by file.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::ArchiveError;
use crate::layout::{CERT_FILE, CHAIN_FILE, CopyRef, FULLCHAIN_FILE, KEY_FILE};

/// The `format` of the `metadata.json` this crate writes and reads.
pub const FORMAT: u32 = 1;

/// The organization that owns the certificate. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationMeta {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub contact_email: String,
    pub created_at: i64,
}

/// The certificate (the managed name set and how it is issued).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateMeta {
    pub id: String,
    pub primary_name: String,
    pub names: Vec<String>,
    pub wildcard: bool,
    pub key_type: String,
    pub challenge_type: String,
    pub dns_provider_id: Option<String>,
    pub directory_url: String,
    pub profile: Option<String>,
    pub auto_renew: bool,
    pub renew_before_ms: Option<i64>,
    pub created_at: i64,
}

/// One issued version of the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub id: String,
    pub version: i32,
    /// The serial number as the store records it (upper-case hex); it names
    /// the copy's folder.
    pub serial: String,
    pub fingerprint_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    pub key_type: String,
    pub order_url: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<String>,
    /// The configured name of the CA that issued it (absent in copies
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// Everything stored for one version. The private key is only ever the
/// sealed envelope; this crate stores its bytes and never opens them.
#[derive(Clone, PartialEq, Eq)]
pub struct VersionCopy {
    pub organization: OrganizationMeta,
    pub certificate: CertificateMeta,
    pub version: VersionMeta,
    /// The leaf certificate (PEM).
    pub leaf_pem: String,
    /// The intermediates (PEM), possibly empty.
    pub chain_pem: String,
    /// The sealed private key envelope.
    pub key_sealed: Vec<u8>,
}

impl std::fmt::Debug for VersionCopy {
    // The envelope is sealed, but its bytes are no use in a log either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionCopy")
            .field("organization", &self.organization)
            .field("certificate", &self.certificate)
            .field("version", &self.version)
            .field("key_sealed_len", &self.key_sealed.len())
            .finish_non_exhaustive()
    }
}

impl VersionCopy {
    /// Where this copy is stored; fails when an id or the serial cannot be a
    /// path segment.
    pub fn copy_ref(&self) -> Result<CopyRef, ArchiveError> {
        CopyRef::new(
            &self.organization.id,
            &self.certificate.id,
            &self.version.serial,
        )
    }

    /// The leaf followed by the intermediates, with a line break between
    /// them when the leaf lacks one.
    pub fn fullchain_pem(&self) -> String {
        fullchain(&self.leaf_pem, &self.chain_pem)
    }

    /// The files of the copy in writing order, `metadata.json` last.
    pub(crate) fn files(&self) -> Result<[(&'static str, Vec<u8>); 5], ArchiveError> {
        let cert = self.leaf_pem.as_bytes().to_vec();
        let chain = self.chain_pem.as_bytes().to_vec();
        let fullchain = self.fullchain_pem().into_bytes();
        let metadata = Metadata {
            format: FORMAT,
            organization: self.organization.clone(),
            certificate: self.certificate.clone(),
            version: self.version.clone(),
            sha256: Digests {
                cert_pem: sha256_hex(&cert),
                chain_pem: sha256_hex(&chain),
                fullchain_pem: sha256_hex(&fullchain),
                privkey_enc: sha256_hex(&self.key_sealed),
            },
        };
        let mut metadata =
            serde_json::to_vec_pretty(&metadata).map_err(|error| ArchiveError::InvalidCopy {
                field: "metadata",
                message: format!("cannot be written as JSON: {error}"),
            })?;
        metadata.push(b'\n');
        Ok([
            (CERT_FILE, cert),
            (CHAIN_FILE, chain),
            (FULLCHAIN_FILE, fullchain),
            (KEY_FILE, self.key_sealed.clone()),
            (crate::layout::METADATA_FILE, metadata),
        ])
    }
}

fn fullchain(leaf: &str, chain: &str) -> String {
    let mut text = String::with_capacity(leaf.len() + chain.len() + 1);
    text.push_str(leaf);
    if !leaf.is_empty() && !leaf.ends_with('\n') && !chain.is_empty() {
        text.push('\n');
    }
    text.push_str(chain);
    text
}

/// The lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The contents of `metadata.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metadata {
    format: u32,
    organization: OrganizationMeta,
    certificate: CertificateMeta,
    version: VersionMeta,
    sha256: Digests,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Digests {
    #[serde(rename = "cert.pem")]
    cert_pem: String,
    #[serde(rename = "chain.pem")]
    chain_pem: String,
    #[serde(rename = "fullchain.pem")]
    fullchain_pem: String,
    #[serde(rename = "privkey.enc")]
    privkey_enc: String,
}

impl Metadata {
    /// Reads `metadata.json` of the copy `copy`; `path` names it in errors.
    pub(crate) fn parse(
        path: &str,
        bytes: &[u8],
        copy: &CopyRef,
    ) -> Result<Metadata, ArchiveError> {
        let metadata: Metadata = serde_json::from_slice(bytes)
            .map_err(|error| ArchiveError::corrupt(path, format!("not readable: {error}")))?;
        if metadata.format != FORMAT {
            return Err(ArchiveError::corrupt(
                path,
                format!(
                    "format {} is not known (this build reads format {FORMAT})",
                    metadata.format
                ),
            ));
        }
        let described = CopyRef::new(
            &metadata.organization.id,
            &metadata.certificate.id,
            &metadata.version.serial,
        )
        .map_err(|error| ArchiveError::corrupt(path, error.to_string()))?;
        if &described != copy {
            return Err(ArchiveError::corrupt(
                path,
                format!("it describes {described}, not the folder it is in"),
            ));
        }
        Ok(metadata)
    }

    /// The recorded SHA-256 (hex) of `file`.
    pub(crate) fn digest_of(&self, file: &str) -> Option<&str> {
        let digests = &self.sha256;
        match file {
            CERT_FILE => Some(&digests.cert_pem),
            CHAIN_FILE => Some(&digests.chain_pem),
            FULLCHAIN_FILE => Some(&digests.fullchain_pem),
            KEY_FILE => Some(&digests.privkey_enc),
            _ => None,
        }
    }

    /// Checks `bytes` of `file` against its recorded digest.
    pub(crate) fn verify(&self, file: &str, path: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        let expected = self
            .digest_of(file)
            .ok_or_else(|| ArchiveError::corrupt(path, "metadata.json records no digest for it"))?;
        let actual = sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(ArchiveError::corrupt(
                path,
                format!("its SHA-256 is {actual}, metadata.json records {expected}"),
            ));
        }
        Ok(())
    }

    /// The copy from verified file contents; `path_of` names a file in errors.
    pub(crate) fn into_copy(
        self,
        cert: Vec<u8>,
        chain: Vec<u8>,
        fullchain_bytes: &[u8],
        key_sealed: Vec<u8>,
        path_of: impl Fn(&str) -> String,
    ) -> Result<VersionCopy, ArchiveError> {
        let text = |file: &str, bytes: Vec<u8>| {
            String::from_utf8(bytes)
                .map_err(|_| ArchiveError::corrupt(path_of(file), "not UTF-8 text"))
        };
        let leaf_pem = text(CERT_FILE, cert)?;
        let chain_pem = text(CHAIN_FILE, chain)?;
        if fullchain(&leaf_pem, &chain_pem).as_bytes() != fullchain_bytes {
            return Err(ArchiveError::corrupt(
                path_of(FULLCHAIN_FILE),
                "it is not cert.pem followed by chain.pem",
            ));
        }
        Ok(VersionCopy {
            organization: self.organization,
            certificate: self.certificate,
            version: self.version,
            leaf_pem,
            chain_pem,
            key_sealed,
        })
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
pub(crate) mod tests {
    use super::*;
    use crate::layout::METADATA_FILE;

    pub(crate) fn sample() -> VersionCopy {
        VersionCopy {
            organization: OrganizationMeta {
                id: "org-1".to_owned(),
                slug: "acme".to_owned(),
                name: "Acme".to_owned(),
                contact_email: "ops@example.com".to_owned(),
                created_at: 1_700_000_000_000,
            },
            certificate: CertificateMeta {
                id: "cert-1".to_owned(),
                primary_name: "example.com".to_owned(),
                names: vec!["example.com".to_owned(), "www.example.com".to_owned()],
                wildcard: false,
                key_type: "ecdsa-p256".to_owned(),
                challenge_type: "http-01".to_owned(),
                dns_provider_id: None,
                directory_url: "https://acme.example/dir".to_owned(),
                profile: Some("shortlived".to_owned()),
                auto_renew: true,
                renew_before_ms: Some(86_400_000),
                created_at: 1_700_000_000_001,
            },
            version: VersionMeta {
                id: "ver-1".to_owned(),
                version: 3,
                serial: "0A1B2C".to_owned(),
                fingerprint_sha256: "ab".repeat(32),
                not_before: 1_700_000_000_000,
                not_after: 1_707_776_000_000,
                key_type: "ecdsa-p256".to_owned(),
                order_url: "https://acme.example/order/1".to_owned(),
                created_at: 1_700_000_000_002,
                revoked_at: None,
                revocation_reason: None,
                issuer: None,
            },
            leaf_pem: "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----".to_owned(),
            chain_pem: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".to_owned(),
            key_sealed: vec![b'C', b'F', b'V', b'1', 0, 0xff, 7],
        }
    }

    #[test]
    fn metadata_records_every_file_and_reads_back() {
        let copy = sample();
        let files = copy.files().unwrap();
        let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, crate::layout::FILES);
        let fullchain = &files[2].1;
        assert_eq!(
            fullchain.as_slice(),
            format!("{}\n{}", copy.leaf_pem, copy.chain_pem).as_bytes()
        );
        let json: serde_json::Value = serde_json::from_slice(&files[4].1).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["sha256"]["privkey.enc"], sha256_hex(&copy.key_sealed));
        assert_eq!(json["version"]["serial"], "0A1B2C");

        let at = copy.copy_ref().unwrap();
        let metadata = Metadata::parse(METADATA_FILE, &files[4].1, &at).unwrap();
        for (name, bytes) in &files[..4] {
            metadata.verify(name, name, bytes).unwrap();
        }
        let error = metadata
            .verify(CERT_FILE, "x/cert.pem", b"changed")
            .unwrap_err();
        assert!(
            error.to_string().starts_with("x/cert.pem is corrupt"),
            "{error}"
        );
        let back = metadata
            .into_copy(
                files[0].1.clone(),
                files[1].1.clone(),
                fullchain,
                files[3].1.clone(),
                str::to_owned,
            )
            .unwrap();
        assert_eq!(back, copy);
    }

    #[test]
    fn metadata_of_another_folder_or_format_is_corrupt() {
        let copy = sample();
        let files = copy.files().unwrap();
        let elsewhere = CopyRef::new("org-1", "cert-1", "FFFF").unwrap();
        let error = Metadata::parse("m.json", &files[4].1, &elsewhere).unwrap_err();
        assert!(
            error.to_string().contains("describes org-1/cert-1/0A1B2C"),
            "{error}"
        );

        let mut json: serde_json::Value = serde_json::from_slice(&files[4].1).unwrap();
        json["format"] = 2.into();
        let bytes = serde_json::to_vec(&json).unwrap();
        let error = Metadata::parse("m.json", &bytes, &copy.copy_ref().unwrap()).unwrap_err();
        assert!(
            error.to_string().contains("format 2 is not known"),
            "{error}"
        );
    }

    #[test]
    fn debug_leaves_the_envelope_out() {
        let text = format!("{:?}", sample());
        assert!(text.contains("key_sealed_len: 7"), "{text}");
        assert!(!text.contains("LEAF"), "{text}");
    }
}
