//! Writing files so that a proxy (or a directory watcher) only ever sees the
//! old or the new content, and putting earlier files back after a refusal.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use crate::ProxyError;

/// Mode of private keys.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode of certificates and configuration files.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` atomically: writes a hidden temporary file
/// (`.NAME.PID.N.tmp`, so watchers matching `*.yml` or `*.conf` never see
/// it) in the same directory, created with mode 0600 so a key is never
/// readable by others even for a moment, fsyncs it, sets `mode`, renames it
/// over `path` and fsyncs the directory.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let temp_path = directory.join(format!(
        ".{}.{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_temp_then_rename(&temp_path, path, bytes, mode);
    if result.is_err() {
        let _ignored = std::fs::remove_file(&temp_path);
    }
    result?;
    File::open(directory)?.sync_all()
}

fn write_temp_then_rename(
    temp_path: &Path,
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_MODE)
        .open(temp_path)?;
    file.write_all(bytes)?;
    // fchmod, so the umask does not apply and the mode is final before the
    // name appears.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(temp_path, path)
}

/// Runs blocking file work off the async runtime.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, ProxyError>
where
    F: FnOnce() -> Result<T, ProxyError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ProxyError::Command {
            command: "a blocking file task".to_owned(),
            detail: error.to_string(),
        })?
}

/// [`write_atomically`] with the path named in the error.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProxyError> {
    write_atomically(path, bytes, mode).map_err(|error| ProxyError::io("writing", path, error))
}

pub(crate) fn create_dir(path: &Path) -> Result<(), ProxyError> {
    std::fs::create_dir_all(path).map_err(|error| ProxyError::io("creating directory", path, error))
}

/// Removes a file; one that is already gone is fine.
pub(crate) fn remove_file(path: &Path) -> Result<(), ProxyError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(ProxyError::io("removing", path, error))
        }
        _ => Ok(()),
    }
}

/// Removes an empty directory; one that is gone or not empty is fine.
pub(crate) fn remove_dir_if_empty(path: &Path) {
    let _ignored = std::fs::remove_dir(path);
}

/// Removes the per-version files (`fullchain-vN.pem`, `privkey-vN.pem`) in
/// `cert_dir` except those named in `keep`; a missing directory is fine.
pub(crate) fn remove_version_files(cert_dir: &Path, keep: &[&str]) -> Result<(), ProxyError> {
    let entries = match std::fs::read_dir(cert_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(ProxyError::io("listing", cert_dir, error)),
    };
    for entry in entries {
        let entry = entry.map_err(|error| ProxyError::io("listing", cert_dir, error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let versioned = (name.starts_with("fullchain-v") || name.starts_with("privkey-v"))
            && name.ends_with(".pem");
        if versioned && !keep.contains(&name.as_str()) {
            remove_file(&entry.path())?;
        }
    }
    Ok(())
}

/// What a file was before a change: its bytes and mode, or absent.
pub(crate) struct Snapshot {
    path: PathBuf,
    previous: Option<(Zeroizing<Vec<u8>>, u32)>,
}

impl Snapshot {
    pub(crate) fn take(path: &Path) -> Result<Snapshot, ProxyError> {
        // One open: the bytes and the mode are of the same file.
        let previous = match File::open(path) {
            Ok(mut file) => {
                let mode = file
                    .metadata()
                    .map_err(|error| ProxyError::io("reading metadata of", path, error))?
                    .permissions()
                    .mode()
                    & 0o7777;
                let mut bytes = Zeroizing::new(Vec::new());
                file.read_to_end(&mut bytes)
                    .map_err(|error| ProxyError::io("reading", path, error))?;
                Some((bytes, mode))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(ProxyError::io("reading", path, error)),
        };
        Ok(Snapshot {
            path: path.to_owned(),
            previous,
        })
    }

    /// Puts the file back as it was (removing it when it did not exist).
    pub(crate) fn restore(&self) -> Result<(), ProxyError> {
        match &self.previous {
            Some((bytes, mode)) => write_file(&self.path, bytes, *mode),
            None => remove_file(&self.path),
        }
    }
}

/// Restores every snapshot, reporting the first failure after trying all.
pub(crate) fn restore_all(snapshots: &[Snapshot]) -> Result<(), ProxyError> {
    let mut first_error = None;
    for snapshot in snapshots {
        if let Err(error) = snapshot.restore() {
            tracing::error!(path = %snapshot.path.display(), %error, "restoring a file failed");
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    fn names_in(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .expect("read_dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_contents_and_mode_and_leaves_no_temp_file() {
        let directory = tempfile::tempdir().expect("tempdir");
        let key = directory.path().join("privkey.pem");
        write_atomically(&key, b"secret", 0o600).expect("write key");
        assert_eq!(std::fs::read(&key).expect("read"), b"secret");
        assert_eq!(mode_of(&key), 0o600);

        let cert = directory.path().join("cert.pem");
        write_atomically(&cert, b"one", 0o644).expect("write cert");
        write_atomically(&cert, b"two", 0o644).expect("replace cert");
        assert_eq!(std::fs::read(&cert).expect("read"), b"two");
        assert_eq!(mode_of(&cert), 0o644);
        assert_eq!(names_in(directory.path()), ["cert.pem", "privkey.pem"]);
    }

    #[test]
    fn mode_is_final_before_the_rename() {
        // The renamed inode is the temp file itself, so the mode seen after
        // the rename is the one set before it; a hard link taken by a
        // watcher the moment the name appears would see the same inode.
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("k.pem");
        std::fs::write(&path, b"old").expect("seed");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let old_inode =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).expect("meta"));
        write_atomically(&path, b"new", 0o600).expect("write");
        let metadata = std::fs::metadata(&path).expect("meta");
        assert_ne!(
            std::os::unix::fs::MetadataExt::ino(&metadata),
            old_inode,
            "renamed, not rewritten"
        );
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn temp_name_is_hidden_and_failure_cleans_up() {
        let directory = tempfile::tempdir().expect("tempdir");
        // Renaming onto an existing directory fails after the temp was written.
        let target = directory.path().join("servers.conf");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("x"), b"x").expect("fill");
        write_atomically(&target, b"data", 0o644).expect_err("rename onto a directory fails");
        let names = names_in(directory.path());
        assert_eq!(names, ["servers.conf"], "no temporary file is left over");
    }

    #[test]
    fn snapshot_restores_previous_or_removes_new() {
        let directory = tempfile::tempdir().expect("tempdir");
        let existing = directory.path().join("a");
        write_atomically(&existing, b"before", 0o600).expect("write");
        let fresh = directory.path().join("b");
        let snapshots = vec![
            Snapshot::take(&existing).expect("snapshot a"),
            Snapshot::take(&fresh).expect("snapshot b"),
        ];
        write_atomically(&existing, b"after", 0o644).expect("write");
        write_atomically(&fresh, b"new", 0o644).expect("write");
        restore_all(&snapshots).expect("restore");
        assert_eq!(std::fs::read(&existing).expect("read"), b"before");
        assert_eq!(mode_of(&existing), 0o600);
        assert!(!fresh.exists());
    }
}
