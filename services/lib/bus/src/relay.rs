//! The outbox relay: publishes committed outbox rows, then deletes them. A row
//! is deleted only after it was published, so a crash can repeat a message but
//! never lose one; consumers are idempotent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certfleet_core::{Clock as _, SystemClock};
use certfleet_store::{OutboxMessage, Store};
use tokio::sync::Notify;

use crate::BusError;

/// Where the relay sends messages: the in-process bus or a broker.
#[async_trait]
pub trait Publisher: Send + Sync {
    async fn publish(&self, message: &OutboxMessage) -> Result<(), BusError>;
}

const BATCH: i64 = 256;
/// How long a relay may hold claimed rows before another relay takes them over.
const CLAIM: Duration = Duration::from_secs(30);

/// Moves outbox rows to a [`Publisher`]. Wake it after a commit for low latency;
/// it also polls, so a missed wake-up only delays a message.
#[derive(Clone)]
pub struct OutboxRelay {
    store: Store,
    publisher: Arc<dyn Publisher>,
    wake: Arc<Notify>,
    poll_interval: Duration,
    /// Names this relay in outbox claims.
    owner: String,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay").finish_non_exhaustive()
    }
}

impl OutboxRelay {
    pub fn new(store: Store, publisher: Arc<dyn Publisher>, poll_interval: Duration) -> Self {
        OutboxRelay {
            store,
            publisher,
            wake: Arc::new(Notify::new()),
            poll_interval,
            owner: format!("relay-{}", certfleet_store::new_id()),
        }
    }

    /// Names this relay in outbox claims (e.g. after the process's instance id).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Asks the relay to look at the outbox now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes everything currently in the outbox; returns how many messages.
    pub async fn drain(&self) -> Result<usize, BusError> {
        let mut total = 0;
        loop {
            // Claims coordinate processes in real time, so they use the system
            // clock rather than the (movable) business clock.
            let now = SystemClock.now_ms();
            let batch = self
                .store
                .outbox_claim(&self.owner, now, now + CLAIM.as_millis() as i64, BATCH)
                .await?;
            if batch.is_empty() {
                return Ok(total);
            }
            let mut published = Vec::with_capacity(batch.len());
            for message in &batch {
                match self.publisher.publish(message).await {
                    Ok(()) => published.push(message.id.clone()),
                    Err(BusError::Decode { topic, reason }) => {
                        // A message nobody can read would block the outbox forever.
                        tracing::error!(%topic, %reason, id = %message.id, "dropping undecodable outbox message");
                        published.push(message.id.clone());
                    }
                    Err(error) => {
                        self.store.outbox_delete(&published).await?;
                        return Err(error);
                    }
                }
            }
            total += published.len();
            self.store.outbox_delete(&published).await?;
            if batch.len() < BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        loop {
            if let Err(error) = self.drain().await {
                tracing::warn!(%error, "outbox relay failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }
}
