//! Where the archive is: a folder or an S3 bucket, from settings or from a
//! location string given on a command line (`s3://BUCKET/PREFIX`, `/folder`,
//! `file:///folder`). Checks need no I/O; errors name the setting and value
//! and never repeat a secret.

use std::fmt;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::error::ArchiveError;

/// The setting a location string is reported under.
pub const LOCATION_SETTING: &str = "archive_location";

/// Which provider holds the copies.
#[derive(Debug, Clone)]
pub enum ArchiveConfig {
    /// A folder on this machine; created on the first write.
    Dir { path: PathBuf },
    /// A bucket of S3 or an S3-compatible service.
    S3(S3Config),
}

/// How to reach the bucket; the secrets never appear in `Debug` output.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without leading or trailing slash; empty for the bucket root.
    pub prefix: String,
    pub region: String,
    /// Another endpoint than AWS's (moto, MinIO, a proxy).
    pub endpoint_url: Option<String>,
    /// Address the bucket in the path (`endpoint/bucket/key`) rather than the
    /// host name; most S3-compatible services need it.
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
}

/// The connection settings of an S3 location given as `s3://BUCKET/PREFIX`.
#[derive(Clone)]
pub struct S3Access {
    pub region: String,
    pub endpoint_url: Option<String>,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
}

/// A parsed location string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder (as given; relative folders are taken from the working one).
    Dir(PathBuf),
    /// A bucket and a key prefix (normalized, possibly empty).
    S3 { bucket: String, prefix: String },
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for S3Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Access")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl ArchiveConfig {
    /// The config for a location string; `s3` gives the connection settings
    /// an `s3://` location needs (and is ignored for a folder).
    pub fn from_location(
        location: &str,
        s3: Option<&S3Access>,
    ) -> Result<ArchiveConfig, ArchiveError> {
        match parse_location(location)? {
            Location::Dir(path) => Ok(ArchiveConfig::Dir { path }),
            Location::S3 { bucket, prefix } => {
                let Some(access) = s3 else {
                    return Err(ArchiveError::setting(
                        "archive_s3_access_key_id",
                        format!(
                            "the location {location:?} is an S3 bucket, but no S3 credentials and region are set"
                        ),
                    ));
                };
                let config = S3Config {
                    bucket,
                    prefix,
                    region: access.region.clone(),
                    endpoint_url: access.endpoint_url.clone(),
                    path_style: access.path_style,
                    access_key_id: access.access_key_id.clone(),
                    secret_access_key: access.secret_access_key.clone(),
                    session_token: access.session_token.clone(),
                };
                config.check()?;
                Ok(ArchiveConfig::S3(config))
            }
        }
    }

    /// Checks every value without I/O.
    pub fn check(&self) -> Result<(), ArchiveError> {
        match self {
            ArchiveConfig::Dir { path } => {
                if path.as_os_str().is_empty() {
                    return Err(ArchiveError::setting("archive_location", "is empty"));
                }
                Ok(())
            }
            ArchiveConfig::S3(config) => config.check(),
        }
    }
}

