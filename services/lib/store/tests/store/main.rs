//! Integration tests of the store. Every scenario is written once against a
//! [`Store`] and run on both backends: SQLite in a temporary directory and a
//! fresh PostgreSQL database (dropped afterwards).

use certfleet_store::Store;
use certfleet_testkit::TestDatabase;

/// Generates, for each scenario `name` in scope, the tests `sqlite::name` and
/// `postgres::name`.
macro_rules! on_both_backends {
    ($($scenario:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() -> anyhow::Result<()> {
                    let backend = crate::TestBackend::sqlite().await?;
                    super::$scenario(&backend.store).await?;
                    backend.finish().await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() -> anyhow::Result<()> {
                    let backend = crate::TestBackend::postgres().await?;
                    super::$scenario(&backend.store).await?;
                    backend.finish().await
                }
            )+
        }
    };
}

mod audit;
mod budgets;
mod certificates;
mod dns;
mod eab;
mod expiry;
mod leases;
mod lifecycle;
mod notifications;
mod organizations;
mod races;
mod restore;
mod support;
mod work;

/// A migrated, empty store and what must be cleaned up after it.
struct TestBackend {
    store: Store,
    _directory: Option<tempfile::TempDir>,
    database: Option<TestDatabase>,
}

impl TestBackend {
    async fn sqlite() -> anyhow::Result<TestBackend> {
        let directory = tempfile::tempdir()?;
        let path = directory.path().join("certfleet.sqlite");
        let store = Store::connect(&path.to_string_lossy()).await?;
        Self::migrated(store, Some(directory), None).await
    }

    async fn postgres() -> anyhow::Result<TestBackend> {
        let database = TestDatabase::create().await?;
        let store = Store::connect(&database.url()).await?;
        Self::migrated(store, None, Some(database)).await
    }

    async fn migrated(
        store: Store,
        directory: Option<tempfile::TempDir>,
        database: Option<TestDatabase>,
    ) -> anyhow::Result<TestBackend> {
        let applied = store.migrate().await?;
        anyhow::ensure!(
            !applied.is_empty(),
            "a fresh database must get the migrations applied"
        );
        Ok(TestBackend {
            store,
            _directory: directory,
            database,
        })
    }

    async fn finish(self) -> anyhow::Result<()> {
        drop(self.store);
        if let Some(database) = self.database {
            database.drop_database().await?;
        }
        Ok(())
    }
}
