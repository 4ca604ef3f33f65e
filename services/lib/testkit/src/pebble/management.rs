//! Pebble's management interface and pebble-challtestsrv's API.

use std::net::Ipv4Addr;

use anyhow::{Context as _, bail};

use super::Pebble;
use crate::process::curl;

impl Pebble {
    /// PEM of the root that issued certificates chain to (`/roots/0`;
    /// regenerated on every start).
    pub async fn root_pem(&self) -> anyhow::Result<String> {
        self.management_text("/roots/0").await
    }

    /// PEM of the intermediate that signs certificates (`/intermediates/0`).
    pub async fn intermediate_pem(&self) -> anyhow::Result<String> {
        self.management_text("/intermediates/0").await
    }

    /// What Pebble knows about the certificate with this serial
    /// (`/cert-status-by-serial/<hex>`). `serial_hex` may carry `0x`, colons,
    /// upper case or leading zeros. Pebble 2.4 answers, for example:
    ///
    /// ```json
    /// {"Status": "Revoked", "Serial": "6b435dfe32411c8",
    ///  "Certificate": "-----BEGIN CERTIFICATE-----\n…",
    ///  "Reason": 4, "RevokedAt": "2026-11-29 06:16:47.415058566 +0000 UTC"}
    /// ```
    ///
    /// and `{"Status": "Valid", "Serial": …, "Certificate": …}` for a
    /// certificate that is not revoked. `Reason` is the RFC 5280 reason code
    /// (number); `RevokedAt` is Go's `time.Time` string, not RFC 3339.
    /// An unknown serial is an error (Pebble answers 404 with no body).
    pub async fn cert_status(&self, serial_hex: &str) -> anyhow::Result<serde_json::Value> {
        let serial = normalize_serial(serial_hex)?;
        let url = format!("{}/cert-status-by-serial/{serial}", self.management_url());
        let response = curl(Some(&self.listener_ca_path()), &[], &url).await?;
        match response.status {
            200 => serde_json::from_slice(&response.body)
                .with_context(|| format!("pebble answered {url} with invalid json")),
            404 => bail!("pebble has no certificate with serial {serial}"),
            status => bail!("pebble answered {url} with status {status}"),
        }
    }

    /// Makes pebble-challtestsrv answer A queries for `host` with `ip`
    /// (`/add-a`), instead of the default 127.0.0.1.
    pub async fn add_a_record(&self, host: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
        let fqdn = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        let body = serde_json::json!({ "host": fqdn, "addresses": [ip.to_string()] }).to_string();
        let url = format!("{}/add-a", self.challtestsrv_management_url());
        let arguments = [
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data",
            &body,
        ];
        let response = curl(None, &arguments, &url).await?;
        if response.status != 200 {
            bail!(
                "challtestsrv answered {url} with status {}",
                response.status
            );
        }
        Ok(())
    }

    async fn management_text(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.management_url());
        let response = curl(Some(&self.listener_ca_path()), &[], &url).await?;
        if response.status != 200 {
            bail!("pebble answered {url} with status {}", response.status);
        }
        String::from_utf8(response.body)
            .with_context(|| format!("pebble answered {url} with non-utf-8"))
    }
}

/// Lower-case hex without `0x`, colons or leading zeros, as Pebble prints it.
fn normalize_serial(serial_hex: &str) -> anyhow::Result<String> {
    let trimmed = serial_hex.trim();
    let without_prefix = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let digits: String = without_prefix
        .chars()
        .filter(|&character| character != ':')
        .map(|character| character.to_ascii_lowercase())
        .collect();
    if digits.is_empty()
        || !digits
            .chars()
            .all(|character| character.is_ascii_hexdigit())
    {
        bail!("{serial_hex:?} is not a hexadecimal serial number");
    }
    let significant = digits.trim_start_matches('0');
    Ok(if significant.is_empty() {
        "0".to_owned()
    } else {
        significant.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_normalized_like_pebble_prints_them() {
        assert_eq!(
            normalize_serial("06B435DFE32411C8").expect("valid"),
            "6b435dfe32411c8"
        );
        assert_eq!(normalize_serial("0x06:b4:35").expect("valid"), "6b435");
        assert_eq!(normalize_serial("00").expect("valid"), "0");
        assert!(normalize_serial("").is_err());
        assert!(normalize_serial("xyz").is_err());
    }
}