/// Parses `s3://BUCKET[/PREFIX]`, `file:///FOLDER` or a plain folder path.
pub fn parse_location(location: &str) -> Result<Location, ArchiveError> {
    let bad = |why: &str| ArchiveError::setting(LOCATION_SETTING, format!("{location:?} {why}"));
    if location.trim().is_empty() {
        return Err(ArchiveError::setting(
            LOCATION_SETTING,
            "is empty (give s3://BUCKET/PREFIX or a folder)",
        ));
    }
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|why| bad(&format!("does not name an S3 bucket: {why}")))?;
        let prefix = normalize_prefix(prefix).map_err(|why| bad(&format!("has {why}")))?;
        return Ok(Location::S3 {
            bucket: bucket.to_owned(),
            prefix,
        });
    }
    if let Some(rest) = location.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(bad(
                "is not a file URL of this machine (write file:///absolute/folder)",
            ));
        }
        if path.contains('%') || path.contains('?') || path.contains('#') {
            return Err(bad(
                "has URL escapes or a query, which are not supported: give the folder as a plain path",
            ));
        }
        return Ok(Location::Dir(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = location.split_once("://") {
        return Err(bad(&format!(
            "uses the scheme {scheme:?}; only s3:// and file:// locations or folder paths are supported"
        )));
    }
    Ok(Location::Dir(PathBuf::from(location)))
}

impl S3Config {
    /// Checks every value without I/O; errors name the setting
    /// (`archive_s3_bucket`, …) and never repeat a secret.
    pub fn check(&self) -> Result<(), ArchiveError> {
        check_bucket(&self.bucket).map_err(|why| {
            ArchiveError::setting(
                "archive_s3_bucket",
                format!("{:?} is not an S3 bucket name: {why}", self.bucket),
            )
        })?;
        match normalize_prefix(&self.prefix) {
            Ok(normalized) if normalized == self.prefix => {}
            Ok(normalized) => {
                return Err(ArchiveError::setting(
                    "archive_s3_prefix",
                    format!(
                        "{:?} has leading or trailing slashes (write {normalized:?})",
                        self.prefix
                    ),
                ));
            }
            Err(why) => {
                return Err(ArchiveError::setting(
                    "archive_s3_prefix",
                    format!("{:?} has {why}", self.prefix),
                ));
            }
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(ArchiveError::setting(
                "archive_s3_region",
                format!(
                    "{:?} is not a region name (like us-east-1); S3-compatible services take any, such as us-east-1",
                    self.region
                ),
            ));
        }
        if let Some(url) = &self.endpoint_url {
            let host = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if host.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
                return Err(ArchiveError::setting(
                    "archive_s3_endpoint_url",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        if self.access_key_id.is_empty() {
            return Err(ArchiveError::setting(
                "archive_s3_access_key_id",
                "is required with the s3 archive provider",
            ));
        }
        if !self.access_key_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ArchiveError::setting(
                "archive_s3_access_key_id",
                format!(
                    "{:?} contains spaces or control characters",
                    self.access_key_id
                ),
            ));
        }
        if self.secret_access_key.is_empty() {
            return Err(ArchiveError::setting(
                "archive_s3_secret_access_key",
                "is required with the s3 archive provider",
            ));
        }
        if !self.secret_access_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ArchiveError::setting(
                "archive_s3_secret_access_key",
                "contains spaces or control characters",
            ));
        }
        if self
            .session_token
            .as_ref()
            .is_some_and(|token| token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ArchiveError::setting(
                "archive_s3_session_token",
                "is empty or contains spaces or control characters",
            ));
        }
        Ok(())
    }
}

/// The S3 bucket naming rules (general purpose buckets), as a reason.
fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("it must be 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("only lower-case letters, digits, '.' and '-' are allowed");
    }
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = bucket.as_bytes();
    if !bytes.first().copied().is_some_and(edge_ok) || !bytes.last().copied().is_some_and(edge_ok) {
        return Err("it must begin and end with a letter or digit");
    }
    if bucket.contains("..") || bucket.contains(".-") || bucket.contains("-.") {
        return Err("a dot must not be next to another dot or a hyphen");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("it must not look like an IP address");
    }
    if bucket.starts_with("xn--") || bucket.starts_with("sthree-") {
        return Err("the prefixes xn-- and sthree- are reserved");
    }
    if bucket.ends_with("-s3alias") || bucket.ends_with("--ol-s3") {
        return Err("the suffixes -s3alias and --ol-s3 are reserved");
    }
    Ok(())
}

