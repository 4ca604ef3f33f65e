//! HTTP-01 answers served as static files by a web server that already
//! serves `<dir>/.well-known/acme-challenge/`.

use std::path::{Path, PathBuf};

use crate::ProxyError;
use crate::fs::{PUBLIC_MODE, blocking, create_dir, remove_file, write_file};

/// A web server's document root that HTTP-01 key authorizations go into.
#[derive(Debug, Clone)]
pub struct Webroot {
    pub dir: PathBuf,
}

impl Webroot {
    /// Writes `key_authorization` to `<dir>/.well-known/acme-challenge/<token>`
    /// (mode 0644, atomically).
    pub async fn put(&self, token: &str, key_authorization: &str) -> Result<(), ProxyError> {
        validate_token(token)?;
        let directory = self.challenge_dir();
        let path = directory.join(token);
        let contents = key_authorization.as_bytes().to_vec();
        blocking(move || {
            create_dir(&directory)?;
            write_file(&path, &contents, PUBLIC_MODE)
        })
        .await
    }

    /// Removes the answer for `token`; one that is absent is fine.
    pub async fn remove(&self, token: &str) -> Result<(), ProxyError> {
        validate_token(token)?;
        let path = self.challenge_dir().join(token);
        blocking(move || remove_file(&path)).await
    }

    fn challenge_dir(&self) -> PathBuf {
        self.dir.join(Path::new(".well-known/acme-challenge"))
    }
}

/// ACME tokens are base64url (RFC 8555 section 8.3); anything else could
/// escape the challenge directory.
fn validate_token(token: &str) -> Result<(), ProxyError> {
    let valid = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(ProxyError::invalid(
            "acme token",
            format!("{token:?} is not base64url"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn tokens_must_be_base64url() {
        assert!(validate_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0").is_ok());
        for bad in ["", "..", "../etc/passwd", "a/b", "a=b", "a b", "a.b"] {
            let error = validate_token(bad).expect_err(bad);
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
            assert!(!error.is_retryable());
        }
    }

    #[tokio::test]
    async fn put_then_remove_is_idempotent() {
        let directory = tempfile::tempdir().expect("tempdir");
        let webroot = Webroot {
            dir: directory.path().to_owned(),
        };
        webroot
            .put("tok_en-1", "tok_en-1.thumb")
            .await
            .expect("put");
        let path = directory.path().join(".well-known/acme-challenge/tok_en-1");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "tok_en-1.thumb"
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        webroot.remove("tok_en-1").await.expect("remove");
        assert!(!path.exists());
        webroot.remove("tok_en-1").await.expect("remove again");
        webroot.put("../x", "y").await.expect_err("bad token");
    }
}
