//! Where a copy lives: `{org}/{certificate}/{serial}/` under the root (a
//! folder or a bucket prefix), with five files of fixed names. Ids and
//! serials are checked to be plain path segments, so no copy can name a path
//! outside its own folder.

use std::fmt;

use crate::error::ArchiveError;

/// The leaf certificate (PEM).
pub const CERT_FILE: &str = "cert.pem";
/// The intermediates (PEM).
pub const CHAIN_FILE: &str = "chain.pem";
/// The leaf followed by the intermediates (PEM).
pub const FULLCHAIN_FILE: &str = "fullchain.pem";
/// The sealed private key envelope, stored as given.
pub const KEY_FILE: &str = "privkey.enc";
/// The description of the copy with the SHA-256 of the other files; written
/// last, so its presence marks a complete copy.
pub const METADATA_FILE: &str = "metadata.json";

/// Every file of a copy, in the order they are written (metadata last).
pub const FILES: [&str; 5] = [
    CERT_FILE,
    CHAIN_FILE,
    FULLCHAIN_FILE,
    KEY_FILE,
    METADATA_FILE,
];

const MAX_SEGMENT_LEN: usize = 128;

/// One stored version: the organization, certificate and serial that make
/// its folder. Built only from valid path segments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CopyRef {
    organization_id: String,
    certificate_id: String,
    serial: String,
}

impl CopyRef {
    /// Checks that each part is a plain path segment: 1 to 128 of ASCII
    /// letters, digits, `-`, `_`, `.` and `:`, not starting with a dot.
    pub fn new(
        organization_id: &str,
        certificate_id: &str,
        serial: &str,
    ) -> Result<CopyRef, ArchiveError> {
        check_segment("organization_id", organization_id)?;
        check_segment("certificate_id", certificate_id)?;
        check_segment("serial", serial)?;
        Ok(CopyRef {
            organization_id: organization_id.to_owned(),
            certificate_id: certificate_id.to_owned(),
            serial: serial.to_owned(),
        })
    }

    /// The owning organization's id.
    pub fn organization_id(&self) -> &str {
        &self.organization_id
    }

    /// The certificate's id.
    pub fn certificate_id(&self) -> &str {
        &self.certificate_id
    }

    /// The version's serial number, as the store records it.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The path of `file` relative to the root: `{org}/{cert}/{serial}/{file}`.
    pub(crate) fn file(&self, file: &str) -> String {
        format!("{self}/{file}")
    }

    /// The copy a relative path `{org}/{cert}/{serial}/{file}` belongs to,
    /// when the path has that shape and `file` is one of [`FILES`].
    pub(crate) fn of_file(relative: &str) -> Option<CopyRef> {
        let mut parts = relative.split('/');
        let (Some(org), Some(cert), Some(serial), Some(file), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if !FILES.contains(&file) {
            return None;
        }
        CopyRef::new(org, cert, serial).ok()
    }
}

impl fmt::Display for CopyRef {
    /// The folder of the copy relative to the root, without a trailing slash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.organization_id, self.certificate_id, self.serial
        )
    }
}

fn check_segment(field: &'static str, value: &str) -> Result<(), ArchiveError> {
    let invalid = |why: &str| ArchiveError::InvalidCopy {
        field,
        message: format!("{value:?} cannot name a folder: {why}"),
    };
    if value.is_empty() {
        return Err(invalid("it is empty"));
    }
    if value.len() > MAX_SEGMENT_LEN {
        return Err(invalid("it is longer than 128 characters"));
    }
    if value.starts_with('.') {
        return Err(invalid("it starts with a dot"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '-', '_', '.' and ':' are allowed",
        ));
    }
    Ok(())
}

/// The object key of `relative` under an S3 prefix (no leading slash when
/// the prefix is empty).
pub(crate) fn join_prefix(prefix: &str, relative: &str) -> String {
    if prefix.is_empty() {
        relative.to_owned()
    } else {
        format!("{prefix}/{relative}")
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_layout() {
        let copy = CopyRef::new("org-1", "cert-1", "0A1B2C").unwrap();
        assert_eq!(copy.to_string(), "org-1/cert-1/0A1B2C");
        assert_eq!(
            copy.file(METADATA_FILE),
            "org-1/cert-1/0A1B2C/metadata.json"
        );
        assert_eq!(
            join_prefix("", &copy.file(CERT_FILE)),
            "org-1/cert-1/0A1B2C/cert.pem"
        );
        assert_eq!(
            join_prefix("backups/certs", &copy.file(KEY_FILE)),
            "backups/certs/org-1/cert-1/0A1B2C/privkey.enc"
        );
        assert_eq!(*FILES.last().unwrap(), METADATA_FILE);
    }

    #[test]
    fn files_map_back_to_their_copy() {
        let copy = CopyRef::of_file("org-1/cert-1/0A1B/chain.pem").unwrap();
        assert_eq!(copy, CopyRef::new("org-1", "cert-1", "0A1B").unwrap());
        for relative in [
            "org-1/cert-1/0A1B",
            "org-1/cert-1/0A1B/other.txt",
            "org-1/cert-1/0A1B/.cert.pem.tmp-1",
            "org-1/cert-1/0A1B/x/cert.pem",
            "org-1/../0A1B/cert.pem",
            "/cert-1/0A1B/cert.pem",
        ] {
            assert_eq!(CopyRef::of_file(relative), None, "{relative}");
        }
    }

    #[test]
    fn segments_that_could_escape_are_refused() {
        for (org, cert, serial, field) in [
            ("", "c", "s", "organization_id"),
            ("..", "c", "s", "organization_id"),
            ("o", "a/b", "s", "certificate_id"),
            ("o", "c", ".hidden", "serial"),
            ("o", "c", "12 34", "serial"),
            ("o", "c", &"A".repeat(129), "serial"),
        ] {
            let error = CopyRef::new(org, cert, serial).unwrap_err();
            assert!(
                matches!(&error, ArchiveError::InvalidCopy { field: named, .. } if *named == field),
                "{error}"
            );
            assert!(error.to_string().starts_with(field), "{error}");
        }
        assert!(CopyRef::new("0190-aa", "cert_1", "01:AB.c").is_ok());
    }
}