/// The prefix without surrounding slashes; refuses empty, `.` and `..`
/// segments and control characters. The reason completes "… has".
fn normalize_prefix(prefix: &str) -> Result<String, &'static str> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.len() > 512 {
        return Err("a prefix longer than 512 characters");
    }
    if trimmed.chars().any(char::is_control) {
        return Err("control characters in its prefix");
    }
    if trimmed
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("an empty, '.' or '..' segment in its prefix");
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn access() -> S3Access {
        S3Access {
            region: "us-east-1".to_owned(),
            endpoint_url: Some("http://127.0.0.1:9000".to_owned()),
            path_style: true,
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: Zeroizing::new(SECRET.to_owned()),
            session_token: Some(Zeroizing::new("FwoGZXIvYXdzEXAMPLE".to_owned())),
        }
    }

    fn s3_config() -> S3Config {
        match ArchiveConfig::from_location("s3://certfleet-backups/prod", Some(&access())).unwrap()
        {
            ArchiveConfig::S3(config) => config,
            ArchiveConfig::Dir { .. } => panic!("not s3"),
        }
    }

    #[test]
    fn parses_locations() {
        let s3 = |bucket: &str, prefix: &str| Location::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        };
        let cases = [
            ("s3://backups", s3("backups", "")),
            ("s3://backups/", s3("backups", "")),
            ("s3://backups/a/b/", s3("backups", "a/b")),
            ("s3://my.backups-1/certs", s3("my.backups-1", "certs")),
            ("/var/lib/archive", Location::Dir("/var/lib/archive".into())),
            ("backups", Location::Dir("backups".into())),
            ("file:///srv/copies", Location::Dir("/srv/copies".into())),
            (
                "file://localhost/srv/copies",
                Location::Dir("/srv/copies".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_location(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bad_locations_are_named() {
        for (text, fragment) in [
            ("", "is empty"),
            ("s3://", "3 to 63"),
            ("s3://Backups/x", "lower-case"),
            ("s3://-backups", "begin and end"),
            ("s3://back..ups", "next to another dot"),
            ("s3://192.168.1.1", "IP address"),
            ("s3://backups/a//b", "empty, '.' or '..' segment"),
            ("s3://backups/a/../b", "empty, '.' or '..' segment"),
            ("file://server/share", "not a file URL of this machine"),
            ("file:///a%20b", "URL escapes"),
            ("gs://backups", "scheme \"gs\""),
        ] {
            let error = parse_location(text).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with("archive_location: "),
                "{text}: {message}"
            );
            assert!(message.contains(fragment), "{text}: {message}");
            if !text.is_empty() {
                assert!(message.contains(&format!("{text:?}")), "{text}: {message}");
            }
        }
    }

    #[test]
    fn an_s3_location_takes_the_access_settings() {
        let config = s3_config();
        assert_eq!(config.bucket, "certfleet-backups");
        assert_eq!(config.prefix, "prod");
        assert!(config.path_style);
        let error = ArchiveConfig::from_location("s3://certfleet-backups", None).unwrap_err();
        assert!(
            error.to_string().starts_with("archive_s3_access_key_id"),
            "{error}"
        );
        assert!(ArchiveConfig::from_location("/srv/x", None).is_ok());
    }

    #[test]
    fn bad_settings_are_named_and_secrets_not_echoed() {
        type Change = fn(&mut S3Config);
        let cases: [(Change, &str, &str); 9] = [
            (
                |c| c.bucket = "ab".to_owned(),
                "archive_s3_bucket",
                "\"ab\"",
            ),
            (
                |c| c.bucket = "Big_Bucket".to_owned(),
                "archive_s3_bucket",
                "\"Big_Bucket\"",
            ),
            (
                |c| c.prefix = "/prod/".to_owned(),
                "archive_s3_prefix",
                "write \"prod\"",
            ),
            (
                |c| c.prefix = "a//b".to_owned(),
                "archive_s3_prefix",
                "\"a//b\"",
            ),
            (|c| c.region = String::new(), "archive_s3_region", "\"\""),
            (
                |c| c.endpoint_url = Some("minio:9000".to_owned()),
                "archive_s3_endpoint_url",
                "\"minio:9000\"",
            ),
            (
                |c| c.access_key_id = String::new(),
                "archive_s3_access_key_id",
                "required",
            ),
            (
                |c| c.secret_access_key = Zeroizing::new("not shown secret".to_owned()),
                "archive_s3_secret_access_key",
                "spaces",
            ),
            (
                |c| c.session_token = Some(Zeroizing::new("not shown token".to_owned())),
                "archive_s3_session_token",
                "spaces",
            ),
        ];
        for (change, setting, fragment) in cases {
            let mut config = s3_config();
            change(&mut config);
            let error = config.check().unwrap_err();
            let message = error.to_string();
            assert!(message.starts_with(setting), "{message}");
            assert!(message.contains(fragment), "{message}");
            assert!(!message.contains("not shown"), "{message}");
        }
        s3_config().check().unwrap();
        let error = ArchiveConfig::Dir {
            path: PathBuf::new(),
        }
        .check()
        .unwrap_err();
        assert!(error.to_string().starts_with("archive_location"), "{error}");
    }

    #[test]
    fn debug_hides_the_secrets() {
        for text in [format!("{:?}", s3_config()), format!("{:?}", access())] {
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains("FwoGZXIvYXdzEXAMPLE"), "{text}");
            assert!(text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
        }
    }
}
