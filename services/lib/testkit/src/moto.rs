//! A throwaway moto server (PyPI `moto[server]`) standing in for Amazon Route 53,
//! AWS KMS and Amazon S3 on a free loopback port, with helpers that create
//! hosted zones and read TXT records through Route 53's REST XML API, create
//! KMS keys through KMS's JSON API, and create buckets and read, write and
//! delete objects through S3's REST API, path-style (moto checks no signature
//! unless asked to).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::Child;

use crate::free_port;
use crate::process::{CurlResponse, child_command, curl, log_tail, require_program};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;
const API: &str = "2013-04-01";
/// Moto picks the service from the credential scope of the signature.
const AUTHORIZATION: &str = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=0";
const S3_AUTHORIZATION: &str = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
const KMS_AUTHORIZATION: &str = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0";

/// A running `moto_server`; killed on drop.
#[derive(Debug)]
pub struct Moto {
    // The child first: it is killed before its log directory goes.
    child: Child,
    log_dir: tempfile::TempDir,
    port: u16,
}

impl Moto {
    /// Starts `moto_server` and waits (up to 30 s) until it answers.
    pub async fn start() -> anyhow::Result<Moto> {
        Self::start_with(None).await
    }

    /// Like [`Moto::start`], but moto checks the credentials of every request
    /// after the first `unchecked` ones (which the test spends on set-up):
    /// only keys of moto's own IAM are accepted, so any given key is refused.
    pub async fn start_checking_credentials(unchecked: u32) -> anyhow::Result<Moto> {
        Self::start_with(Some(unchecked)).await
    }

