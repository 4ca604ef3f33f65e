//! The outbox: jobs and events written with the state change that causes them,
//! published by a relay, then deleted.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{Effects, OutboxMessage};
use crate::schema::outbox;
use crate::{Store, StoreError, transaction, with_conn, write_effects};

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
