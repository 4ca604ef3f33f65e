//! The folder provider on a temporary folder: round trip, idempotent puts,
//! permissions, and missing, altered, incomplete and linked copies reported
//! with the file named.

#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use certfleet_archive::{Archive, ArchiveConfig, ArchiveError, CopyRef, FILES};
use common::sample;

fn archive(root: &Path) -> Archive {
    Archive::open(&ArchiveConfig::Dir {
        path: root.to_path_buf(),
    })
    .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The names in a copy's folder, sorted.
fn names_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn round_trip_lists_and_reads_back() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("archive");
    let archive = archive(&root);
    assert!(archive.list().await.unwrap().is_empty());

    let first = sample("org-b", "cert-1", "0A1B");
    let second = sample("org-a", "cert-9", "FF00");
    let location = archive.put(&first).await.unwrap();
    assert_eq!(
        location,
        format!("file://{}/org-b/cert-1/0A1B/", root.display())
    );
    archive.put(&second).await.unwrap();

    let listed = archive.list().await.unwrap();
    let expected = vec![
        CopyRef::new("org-a", "cert-9", "FF00").unwrap(),
        CopyRef::new("org-b", "cert-1", "0A1B").unwrap(),
    ];
    assert_eq!(listed, expected);
    assert_eq!(archive.get(&expected[1]).await.unwrap(), first);
    assert_eq!(archive.get(&expected[0]).await.unwrap(), second);

    let folder = root.join("org-b/cert-1/0A1B");
    let mut files: Vec<String> = FILES.iter().map(|file| (*file).to_owned()).collect();
    files.sort();
    assert_eq!(names_in(&folder), files);
    assert_eq!(
        std::fs::read(folder.join("privkey.enc")).unwrap(),
        first.key_sealed
    );
    assert_eq!(
        std::fs::read_to_string(folder.join("fullchain.pem")).unwrap(),
        format!("{}{}", first.leaf_pem, first.chain_pem)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(metadata["format"], 1);
    assert_eq!(metadata["organization"]["slug"], "slug-org-b");
    assert_eq!(metadata["sha256"].as_object().unwrap().len(), 4);

    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("org-b")), 0o700);
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&folder.join("privkey.enc")), 0o600);
    assert!(archive.describe().contains(&root.display().to_string()));
}

#[tokio::test]
async fn put_is_idempotent_and_replaces_a_changed_version() {
    let temp = tempfile::tempdir().unwrap();
    let archive = archive(temp.path());
    let mut copy = sample("org-1", "cert-1", "0A1B");
    let location = archive.put(&copy).await.unwrap();
    assert_eq!(archive.put(&copy).await.unwrap(), location);
    let at = copy.copy_ref().unwrap();
    assert_eq!(archive.list().await.unwrap(), std::slice::from_ref(&at));
    assert_eq!(archive.get(&at).await.unwrap(), copy);

    copy.version.revoked_at = Some(1_701_000_000_000);
    copy.version.revocation_reason = Some("keyCompromise".to_owned());
    copy.chain_pem = String::new();
    archive.put(&copy).await.unwrap();
    assert_eq!(archive.get(&at).await.unwrap(), copy);
    // No temporary file is left behind.
    assert_eq!(
        names_in(&temp.path().join("org-1/cert-1/0A1B")).len(),
        FILES.len()
    );
}

#[tokio::test]
async fn a_deleted_file_is_missing_and_named() {
    let temp = tempfile::tempdir().unwrap();
    let archive = archive(temp.path());
    let copy = sample("org-1", "cert-1", "0A1B");
    archive.put(&copy).await.unwrap();
    let path = temp.path().join("org-1/cert-1/0A1B/chain.pem");
    std::fs::remove_file(&path).unwrap();

    let error = archive.get(&copy.copy_ref().unwrap()).await.unwrap_err();
    assert!(
        matches!(&error, ArchiveError::Missing { path: named } if *named == path.display().to_string()),
        "{error}"
    );
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_changed_byte_is_corrupt_and_named() {
    let temp = tempfile::tempdir().unwrap();
    let archive = archive(temp.path());
    let copy = sample("org-1", "cert-1", "0A1B");
    archive.put(&copy).await.unwrap();
    let at = copy.copy_ref().unwrap();

    for file in ["privkey.enc", "cert.pem", "fullchain.pem"] {
        let path = temp.path().join("org-1/cert-1/0A1B").join(file);
        let original = std::fs::read(&path).unwrap();
        let mut changed = original.clone();
        changed[5] ^= 0x01;
        std::fs::write(&path, &changed).unwrap();

        let error = archive.get(&at).await.unwrap_err();
        match &error {
            ArchiveError::Corrupt {
                path: named,
                reason,
            } => {
                assert_eq!(*named, path.display().to_string());
                assert!(reason.contains("SHA-256"), "{reason}");
            }
            other => panic!("{file}: expected corrupt, got {other}"),
        }
        std::fs::write(&path, &original).unwrap();
    }
    assert_eq!(archive.get(&at).await.unwrap(), copy);

    let metadata = temp.path().join("org-1/cert-1/0A1B/metadata.json");
    std::fs::write(&metadata, b"{\"format\": 1").unwrap();
    let error = archive.get(&at).await.unwrap_err();
    assert!(
        matches!(&error, ArchiveError::Corrupt { path, .. } if *path == metadata.display().to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn without_metadata_a_copy_is_listed_but_not_readable() {
    let temp = tempfile::tempdir().unwrap();
    let archive = archive(temp.path());
    let copy = sample("org-1", "cert-1", "0A1B");
    archive.put(&copy).await.unwrap();
    let path = temp.path().join("org-1/cert-1/0A1B/metadata.json");
    std::fs::remove_file(&path).unwrap();
    // A folder without any copy file, and stray entries, are not copies.
    std::fs::create_dir_all(temp.path().join("org-1/cert-1/EMPTY")).unwrap();
    std::fs::write(temp.path().join("org-1/cert-1/README"), b"x").unwrap();

    let at = copy.copy_ref().unwrap();
    assert_eq!(archive.list().await.unwrap(), std::slice::from_ref(&at));
    let error = archive.get(&at).await.unwrap_err();
    assert!(
        matches!(&error, ArchiveError::Missing { path: named } if *named == path.display().to_string()),
        "{error}"
    );
    assert!(
        error.to_string().ends_with("metadata.json is missing"),
        "{error}"
    );
}

#[tokio::test]
async fn a_symbolic_link_is_not_followed() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("archive");
    let archive = archive(&root);
    let copy = sample("org-1", "cert-1", "0A1B");
    archive.put(&copy).await.unwrap();
    let outside = temp.path().join("outside.pem");
    std::fs::write(&outside, &copy.leaf_pem).unwrap();
    let path = root.join("org-1/cert-1/0A1B/cert.pem");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&outside, &path).unwrap();

    let error = archive.get(&copy.copy_ref().unwrap()).await.unwrap_err();
    assert!(
        matches!(&error, ArchiveError::Corrupt { path: named, reason } if *named == path.display().to_string() && reason.contains("symbolic")),
        "{error}"
    );
}

#[tokio::test]
async fn ids_that_are_not_path_segments_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let archive = archive(temp.path());
    let error = archive
        .put(&sample("..", "cert-1", "0A1B"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ArchiveError::InvalidCopy {
                field: "organization_id",
                ..
            }
        ),
        "{error}"
    );
    assert!(archive.list().await.unwrap().is_empty());
}
