//! One async mutex per (zone, name) for the whole process, so that two
//! read-modify-writes of the same record set (PowerDNS, Route 53: their APIs
//! replace whole sets) never interleave here. Entries go once no one holds or
//! waits for them. Callers key zones so providers cannot collide.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use tokio::sync::OwnedMutexGuard;

type NameLock = tokio::sync::Mutex<()>;
type LockMap = HashMap<(String, String), Weak<NameLock>>;

static LOCKS: LazyLock<Mutex<LockMap>> = LazyLock::new(Mutex::default);

/// Waits for and takes the lock of `name` in `zone_id`.
pub(crate) async fn lock_name(zone_id: &str, name: &str) -> OwnedMutexGuard<()> {
    let lock = {
        let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
        locks.retain(|_, lock| lock.strong_count() > 0);
        let key = (zone_id.to_owned(), name.to_owned());
        match locks.get(&key).and_then(Weak::upgrade) {
            Some(lock) => lock,
            None => {
                let lock = Arc::new(NameLock::new(()));
                locks.insert(key, Arc::downgrade(&lock));
                lock
            }
        }
    };
    lock.lock_owned().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn same_name_waits_other_name_does_not() {
        let held = lock_name("Z1", "a.example.com").await;
        let other =
            tokio::time::timeout(Duration::from_millis(100), lock_name("Z1", "b.example.com"))
                .await;
        assert!(other.is_ok(), "another name is not blocked");
        let same =
            tokio::time::timeout(Duration::from_millis(100), lock_name("Z1", "a.example.com"))
                .await;
        assert!(same.is_err(), "the same name waits");
        drop(held);
        let again =
            tokio::time::timeout(Duration::from_millis(100), lock_name("Z1", "a.example.com"))
                .await;
        assert!(again.is_ok(), "free once released");
    }
}
