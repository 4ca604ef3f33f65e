//! The outbox: jobs and events written with the state change that causes them,
//! published by a relay, then deleted.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{Effects, OutboxMessage};
use crate::schema::outbox;
use diesel_async::AsyncConnection as _;

use crate::{Pools, Store, StoreError, transaction, with_conn, write_effects};

impl Store {
    /// The oldest unpublished messages.
    pub async fn outbox_batch(&self, limit: i64) -> Result<Vec<OutboxMessage>, StoreError> {
        with_conn!(self, |conn| {
            Ok(outbox::table
                .order(outbox::id.asc())
                .limit(limit)
                .select(OutboxMessage::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Claims up to `limit` of the oldest messages for `owner` until
    /// `claim_until_ms`: rows nobody claimed, whose claim expired, or that
    /// `owner` claimed before. On PostgreSQL concurrent relays skip each
    /// other's rows (`FOR UPDATE SKIP LOCKED`); SQLite has one writer anyway.
    pub async fn outbox_claim(
        &self,
        owner: &str,
        now_ms: i64,
        claim_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let claimable = || {
            outbox::table
                .filter(
                    outbox::claimed_until
                        .is_null()
                        .or(outbox::claimed_until.lt(now_ms))
                        .or(outbox::claimed_by.eq(owner)),
                )
                .order(outbox::id.asc())
                .limit(limit)
                .select(outbox::id)
        };
        /// Marks the rows `$ids` claimed and returns them, on `$conn`.
        macro_rules! claim {
            ($conn:ident, $ids:expr) => {{
                let ids: Vec<String> = $ids;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
                    .set((
                        outbox::claimed_by.eq(owner),
                        outbox::claimed_until.eq(claim_until_ms),
                    ))
                    .execute($conn)
                    .await?;
                Ok(outbox::table
                    .filter(outbox::id.eq_any(&ids))
                    .order(outbox::id.asc())
                    .select(OutboxMessage::as_select())
                    .load($conn)
                    .await?)
            }};
        }
        match self.pools() {
            Pools::Postgres(pool) => {
                let mut connection = pool
                    .get()
                    .await
                    .map_err(|error| StoreError::Unavailable(error.to_string()))?;
                connection
                    .transaction::<_, StoreError, _>(async |conn| {
                        claim!(
                            conn,
                            claimable().for_update().skip_locked().load(conn).await?
                        )
                    })
                    .await
            }
            Pools::Sqlite(connection) => {
                let mut guard = connection.lock().await;
                guard
                    .transaction::<_, StoreError, _>(async |conn| {
                        claim!(conn, claimable().load(conn).await?)
                    })
                    .await
            }
        }
    }

    /// Removes published messages.
    pub async fn outbox_delete(&self, ids: &[String]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        with_conn!(self, |conn| {
            Ok(diesel::delete(outbox::table.filter(outbox::id.eq_any(ids)))
                .execute(conn)
                .await?)
        })
    }

    /// Writes messages that accompany no state change (e.g. a scheduler nudge).
    pub async fn outbox_insert(&self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        transaction!(self, |conn| {
            for message in messages {
                diesel::insert_into(outbox::table)
                    .values(message)
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
    }

    /// Writes outbox messages and audit entries together, in one transaction,
    /// for a request that changes no row of its own yet (e.g. a revocation:
    /// its job and its audit entry). Either both are written or neither.
    pub async fn write_effects(&self, effects: Effects) -> Result<(), StoreError> {
        transaction!(self, |conn| {
            write_effects!(conn, effects);
            Ok(())
        })
    }
}
