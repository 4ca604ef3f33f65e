//! The archive's error type; messages name the setting, file or object at
//! fault and never contain a secret or the bytes of a copy.

use std::path::PathBuf;

/// Why an archive operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A setting (or a location given on a command line) that cannot work;
    /// names the setting.
    #[error("{setting}: {message}")]
    Setting {
        setting: &'static str,
        message: String,
    },
    /// A copy to store carries an id or serial that cannot be a path segment.
    #[error("{field}: {message}")]
    InvalidCopy {
        field: &'static str,
        message: String,
    },
    /// A file of a copy is not there (for S3: the object).
    #[error("{path} is missing")]
    Missing { path: String },
    /// A file of a copy is there but does not hold what `metadata.json` says.
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    /// A file system failure other than a missing file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The storage could not be reached, timed out or asked to slow down;
    /// the same call may succeed later.
    #[error("archive storage unavailable: {0}")]
    Unavailable(String),
    /// The storage said no (access denied, no such bucket, bad credentials);
    /// asking again will not help.
    #[error("{0}")]
    Refused(String),
}

impl ArchiveError {
    /// Whether the same call may succeed later (the storage was unreachable
    /// or busy); every other error is final.
    pub fn is_transient(&self) -> bool {
        matches!(self, ArchiveError::Unavailable(_))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArchiveError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn setting(setting: &'static str, message: impl Into<String>) -> Self {
        ArchiveError::Setting {
            setting,
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ArchiveError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
