//! Running a DNS server program for a test and asking it with `dig`; shared
//! by the BIND and PowerDNS twins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use tokio::process::Command;

use crate::process::find_on_path;

const INSTALL_HINT: &str = "run deploy/local/install-deps.sh";

/// Why one start attempt failed; a port taken by someone else is retried.
pub(crate) enum StartFailure {
    PortTaken(anyhow::Error),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for StartFailure {
    fn from(error: anyhow::Error) -> Self {
        Self::Fatal(error)
    }
}

/// `name` on `PATH`, or in `/usr/sbin` (not on a normal user's `PATH`).
pub(crate) fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    find_on_path(name)
        .or_else(|| {
            let sbin = Path::new("/usr/sbin").join(name);
            sbin.is_file().then_some(sbin)
        })
        .with_context(|| format!("{name} not found; {INSTALL_HINT}"))
}

/// Whether this process is root, judged by who owns the directory it just made.
pub(crate) fn runs_as_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    dir.metadata().is_ok_and(|metadata| metadata.uid() == 0)
}

/// 32 random bytes, base64: a TSIG secret or an API key.
pub(crate) fn random_base64() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs `dig @server -p PORT ARGS…` and returns what it printed.
pub(crate) async fn dig(server: SocketAddr, args: &[&str]) -> anyhow::Result<String> {
    let program = find_program("dig")?;
    let output = Command::new(program)
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=2"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .context("running dig")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "dig {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(text)
}

/// The TXT values at `name` on `server`, sorted. Recursion desired: BIND
/// follows a CNAME into another of its zones.
pub(crate) async fn txt_values(server: SocketAddr, name: &str) -> anyhow::Result<Vec<String>> {
    let answer = dig(server, &["+short", "TXT", name]).await?;
    let mut values: Vec<String> = answer
        .lines()
        .filter(|line| line.starts_with('"'))
        .map(join_character_strings)
        .collect();
    values.sort();
    Ok(values)
}

/// `"ab" "cd"` (dig's presentation of one TXT value) as `abcd`.
fn join_character_strings(line: &str) -> String {
    let mut value = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for character in line.chars() {
        match (quoted, escaped, character) {
            (true, true, _) => {
                value.push(character);
                escaped = false;
            }
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            (true, false, _) => value.push(character),
            (false, _, _) => {}
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_the_strings_of_one_txt_value() {
        assert_eq!(join_character_strings(r#""abc""#), "abc");
        assert_eq!(join_character_strings(r#""ab" "cd""#), "abcd");
        assert_eq!(join_character_strings(r#""a\"b""#), "a\"b");
    }
}
