//! A fresh RabbitMQ vhost per test, created and deleted with `rabbitmqctl`.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context as _, bail};

use crate::process::find_on_path;

const BROKER: &str = "127.0.0.1:5672";
const FALLBACK_RABBITMQCTL: &str = "/usr/sbin/rabbitmqctl";

/// A vhost named `certfleet_test_<uuid>` on the local broker, with every
/// permission for `guest`; deleted by [`delete`](Self::delete) or, best effort,
/// on drop.
#[derive(Debug)]
pub struct TestVhost {
    name: String,
    deleted: bool,
}

impl TestVhost {
    /// Creates the vhost and grants `guest` configure, write and read on it.
    pub async fn create() -> anyhow::Result<TestVhost> {
        let name = format!("certfleet_test_{}", uuid::Uuid::new_v4().simple());
        run_rabbitmqctl(&["add_vhost", &name])
            .await
            .with_context(|| format!("creating vhost {name}"))?;
        // From here on the vhost exists, so a failure still deletes it on drop.
        let vhost = TestVhost {
            name,
            deleted: false,
        };
        run_rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])
        .await
        .with_context(|| format!("granting guest access to vhost {}", vhost.name))?;
        Ok(vhost)
    }

    /// The vhost's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// AMQP URL of the vhost as `guest`, e.g.
    /// `amqp://guest:guest@127.0.0.1:5672/certfleet_test_…`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{BROKER}/{}", percent_encode(&self.name))
    }

    /// Closes every client connection to the vhost, as a broker restart or a
    /// network cut would.
    pub async fn close_connections(&self) -> anyhow::Result<()> {
        run_rabbitmqctl(&[
            "close_all_connections",
            "--vhost",
            &self.name,
            "--limit",
            "1000",
            "closed by a certfleet test",
        ])
        .await
        .with_context(|| format!("closing connections of vhost {}", self.name))
    }

    /// Deletes the vhost with everything in it.
    pub async fn delete(mut self) -> anyhow::Result<()> {
        run_rabbitmqctl(&["delete_vhost", &self.name])
            .await
            .with_context(|| format!("deleting vhost {}", self.name))?;
        self.deleted = true;
        Ok(())
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Best effort and blocking: a leaked vhost only costs broker memory.
        let _ = std::process::Command::new(rabbitmqctl_path())
            .args(["delete_vhost", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `rabbitmqctl` on `PATH`, else where the Debian package puts it.
fn rabbitmqctl_path() -> PathBuf {
    find_on_path("rabbitmqctl").unwrap_or_else(|| PathBuf::from(FALLBACK_RABBITMQCTL))
}

async fn run_rabbitmqctl(arguments: &[&str]) -> anyhow::Result<()> {
    let program = rabbitmqctl_path();
    let output = tokio::process::Command::new(&program)
        .args(arguments)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| {
            format!(
                "running {}; is RabbitMQ installed? run deploy/local/install-deps.sh",
                program.display()
            )
        })?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl {} failed ({}): {}; is RabbitMQ running? run deploy/local/install-deps.sh",
            arguments.first().copied().unwrap_or_default(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Percent-encodes everything but unreserved URL characters.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
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
    fn vhost_names_are_url_encoded() {
        assert_eq!(percent_encode("certfleet_test_ab12"), "certfleet_test_ab12");
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }

    #[tokio::test]
    async fn vhost_is_created_reachable_and_deleted() {
        let vhost = TestVhost::create().await.expect("vhost created");
        assert!(vhost.name().starts_with("certfleet_test_"));
        assert!(vhost.amqp_url().ends_with(vhost.name()));
        vhost.close_connections().await.expect("connections closed");
        let name = vhost.name().to_owned();
        vhost.delete().await.expect("vhost deleted");
        let listed = std::process::Command::new(rabbitmqctl_path())
            .args(["list_vhosts", "--silent"])
            .output()
            .expect("rabbitmqctl list_vhosts runs");
        assert!(!String::from_utf8_lossy(&listed.stdout).contains(&name));
    }
}
