//! Rate-limit budgets: a full rule denies with the time it frees, nothing is
//! spent then; spent counts can be given back and pruned; checks of one CA
//! from many callers at once never spend more than the budget.

use certfleet_store::{BudgetRule, Store};

use crate::support::{NOW, SECOND};

on_both_backends!(
    a_full_budget_denies_with_the_time_it_frees,
    concurrent_checks_never_spend_more_than_the_budget
);

const CA: &str = "https://ca.example/dir";
const OTHER_CA: &str = "https://other-ca.example/dir";
const HOUR: i64 = 3600 * SECOND;

fn per_domain(limit: u32) -> BudgetRule {
    BudgetRule {
        kind: "registered-domain".to_owned(),
        scope: "example.com".to_owned(),
        limit,
        window_ms: HOUR,
        spend: true,
        label: "new certificates for the registered domain example.com".to_owned(),
    }
}

async fn a_full_budget_denies_with_the_time_it_frees(store: &Store) -> anyhow::Result<()> {
    let rules = [per_domain(2)];
    for (certificate, at) in [("c1", NOW), ("c2", NOW + 10 * SECOND)] {
        assert_eq!(
            store.reserve_budget(CA, certificate, &rules, at).await?,
            Ok(())
        );
    }
    let denied = store
        .reserve_budget(CA, "c3", &rules, NOW + 20 * SECOND)
        .await?
        .expect_err("the third is over budget");
    assert_eq!(denied.used, 2);
    assert_eq!(denied.limit, 2);
    assert_eq!(
        denied.free_at,
        NOW + HOUR,
        "when the oldest leaves the window"
    );
    assert_eq!(
        store
            .rate_limit_usage(
                CA,
                "registered-domain",
                "example.com",
                HOUR,
                NOW + 20 * SECOND
            )
            .await?,
        2,
        "a denied check spends nothing"
    );
    // Another CA has its own budget.
    assert_eq!(
        store.reserve_budget(OTHER_CA, "c3", &rules, NOW).await?,
        Ok(())
    );
    // A rule that only counts (failed validations) spends nothing.
    let counting = BudgetRule {
        spend: false,
        ..per_domain(5)
    };
    assert_eq!(
        store.reserve_budget(CA, "c3", &[counting], NOW).await?,
        Ok(())
    );
    // Given back: an order that ended without a certificate.
    assert_eq!(
        store
            .release_budget(CA, "c2", &["registered-domain"], NOW)
            .await?,
        1
    );
    assert_eq!(
        store
            .reserve_budget(CA, "c3", &rules, NOW + 30 * SECOND)
            .await?,
        Ok(())
    );
    // After the window the oldest no longer counts.
    assert_eq!(
        store
            .reserve_budget(CA, "c4", &rules, NOW + HOUR + SECOND)
            .await?,
        Ok(())
    );
    // Pruned by time.
    assert_eq!(store.prune_rate_limit_events(NOW + SECOND).await?, 2);
    Ok(())
}

async fn concurrent_checks_never_spend_more_than_the_budget(store: &Store) -> anyhow::Result<()> {
    let rules = [per_domain(5)];
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..24 {
        let store = store.clone();
        let rules = rules.clone();
        calls.spawn(async move {
            store
                .reserve_budget(CA, &format!("c{index}"), &rules, NOW + i64::from(index))
                .await
        });
    }
    let mut granted = 0;
    while let Some(outcome) = calls.join_next().await {
        if outcome??.is_ok() {
            granted += 1;
        }
    }
    assert_eq!(granted, 5);
    assert_eq!(
        store
            .rate_limit_usage(CA, "registered-domain", "example.com", HOUR, NOW + 100)
            .await?,
        5
    );
    Ok(())
}
