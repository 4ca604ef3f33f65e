//! Rate-limit accounting per CA directory (DESIGN section 6). Every counted
//! event is a row; a budget check counts the rows inside each rule's window
//! and, when every rule has room, adds its own rows in the same transaction.
//! Checks against one CA take turns through a lock row, so issuer replicas
//! together never spend more than the budget.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::{rate_limit_events, rate_limit_locks};
use crate::{Store, StoreError, new_id, transaction, with_conn};

/// One budget to respect: at most `limit` events of `kind` for `scope` within
/// `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRule {
    /// `new-order`, `registered-domain`, `exact-set` or `failed-authorization`.
    pub kind: String,
    /// What is counted: the organization (the account), a registered domain,
    /// a sorted name set, or organization and name.
    pub scope: String,
    pub limit: u32,
    pub window_ms: i64,
    /// Whether passing the check spends one event (false for a rule that
    /// only counts failures, recorded when they happen).
    pub spend: bool,
    /// The rule in plain words, for the reason shown on the certificate.
    pub label: String,
}

/// A check that found no room: which rule, and when it has room again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetDenied {
    pub label: String,
    pub used: i64,
    pub limit: u32,
    /// When the oldest event that keeps the budget full leaves the window.
    pub free_at: i64,
}

/// One counted event, as inserted.
#[derive(Insertable)]
#[diesel(table_name = rate_limit_events)]
struct NewRateLimitEvent<'a> {
    id: String,
    directory_url: &'a str,
    kind: &'a str,
    scope: &'a str,
    certificate_id: &'a str,
    at: i64,
}

impl<'a> NewRateLimitEvent<'a> {
    fn new(
        directory_url: &'a str,
        kind: &'a str,
        scope: &'a str,
        certificate_id: &'a str,
        at: i64,
    ) -> Self {
        NewRateLimitEvent {
            id: new_id(),
            directory_url,
            kind,
            scope,
            certificate_id,
            at,
        }
    }
}

impl Store {
    /// Checks every rule against the events in its window at `now_ms` and,
    /// when all have room, records one event for each rule that spends, for
    /// `certificate_id`; all in one transaction that holds the CA's turn.
    /// `Ok(Err(denied))` names the first full rule; nothing is recorded then.
    pub async fn reserve_budget(
        &self,
        directory_url: &str,
        certificate_id: &str,
        rules: &[BudgetRule],
        now_ms: i64,
    ) -> Result<Result<(), BudgetDenied>, StoreError> {
        transaction!(self, |conn| {
            // The upsert takes the row lock (PostgreSQL), held to the end of
            // the transaction: the next check of this CA waits here and then
            // sees these rows.
            diesel::insert_into(rate_limit_locks::table)
                .values((
                    rate_limit_locks::directory_url.eq(directory_url),
                    rate_limit_locks::touched_at.eq(now_ms),
                ))
                .on_conflict(rate_limit_locks::directory_url)
                .do_update()
                .set(rate_limit_locks::touched_at.eq(now_ms))
                .execute(conn)
                .await?;
            for rule in rules {
                let since = now_ms.saturating_sub(rule.window_ms);
                let in_window = rate_limit_events::table
                    .filter(rate_limit_events::directory_url.eq(directory_url))
                    .filter(rate_limit_events::kind.eq(&rule.kind))
                    .filter(rate_limit_events::scope.eq(&rule.scope))
                    .filter(rate_limit_events::at.gt(since));
                let used: i64 = in_window.count().get_result(conn).await?;
                if used >= i64::from(rule.limit) {
                    // The window frees when the event that fills the budget
                    // (the used-limit+1-th oldest) leaves it.
                    let oldest: Option<i64> = in_window
                        .order(rate_limit_events::at.asc())
                        .offset(used - i64::from(rule.limit))
                        .select(rate_limit_events::at)
                        .first(conn)
                        .await
                        .optional()?;
                    return Ok(Err(BudgetDenied {
                        label: rule.label.clone(),
                        used,
                        limit: rule.limit,
                        free_at: oldest.unwrap_or(now_ms).saturating_add(rule.window_ms),
                    }));
                }
            }
            // One statement per event: diesel-async has no multi-row insert on SQLite.
            for rule in rules.iter().filter(|rule| rule.spend) {
                diesel::insert_into(rate_limit_events::table)
                    .values(NewRateLimitEvent::new(
                        directory_url,
                        &rule.kind,
                        &rule.scope,
                        certificate_id,
                        now_ms,
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok(Ok(()))
        })
    }

    /// Counts one event that happened (a failed authorization).
    pub async fn count_rate_limit_event(
        &self,
        directory_url: &str,
        kind: &str,
        scope: &str,
        certificate_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::insert_into(rate_limit_events::table)
                .values(NewRateLimitEvent::new(
                    directory_url,
                    kind,
                    scope,
                    certificate_id,
                    now_ms,
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// Gives back the events of `kinds` that `certificate_id` spent at or after
    /// `since_ms` (an order that ended without a certificate does not count
    /// against the certificate budgets); returns how many.
    pub async fn release_budget(
        &self,
        directory_url: &str,
        certificate_id: &str,
        kinds: &[&str],
        since_ms: i64,
    ) -> Result<usize, StoreError> {
        with_conn!(self, |conn| {
            Ok(diesel::delete(
                rate_limit_events::table
                    .filter(rate_limit_events::directory_url.eq(directory_url))
                    .filter(rate_limit_events::certificate_id.eq(certificate_id))
                    .filter(rate_limit_events::kind.eq_any(kinds))
                    .filter(rate_limit_events::at.ge(since_ms)),
            )
            .execute(conn)
            .await?)
        })
    }

    /// How many events of `kind` for `scope` lie inside the window ending at
    /// `now_ms` (for reports and tests).
    pub async fn rate_limit_usage(
        &self,
        directory_url: &str,
        kind: &str,
        scope: &str,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        with_conn!(self, |conn| {
            Ok(rate_limit_events::table
                .filter(rate_limit_events::directory_url.eq(directory_url))
                .filter(rate_limit_events::kind.eq(kind))
                .filter(rate_limit_events::scope.eq(scope))
                .filter(rate_limit_events::at.gt(now_ms.saturating_sub(window_ms)))
                .count()
                .get_result(conn)
                .await?)
        })
    }

    /// Deletes events older than `before_ms` (outside every window); returns
    /// how many.
    pub async fn prune_rate_limit_events(&self, before_ms: i64) -> Result<usize, StoreError> {
        with_conn!(self, |conn| {
            Ok(
                diesel::delete(
                    rate_limit_events::table.filter(rate_limit_events::at.lt(before_ms)),
                )
                .execute(conn)
                .await?,
            )
        })
    }
}
