//! certfleet's state: one diesel schema and one set of queries over PostgreSQL
//! (distributed mode) and SQLite (embedded mode).
//!
//! Every query is written once inside [`with_conn!`] or [`transaction!`], which
//! expand it for both backends. Every repository function that touches tenant
//! data takes the organization id first.

pub mod models;
pub mod restore;
pub mod schema;

mod accounts;
mod audit;
mod backups;
mod certificates;
mod challenges;
mod dns_providers;
mod eab;
mod leases;
mod lifecycle;
mod notifications;
mod organizations;
mod outbox;
mod rate_limits;
mod schedule;
mod sealed;

use std::sync::Arc;

use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use audit::AuditFilter;
pub use backups::{BackupDue, BackupState};
pub use certificates::{ListFilter, NewCertificateVersion, PageCursor, RenewalPlan};
pub use models::*;
pub use notifications::{NOTIFICATION_FAILED, NOTIFICATION_PENDING, NOTIFICATION_SENT};
pub use organizations::TokenOwner;
pub use rate_limits::{BudgetDenied, BudgetRule};
pub use sealed::{SealedColumn, SealedRow};

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../../migrations/sqlite");

type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// PostgreSQL connections one process opens at most, by default.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Longest wait for a PostgreSQL connection (from the pool or a new one).
const POOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Errors of the store. Callers map them to gRPC codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("an active certificate for the same names already exists: {existing_id}")]
    AlreadyExists { existing_id: String },
    #[error("{0} already exists")]
    Conflict(String),
    /// Still used by something that must go first.
    #[error("{0}")]
    InUse(String),
    #[error("the certificate is not leased by this worker")]
    LeaseLost,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("invalid database url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
}

impl StoreError {
    fn is_unique_violation(error: &diesel::result::Error) -> bool {
        matches!(
            error,
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            )
        )
    }
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

enum Pools {
    Postgres(Pool<AsyncPgConnection>),
    /// SQLite allows one writer at a time: one connection, taken in turn.
    Sqlite(tokio::sync::Mutex<SqliteConn>),
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pools: Arc<Pools>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

/// Runs `$body` with `$conn` bound to a connection of whichever backend the store uses.
macro_rules! with_conn {
    ($store:expr, |$conn:ident| $body:expr) => {
        match $store.pools() {
            $crate::Pools::Postgres(pool) => {
                let mut pooled = pool
                    .get()
                    .await
                    .map_err(|error| $crate::StoreError::Unavailable(error.to_string()))?;
                let $conn: &mut diesel_async::AsyncPgConnection = &mut pooled;
                $body
            }
            $crate::Pools::Sqlite(connection) => {
                let mut guard = connection.lock().await;
                let $conn: &mut $crate::SqliteConn = &mut guard;
                $body
            }
        }
    };
}

/// Runs `$body` (which evaluates to `Result<_, StoreError>`) in one transaction.
macro_rules! transaction {
    ($store:expr, |$conn:ident| $body:expr) => {
        $crate::with_conn!($store, |connection| {
            use diesel_async::AsyncConnection as _;
            connection
                .transaction::<_, $crate::StoreError, _>(async move |$conn| $body)
                .await
        })
    };
}
/// Writes the outbox messages and audit entries of `$effects` (an [`Effects`])
/// on `$conn`, inside the caller's [`transaction!`], so the side effects commit
/// or roll back with the state change.
macro_rules! write_effects {
    ($conn:ident, $effects:expr) => {{
        let effects: &$crate::models::Effects = &$effects;
        // One statement per row: SQLite has no multi-row insert with NULL defaults in diesel.
        for message in &effects.outbox {
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into($crate::schema::outbox::table).values(message),
                $conn,
            )
            .await?;
        }
        for entry in &effects.audit {
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into($crate::schema::audit_log::table).values(entry),
                $conn,
            )
            .await?;
        }
    }};
}
pub(crate) use {transaction, with_conn, write_effects};

impl Store {
    /// Connects to `postgres://…` or `sqlite://PATH` (a bare path is SQLite
    /// too), with at most [`DEFAULT_POOL_SIZE`] PostgreSQL connections.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with_pool(url, DEFAULT_POOL_SIZE).await
    }

    /// Like [`connect`](Self::connect), with at most `pool_size` PostgreSQL
    /// connections (opened as needed; SQLite always has one).
    pub async fn connect_with_pool(url: &str, pool_size: usize) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
            // Bounded waits: with the database gone, callers get `Unavailable`
            // within seconds instead of hanging.
            let pool = Pool::builder(manager)
                .max_size(pool_size.max(1))
                .runtime(deadpool::Runtime::Tokio1)
                .wait_timeout(Some(POOL_TIMEOUT))
                .create_timeout(Some(POOL_TIMEOUT))
                .recycle_timeout(Some(POOL_TIMEOUT))
                .build()
                .map_err(|error| StoreError::InvalidUrl {
                    url: redact(url),
                    reason: error.to_string(),
                })?;
            // Fail early with a clear message when the server is not there.
            drop(
                pool.get()
                    .await
                    .map_err(|error| StoreError::Unavailable(error.to_string()))?,
            );
            return Ok(Store {
                pools: Arc::new(Pools::Postgres(pool)),
            });
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if path.is_empty() {
            return Err(StoreError::InvalidUrl {
                url: url.to_owned(),
                reason: "expected postgres://… or sqlite://PATH".to_owned(),
            });
        }
        let mut connection = SqliteConn::establish(path)
            .await
            .map_err(|error| StoreError::Unavailable(format!("{path}: {error}")))?;
        // WAL for concurrent readers; FULL sync because a certificate must survive a power cut.
        connection
            .batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
            )
            .await?;
        Ok(Store {
            pools: Arc::new(Pools::Sqlite(tokio::sync::Mutex::new(connection))),
        })
    }

    pub fn backend(&self) -> Backend {
        match *self.pools {
            Pools::Postgres(_) => Backend::Postgres,
            Pools::Sqlite(_) => Backend::Sqlite,
        }
    }

    fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Applies pending migrations; returns the versions applied. Needs the
    /// multi-threaded tokio runtime.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let migration_error = |error: Box<dyn std::error::Error + Send + Sync>| {
            StoreError::Migration(error.to_string())
        };
        match &*self.pools {
            Pools::Postgres(pool) => {
                let pooled = pool
                    .get()
                    .await
                    .map_err(|error| StoreError::Unavailable(error.to_string()))?;
                let mut harness = diesel_async::AsyncMigrationHarness::new(pooled);
                let applied = harness
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map_err(migration_error)?;
                Ok(applied.iter().map(ToString::to_string).collect())
            }
            Pools::Sqlite(connection) => {
                let mut guard = connection.lock().await;
                guard
                    .spawn_blocking(|sqlite| {
                        sqlite
                            .run_pending_migrations(SQLITE_MIGRATIONS)
                            .map(|applied| applied.iter().map(ToString::to_string).collect())
                            .map_err(|error| {
                                diesel::result::Error::QueryBuilderError(error.to_string().into())
                            })
                    })
                    .await
                    .map_err(|error| StoreError::Migration(error.to_string()))
            }
        }
    }
}

/// A new random identifier, time-ordered (UUIDv7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Removes a password from a database URL before it appears in an error.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unreachable_postgres_is_unavailable_promptly() {
        // Nothing listens on port 1 of loopback.
        let started = std::time::Instant::now();
        let result = super::Store::connect("postgres://postgres@127.0.0.1:1/none").await;
        assert!(
            matches!(result, Err(super::StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://user:secret@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(redact("postgres://user@host/db"), "postgres://user@host/db");
    }
}
