//! A fresh PostgreSQL database per test run, created and dropped with `psql`.

use std::process::Stdio;

use anyhow::{Context as _, bail};

use crate::process::require_program;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const ADMIN_URL_VARIABLE: &str = "CERTFLEET_TEST_PG_ADMIN_URL";

/// A database named `certfleet_test_<uuid>`, dropped by
/// [`drop_database`](Self::drop_database) or, best effort, on drop.
///
/// The server is reached through `postgres://postgres@127.0.0.1:5432/postgres`
/// (trust authentication on loopback), or `CERTFLEET_TEST_PG_ADMIN_URL`.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates an empty database.
    pub async fn create() -> anyhow::Result<TestDatabase> {
        let admin_url =
            std::env::var(ADMIN_URL_VARIABLE).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let name = format!("certfleet_test_{}", uuid::Uuid::new_v4().simple());
        run_psql(&admin_url, &format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(TestDatabase {
            admin_url,
            name,
            dropped: false,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection URL of the database, e.g.
    /// `postgres://postgres@127.0.0.1:5432/certfleet_test_…`.
    pub fn url(&self) -> String {
        with_database(&self.admin_url, &self.name)
    }

    /// Drops the database, disconnecting whoever still uses it.
    pub async fn drop_database(mut self) -> anyhow::Result<()> {
        run_psql(&self.admin_url, &drop_statement(&self.name))
            .await
            .with_context(|| format!("dropping database {}", self.name))?;
        self.dropped = true;
        Ok(())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Best effort and blocking: a leaked database only costs disk space.
        let Ok(psql) = require_program("psql") else {
            return;
        };
        let _ = std::process::Command::new(psql)
            .args(psql_arguments(&self.admin_url, &drop_statement(&self.name)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn drop_statement(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
}

fn psql_arguments(admin_url: &str, statement: &str) -> Vec<String> {
    [
        admin_url,
        "--no-psqlrc",
        "--quiet",
        "--no-align",
        "--tuples-only",
        "--set",
        "ON_ERROR_STOP=1",
        "--command",
        statement,
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn run_psql(admin_url: &str, statement: &str) -> anyhow::Result<()> {
    psql(admin_url, statement).await.map(drop)
}

/// Runs `statement` in the database at `url` with `psql` and returns its
/// output (unaligned, tuples only); a failure says what psql said.
pub async fn psql(url: &str, statement: &str) -> anyhow::Result<String> {
    let psql = require_program("psql")?;
    let output = tokio::process::Command::new(psql)
        .args(psql_arguments(url, statement))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running psql")?;
    if !output.status.success() {
        bail!(
            "psql {url} failed ({}): {}; is PostgreSQL running? run deploy/local/install-deps.sh",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// `url` with its database path replaced by `database`, query kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |index| authority_start + index);
    let mut result = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_replaces_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
