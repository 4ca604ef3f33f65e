//! The folder provider: each file is written to a temporary name in its own
//! folder, synced and renamed into place, so a reader sees the old file or
//! the new one, never half of one. Folders it creates are 0700, the sealed
//! key 0600. Reads refuse symbolic links below the root, so a link planted
//! in the archive cannot point a restore at another file.
//!
//! The file system calls block, so each operation runs on tokio's blocking
//! pool.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::ArchiveError;
use crate::layout::{CopyRef, FILES, KEY_FILE};

/// Files larger than this are not a copy's; reading one is refused.
pub(crate) const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct DirArchive {
    /// Absolute.
    root: PathBuf,
}

impl DirArchive {
    pub(crate) fn new(path: &Path) -> Result<DirArchive, ArchiveError> {
        let root = std::path::absolute(path).map_err(|error| {
            ArchiveError::setting(
                "archive_location",
                format!("{} cannot be made absolute: {error}", path.display()),
            )
        })?;
        Ok(DirArchive { root })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn folder(&self, copy: &CopyRef) -> PathBuf {
        self.root
            .join(copy.organization_id())
            .join(copy.certificate_id())
            .join(copy.serial())
    }

    pub(crate) fn path_of(&self, copy: &CopyRef, file: &str) -> PathBuf {
        self.folder(copy).join(file)
    }

    pub(crate) fn location_of(&self, copy: &CopyRef) -> String {
        let root = self.root.display().to_string();
        format!("file://{}/{copy}/", root.trim_end_matches('/'))
    }

    /// The bytes of `file`, or `None` when it (or its folder) is not there.
    pub(crate) async fn read(
        &self,
        copy: &CopyRef,
        file: &'static str,
    ) -> Result<Option<Vec<u8>>, ArchiveError> {
        let root = self.root.clone();
        let copy = copy.clone();
        blocking(move || read_file(&root, &copy, file)).await
    }

    /// Replaces `file` atomically, creating the folders as needed.
    pub(crate) async fn write(
        &self,
        copy: &CopyRef,
        file: &'static str,
        bytes: Vec<u8>,
    ) -> Result<(), ArchiveError> {
        let folder = self.folder(copy);
        blocking(move || write_file(&folder, file, &bytes)).await
    }

    /// Removes `file` if it is there.
    pub(crate) async fn remove(
        &self,
        copy: &CopyRef,
        file: &'static str,
    ) -> Result<(), ArchiveError> {
        let folder = self.folder(copy);
        blocking(move || {
            let path = folder.join(file);
            match fs::remove_file(&path) {
                Ok(()) => sync_folder(&folder),
                Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
                Err(error) => Err(ArchiveError::io(path, error)),
            }
        })
        .await
    }

    /// Every `{org}/{cert}/{serial}` folder holding at least one copy file.
    pub(crate) async fn list(&self) -> Result<Vec<CopyRef>, ArchiveError> {
        let root = self.root.clone();
        blocking(move || list_copies(&root)).await
    }
}

async fn blocking<T, F>(work: F) -> Result<T, ArchiveError>
where
    F: FnOnce() -> Result<T, ArchiveError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ArchiveError::Unavailable(format!("file system task failed: {error}")))?
}

fn read_file(root: &Path, copy: &CopyRef, file: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
    let mut path = root.to_path_buf();
    for segment in [copy.organization_id(), copy.certificate_id(), copy.serial()] {
        path.push(segment);
        match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(ArchiveError::corrupt(
                    path.display().to_string(),
                    "not a folder (symbolic links are not followed)",
                ));
            }
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(ArchiveError::io(path, error)),
        }
    }
    path.push(file);
    let metadata = match fs::symlink_metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ArchiveError::io(path, error)),
    };
    if !metadata.is_file() {
        return Err(ArchiveError::corrupt(
            path.display().to_string(),
            "not a regular file (symbolic links are not followed)",
        ));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(ArchiveError::corrupt(
            path.display().to_string(),
            format!("{} bytes is too large for a copy's file", metadata.len()),
        ));
    }
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|opened| opened.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|error| ArchiveError::io(&path, error))?;
    Ok(Some(bytes))
}

fn write_file(folder: &Path, file: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .map_err(|error| ArchiveError::io(folder, error))?;
    let mode = if file == KEY_FILE { 0o600 } else { 0o644 };
    let temporary = folder.join(format!(".{file}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .and_then(|mut opened| {
            opened.write_all(bytes)?;
            opened.sync_all()
        })
        .map_err(|error| ArchiveError::io(&temporary, error));
    let target = folder.join(file);
    let renamed = written.and_then(|()| {
        fs::rename(&temporary, &target).map_err(|error| ArchiveError::io(&target, error))
    });
    if let Err(error) = renamed {
        // Best effort: the temporary name is never listed nor read.
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    sync_folder(folder)
}

/// Makes a rename or removal in `folder` durable.
fn sync_folder(folder: &Path) -> Result<(), ArchiveError> {
    File::open(folder)
        .and_then(|opened| opened.sync_all())
        .map_err(|error| ArchiveError::io(folder, error))
}

/// The names of the sub-folders of `folder` (no symbolic links); none when
/// `folder` is not there.
fn sub_folders(folder: &Path) -> Result<Vec<String>, ArchiveError> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(ArchiveError::io(folder, error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| ArchiveError::io(folder, error))?;
        let is_dir = entry
            .file_type()
            .map_err(|error| ArchiveError::io(entry.path(), error))?
            .is_dir();
        match entry.file_name().into_string() {
            Ok(name) if is_dir => names.push(name),
            Ok(_) => {}
            Err(name) => {
                tracing::debug!(folder = %folder.display(), ?name, "skipping a name that is not UTF-8");
            }
        }
    }
    Ok(names)
}

fn has_copy_file(folder: &Path) -> Result<bool, ArchiveError> {
    let entries = fs::read_dir(folder).map_err(|error| ArchiveError::io(folder, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| ArchiveError::io(folder, error))?;
        let name = entry.file_name();
        if FILES.iter().any(|file| name == *file) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn list_copies(root: &Path) -> Result<Vec<CopyRef>, ArchiveError> {
    let mut found = Vec::new();
    for org in sub_folders(root)? {
        let org_path = root.join(&org);
        for cert in sub_folders(&org_path)? {
            let cert_path = org_path.join(&cert);
            for serial in sub_folders(&cert_path)? {
                let Ok(copy) = CopyRef::new(&org, &cert, &serial) else {
                    tracing::debug!(org, cert, serial, "skipping a folder that cannot be a copy");
                    continue;
                };
                if has_copy_file(&cert_path.join(&serial))? {
                    found.push(copy);
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn locations_are_file_urls_of_the_copy_folder() {
        let archive = DirArchive::new(Path::new("/srv/archive/")).unwrap();
        let copy = CopyRef::new("o", "c", "0A").unwrap();
        assert_eq!(archive.location_of(&copy), "file:///srv/archive/o/c/0A/");
        assert_eq!(
            archive.path_of(&copy, KEY_FILE),
            Path::new("/srv/archive/o/c/0A/privkey.enc")
        );
        let relative = DirArchive::new(Path::new("copies")).unwrap();
        assert!(relative.root().is_absolute());
        assert!(relative.root().ends_with("copies"));
    }
}
