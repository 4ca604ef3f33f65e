//! Named leases: at most one holder of a role (e.g. the active scheduler) at a time.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::leases;
use crate::{Store, StoreError, transaction};

impl Store {
    /// Takes or extends the lease `name` for `owner` until `until_ms`. Returns
    /// false when another owner holds an unexpired lease.
    pub async fn acquire_named_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        transaction!(self, |conn| {
            let inserted = diesel::insert_into(leases::table)
                .values((
                    leases::name.eq(name),
                    leases::owner.eq(owner),
                    leases::lease_until.eq(until_ms),
                ))
                .on_conflict(leases::name)
                .do_nothing()
                .execute(conn)
                .await?;
            if inserted == 1 {
                return Ok(true);
            }
            let updated = diesel::update(leases::table.find(name))
                .filter(leases::owner.eq(owner).or(leases::lease_until.lt(now_ms)))
                .set((leases::owner.eq(owner), leases::lease_until.eq(until_ms)))
                .execute(conn)
                .await?;
            Ok(updated == 1)
        })
    }

    /// Gives up the lease `name` if `owner` holds it.
    pub async fn release_named_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        crate::with_conn!(self, |conn| {
            diesel::delete(leases::table.find(name))
                .filter(leases::owner.eq(owner))
                .execute(conn)
                .await?;
            Ok(())
        })
    }
}