    async fn start_with(unchecked: Option<u32>) -> anyhow::Result<Moto> {
        let program = require_program("moto_server")?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&program, unchecked).await {
                Ok(moto) => return Ok(moto),
                Err(error) if error.to_string().contains("Address already in use") => {
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("moto_server did not start")))
    }

    async fn start_once(program: &Path, unchecked: Option<u32>) -> anyhow::Result<Moto> {
        let log_dir = tempfile::Builder::new()
            .prefix("certfleet-moto-")
            .tempdir()
            .context("creating the moto log directory")?;
        let log_path = log_dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_for_stderr = log.try_clone().context("opening the moto log twice")?;
        let port = free_port();
        let mut command = child_command(program, false);
        if let Some(unchecked) = unchecked {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", unchecked.to_string());
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(log_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr))
            .kill_on_drop(true)
            .spawn()
            .context("spawning moto_server")?;
        let mut moto = Moto {
            child,
            log_dir,
            port,
        };
        moto.wait_until_ready().await?;
        Ok(moto)
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = format!("{}/moto-api/", self.endpoint_url());
        loop {
            if let Some(status) = self.child.try_wait().context("polling moto_server")? {
                bail!(
                    "moto_server exited during start-up ({status})\n{}",
                    self.logs()
                );
            }
            let open = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                .await
                .is_ok();
            if open
                && curl(None, &[], &probe)
                    .await
                    .is_ok_and(|answer| answer.status == 200)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "moto_server did not answer {probe} within {} s\n{}",
                    START_TIMEOUT.as_secs(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The endpoint to give the AWS SDK, e.g. `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of moto's log, for failure messages.
    pub fn logs(&self) -> String {
        log_tail(&self.log_dir.path().join("moto.log"), 30)
    }

    /// Creates a public hosted zone called `name`; returns its bare id (`Z…`).
    pub async fn create_hosted_zone(&self, name: &str) -> anyhow::Result<String> {
        let body = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/{API}/"><Name>{name}</Name><CallerReference>{}</CallerReference></CreateHostedZoneRequest>"#,
            uuid::Uuid::new_v4()
        );
        let answer = self
            .request(
                &[
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/xml",
                    "--data-binary",
                    &body,
                ],
                "hostedzone",
            )
            .await?;
        let id = elements(&answer, "Id")
            .into_iter()
            .find(|id| id.starts_with("/hostedzone/"))
            .with_context(|| {
                format!("moto's answer to creating {name} lacks the zone id: {answer}")
            })?;
        Ok(id.trim_start_matches("/hostedzone/").to_owned())
    }

    /// Creates a symmetric KMS key (`TrentService.CreateKey`); returns its id.
    pub async fn create_kms_key(&self) -> anyhow::Result<String> {
        let answer = self
            .kms_request("CreateKey", r#"{"Description":"certfleet test key"}"#)
            .await?;
        answer["KeyMetadata"]["KeyId"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("moto's answer to CreateKey lacks the key id: {answer}"))
    }

    /// Points `alias` (`alias/NAME`) at the key `key_id`.
    pub async fn create_kms_alias(&self, alias: &str, key_id: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "AliasName": alias, "TargetKeyId": key_id });
        self.kms_request("CreateAlias", &body.to_string()).await?;
        Ok(())
    }

    /// One KMS JSON API call; the body of a 2xx answer.
    async fn kms_request(&self, action: &str, body: &str) -> anyhow::Result<serde_json::Value> {
        let target = format!("X-Amz-Target: TrentService.{action}");
        let args = [
            "-X",
            "POST",
            "-H",
            KMS_AUTHORIZATION,
            "-H",
            "Content-Type: application/x-amz-json-1.1",
            "-H",
            &target,
            "--data-binary",
            body,
        ];
        let url = format!("{}/", self.endpoint_url());
        let CurlResponse { status, body } = curl(None, &args, &url).await?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if !(200..300).contains(&status) {
            bail!("moto answered KMS {action} with HTTP {status}: {body}");
        }
        serde_json::from_str(&body)
            .with_context(|| format!("moto's answer to KMS {action} is not JSON: {body}"))
    }

    /// Creates an S3 bucket called `name` (in us-east-1).
    pub async fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        self.s3_request(&["-X", "PUT"], name, "").await?;
        Ok(())
    }

    /// The keys of every object in `bucket`, in S3's order, all pages read.
    pub async fn list_objects(&self, bucket: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = "?list-type=2".to_owned();
            if let Some(token) = &token {
                query.push_str("&continuation-token=");
                query.push_str(&percent_encode(token, false));
            }
            let answer = self.s3_request(&[], bucket, &query).await?;
            let answer = String::from_utf8_lossy(&answer).into_owned();
            keys.extend(
                blocks(&answer, "Contents")
                    .into_iter()
                    .flat_map(|block| elements(block, "Key")),
            );
            if elements(&answer, "IsTruncated").first().map(String::as_str) != Some("true") {
                return Ok(keys);
            }
            token = Some(
                elements(&answer, "NextContinuationToken")
                    .into_iter()
                    .next()
                    .with_context(|| {
                        format!("moto's truncated list of {bucket} lacks a continuation token")
                    })?,
            );
        }
    }

    /// The bytes of the object `key` in `bucket`.
    pub async fn get_object(&self, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        self.s3_request(&[], &object_path(bucket, key), "").await
    }

    /// Stores `bytes` as the object `key` in `bucket`, replacing it.
    pub async fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let body = tempfile::NamedTempFile::new().context("creating the object body file")?;
        std::fs::write(body.path(), bytes).context("writing the object body file")?;
        let data = format!("@{}", body.path().display());
        let args = [
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data,
        ];
        self.s3_request(&args, &object_path(bucket, key), "")
            .await?;
        Ok(())
    }

    /// Deletes the object `key` in `bucket`.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> anyhow::Result<()> {
        self.s3_request(&["-X", "DELETE"], &object_path(bucket, key), "")
            .await?;
        Ok(())
    }

    /// One S3 REST call on `path` (`bucket` or `bucket/key`, encoded) with
    /// `query` (empty or starting with `?`); the body of a 2xx answer.
    async fn s3_request(&self, args: &[&str], path: &str, query: &str) -> anyhow::Result<Vec<u8>> {
        let mut all_args = vec!["-H", S3_AUTHORIZATION];
        all_args.extend_from_slice(args);
        let url = format!("{}/{path}{query}", self.endpoint_url());
        let CurlResponse { status, body } = curl(None, &all_args, &url).await?;
        if !(200..300).contains(&status) {
            bail!(
                "moto answered S3 {url} with HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    /// The TXT values at `name` (no trailing dot) in the zone, as stored
    /// (quoted, like `"abc"`).
    pub async fn txt_values(&self, zone_id: &str, name: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .record_sets(zone_id)
            .await?
            .into_iter()
            .filter(|set| set.kind == "TXT" && set.name == name)
            .flat_map(|set| set.values)
            .collect())
    }

    /// Every `_acme-challenge` record of every zone, as (name, value).
    pub async fn all_acme_challenge_records(&self) -> anyhow::Result<Vec<(String, String)>> {
        let zones = self.request(&[], "hostedzone?maxitems=100").await?;
        let mut found = Vec::new();
        for id in elements(&zones, "Id") {
            let zone_id = id.trim_start_matches("/hostedzone/");
            for set in self.record_sets(zone_id).await? {
                if set.name.starts_with("_acme-challenge.") {
                    found.extend(
                        set.values
                            .into_iter()
                            .map(|value| (set.name.clone(), value)),
                    );
                }
            }
        }
        Ok(found)
    }

    async fn record_sets(&self, zone_id: &str) -> anyhow::Result<Vec<RecordSet>> {
        let answer = self
            .request(&[], &format!("hostedzone/{zone_id}/rrset?maxitems=300"))
            .await?;
        if elements(&answer, "IsTruncated").first().map(String::as_str) == Some("true") {
            bail!("zone {zone_id} has more than 300 record sets; this helper reads one page");
        }
        Ok(blocks(&answer, "ResourceRecordSet")
            .into_iter()
            .map(|block| RecordSet {
                name: elements(block, "Name")
                    .first()
                    .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
                    .unwrap_or_default(),
                kind: elements(block, "Type").first().cloned().unwrap_or_default(),
                values: elements(block, "Value"),
            })
            .collect())
    }

    /// One Route 53 API call; the body of a 2xx answer.
    async fn request(&self, args: &[&str], path: &str) -> anyhow::Result<String> {
        let mut all_args = vec!["-H", AUTHORIZATION];
        all_args.extend_from_slice(args);
        let url = format!("{}/{API}/{path}", self.endpoint_url());
        let CurlResponse { status, body } = curl(None, &all_args, &url).await?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if !(200..300).contains(&status) {
            bail!("moto answered {url} with HTTP {status}: {body}");
        }
        Ok(body)
    }
}

struct RecordSet {
    name: String,
    kind: String,
    values: Vec<String>,
}

/// The insides of every `<tag>…</tag>` in `xml` (moto writes no attributes).
fn blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// The text of every `<tag>…</tag>`, entities decoded.
fn elements(xml: &str, tag: &str) -> Vec<String> {
    blocks(xml, tag).into_iter().map(unescape).collect()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `bucket/key` with the key percent-encoded (its slashes kept).
fn object_path(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", percent_encode(key, true))
}

/// Percent-encodes all but RFC 3986 unreserved characters (and `/` when
/// `keep_slash`).
fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/')
        {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_moto_xml() {
        let xml = r#"<ListResourceRecordSetsResponse><ResourceRecordSets><ResourceRecordSet><Name>_acme-challenge.example.com.</Name><Type>TXT</Type><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>&quot;a&quot;</Value></ResourceRecord><ResourceRecord><Value>&quot;b&amp;c&quot;</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></ResourceRecordSets></ListResourceRecordSetsResponse>"#;
        let sets = blocks(xml, "ResourceRecordSet");
        assert_eq!(sets.len(), 1);
        assert_eq!(elements(sets[0], "Value"), ["\"a\"", "\"b&c\""]);
        assert_eq!(elements(sets[0], "Type"), ["TXT"]);
    }

    #[test]
    fn encodes_object_keys() {
        assert_eq!(object_path("b", "a/b c/d+e"), "b/a/b%20c/d%2Be");
        assert_eq!(percent_encode("1/x=", false), "1%2Fx%3D");
    }
}
