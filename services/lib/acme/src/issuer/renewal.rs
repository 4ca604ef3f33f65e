//! Renewing the way the CA asks: rate-limit budgets spent before a new order
//! (DESIGN section 6), the CA's renewal information (ARI, RFC 9773) fetched
//! after issuance and again when the CA says, and the renewal time chosen in
//! its window or by the lifetime rule.

use std::collections::BTreeSet;
use std::time::Duration;

use certfleet_core::renewal::renew_before_override;
use certfleet_core::{ari_renew_at, registered_domain, renew_at};
use certfleet_store::{BudgetRule, Certificate, CertificateVersion, RenewalPlan, StoreError};
use instant_acme::{Account, CertificateIdentifier};

use super::Issuer;
use crate::config::Budget;
use crate::{AcmeError, CaSettings};

/// The CA's ARI answer is fetched again after its `Retry-After`, within these
/// bounds: not more often than every minute, at least twice a day.
const ARI_MIN_RECHECK: Duration = Duration::from_secs(60);
const ARI_MAX_RECHECK: Duration = Duration::from_secs(12 * 3600);
/// When the CA offers ARI but did not answer: ask again after this.
const ARI_RETRY: Duration = Duration::from_secs(3600);
/// Certificates whose window is fetched again per pass.
const ARI_BATCH: i64 = 200;
/// The lease that makes one issuer replica refresh the windows.
const ARI_LEASE: &str = "ari-refresh";
const ARI_LEASE_MS: i64 = 60_000;

/// Rate-limit kinds as counted in the store.
pub(crate) const NEW_ORDER: &str = "new-order";
pub(crate) const REGISTERED_DOMAIN: &str = "registered-domain";
pub(crate) const EXACT_SET: &str = "exact-set";
pub(crate) const FAILED_AUTHORIZATION: &str = "failed-authorization";

/// What kind of order a certificate is about to place, for the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderKind {
    /// A first certificate for these names: every budget applies.
    New,
    /// A renewal outside (or without) the CA's ARI window: only the exact-set
    /// and failed-authorization budgets apply.
    Renewal,
    /// A renewal inside the CA's ARI window, sent with `replaces`: exempt.
    AriRenewal,
}

impl Issuer {
    /// The certificate an order of `certificate` at `ca` replaces (RFC 9773
    /// `replaces`), and whether the renewal is inside the CA's window: the
    /// current version, when this CA issued it and offered a window for it.
    pub(super) async fn replaced(
        &self,
        certificate: &Certificate,
        ca: &CaSettings,
        now_ms: i64,
    ) -> Result<(OrderKind, Option<CertificateIdentifier<'static>>), AcmeError> {
        let Some(version_id) = &certificate.current_version_id else {
            return Ok((OrderKind::New, None));
        };
        let version = self
            .store
            .versions_by_ids(
                &certificate.organization_id,
                std::slice::from_ref(version_id),
            )
            .await?
            .into_iter()
            .next();
        let Some(version) = version else {
            return Ok((OrderKind::Renewal, None));
        };
        let issued_here = self
            .issuer_of(&version)
            .is_ok_and(|issuer| issuer.name == ca.name);
        if !issued_here || version.ari_start.is_none() {
            return Ok((OrderKind::Renewal, None));
        }
        let id = crate::certs::ari_certificate_id(&version.leaf_pem);
        let inside = version.ari_start.is_some_and(|start| start <= now_ms);
        let kind = if id.is_some() && inside {
            OrderKind::AriRenewal
        } else {
            OrderKind::Renewal
        };
        Ok((kind, id))
    }

    /// The configured CA that issued `version` (versions from before the
    /// issuer was recorded: the default one).
    pub(super) fn issuer_of(&self, version: &CertificateVersion) -> Result<CaSettings, AcmeError> {
        let found = match &version.issuer {
            Some(name) => self.config.issuer(name),
            None => self.config.default_issuer(),
        };
        found.cloned().ok_or_else(|| {
            AcmeError::IssuerGone(
                version
                    .issuer
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
            )
        })
    }

    /// Spends the budgets a new order of `kind` needs at `ca`, or says how
    /// long the work waits ([`AcmeError::Deferred`]).
    pub(super) async fn spend_budget(
        &self,
        certificate: &Certificate,
        ca: &CaSettings,
        kind: OrderKind,
        now_ms: i64,
    ) -> Result<(), AcmeError> {
        let rules = self.budget_rules(certificate, ca, kind);
        if rules.is_empty() {
            return Ok(());
        }
        match self
            .store
            .reserve_budget(&ca.directory_url, &certificate.id, &rules, now_ms)
            .await?
        {
            Ok(()) => Ok(()),
            Err(denied) => {
                let reason = format!(
                    "waiting for the rate-limit budget: {} ({} used); next attempt at {}",
                    denied.label,
                    denied.used,
                    format_ms(denied.free_at)
                );
                tracing::info!(certificate_id = %certificate.id, issuer = %ca.name, %reason, "order put off");
                Err(AcmeError::Deferred {
                    reason,
                    until_ms: denied.free_at,
                })
            }
        }
    }

    fn budget_rules(
        &self,
        certificate: &Certificate,
        ca: &CaSettings,
        kind: OrderKind,
    ) -> Vec<BudgetRule> {
        if kind == OrderKind::AriRenewal {
            return Vec::new();
        }
        let limits = &self.config.rate_limits;
        let names = certificate.name_list();
        let mut rules = Vec::new();
        let mut rule = |kind: &str, scope: String, budget: Budget, spend: bool, label: String| {
            if budget.limit > 0 {
                rules.push(BudgetRule {
                    kind: kind.to_owned(),
                    scope,
                    limit: budget.limit,
                    window_ms: millis(budget.window),
                    spend,
                    label: format!(
                        "{label} at {}: {} per {}",
                        ca.name,
                        budget.limit,
                        span(budget.window)
                    ),
                });
            }
        };
        for name in &names {
            rule(
                FAILED_AUTHORIZATION,
                failed_authorization_scope(&certificate.organization_id, name),
                limits.failed_authorizations_per_name,
                false,
                format!("failed validations of {name}"),
            );
        }
        if kind == OrderKind::New {
            rule(
                NEW_ORDER,
                certificate.organization_id.clone(),
                limits.orders_per_account,
                true,
                "new orders of the organization's account".to_owned(),
            );
            let domains: BTreeSet<String> =
                names.iter().map(|name| registered_domain(name)).collect();
            for domain in domains {
                rule(
                    REGISTERED_DOMAIN,
                    domain.clone(),
                    limits.certificates_per_domain,
                    true,
                    format!("new certificates for the registered domain {domain}"),
                );
            }
        }
        rule(
            EXACT_SET,
            certificate.names_key.clone(),
            limits.certificates_per_name_set,
            true,
            format!("certificates for exactly {}", certificate.names_key),
        );
        rules
    }

    /// Gives back the certificate budgets an order spent at `since_ms` when it
    /// ended without a certificate (the CA counts issued certificates).
    pub(super) async fn release_budget(
        &self,
        certificate: &Certificate,
        ca: &CaSettings,
        since_ms: i64,
    ) {
        if let Err(error) = self
            .store
            .release_budget(
                &ca.directory_url,
                &certificate.id,
                &[REGISTERED_DOMAIN, EXACT_SET],
                since_ms,
            )
            .await
        {
            tracing::warn!(certificate_id = %certificate.id, %error, "cannot give back the rate-limit budget of a failed order");
        }
    }

    /// Counts a failed authorization of `name` against the account at `ca`.
    pub(super) async fn count_failed_authorization(
        &self,
        certificate: &Certificate,
        ca: &CaSettings,
        name: &str,
    ) {
        let scope = failed_authorization_scope(&certificate.organization_id, name);
        if let Err(error) = self
            .store
            .count_rate_limit_event(
                &ca.directory_url,
                FAILED_AUTHORIZATION,
                &scope,
                &certificate.id,
                self.clock.now_ms(),
            )
            .await
        {
            tracing::warn!(certificate_id = %certificate.id, %error, "cannot count a failed authorization");
        }
    }

    /// When the version just issued by `ca` is to be renewed: inside the CA's
    /// ARI window when it offers one, else by the lifetime rule; the
    /// certificate's own `renew_before` can only make it earlier.
    pub(super) async fn renewal_plan(
        &self,
        certificate: &Certificate,
        ca: &CaSettings,
        account: Option<&Account>,
        not_before: i64,
        not_after: i64,
        leaf_pem: &str,
    ) -> RenewalPlan {
        let now = self.clock.now_ms();
        let lifetime = lifetime_plan(not_before, not_after, certificate.renew_before_ms);
        let Some(account) = account else {
            return lifetime;
        };
        match self.fetch_window(account, ca, leaf_pem).await {
            AriAnswer::Window {
                start,
                end,
                recheck,
            } => {
                let chosen = ari_renew_at(start, end, rand::random::<f64>(), now);
                self.window_plan(
                    certificate,
                    ca,
                    (start, end),
                    chosen,
                    now + recheck,
                    (not_before, not_after),
                )
            }
            AriAnswer::NotOffered => lifetime,
            AriAnswer::Failed => RenewalPlan {
                ari_next_at: Some(now + millis(ARI_RETRY)),
                ..lifetime
            },
        }
    }

    fn window_plan(
        &self,
        certificate: &Certificate,
        ca: &CaSettings,
        (start, end): (i64, i64),
        chosen: i64,
        ari_next_at: i64,
        (not_before, not_after): (i64, i64),
    ) -> RenewalPlan {
        let mut reason = format!(
            "a random time in {}'s renewal window {} to {} (ARI)",
            ca.name,
            format_ms(start),
            format_ms(end)
        );
        let mut at = chosen;
        // The same override (and guard against a renewal loop) as the
        // lifetime rule's.
        if let Some(asked) =
            renew_before_override(not_before, not_after, certificate.renew_before_ms)
            && asked < at
        {
            at = asked;
            reason = format!(
                "{} before expiry, as the certificate asks (earlier than {}'s ARI window)",
                span(Duration::from_millis(
                    u64::try_from(not_after - asked).unwrap_or(0)
                )),
                ca.name
            );
        }
        RenewalPlan {
            renew_at: at,
            reason,
            ari_window: Some((start, end)),
            ari_next_at: Some(ari_next_at),
        }
    }

    /// The CA's suggested window for the certificate in `leaf_pem`.
    async fn fetch_window(&self, account: &Account, ca: &CaSettings, leaf_pem: &str) -> AriAnswer {
        let Some(id) = crate::certs::ari_certificate_id(leaf_pem) else {
            return AriAnswer::NotOffered;
        };
        let call = tokio::time::timeout(self.config.request_timeout, account.renewal_info(&id));
        match call.await {
            Ok(Ok((info, retry_after))) => {
                let start = info
                    .suggested_window
                    .start
                    .unix_timestamp()
                    .saturating_mul(1000);
                let end = info
                    .suggested_window
                    .end
                    .unix_timestamp()
                    .saturating_mul(1000);
                if end < start {
                    tracing::warn!(issuer = %ca.name, certificate = %id, "the CA's renewal window ends before it starts; ignored");
                    return AriAnswer::Failed;
                }
                let recheck = millis(retry_after.clamp(ARI_MIN_RECHECK, ARI_MAX_RECHECK));
                AriAnswer::Window {
                    start,
                    end,
                    recheck,
                }
            }
            Ok(Err(instant_acme::Error::Unsupported(_))) => AriAnswer::NotOffered,
            Ok(Err(error)) => {
                tracing::warn!(issuer = %ca.name, certificate = %id, %error, "cannot fetch the CA's renewal information; asked again later");
                AriAnswer::Failed
            }
            Err(_) => {
                tracing::warn!(issuer = %ca.name, certificate = %id, "no renewal information from the CA in time; asked again later");
                AriAnswer::Failed
            }
        }
    }

    /// Fetches the windows that are due again, while holding the lease (one
    /// issuer replica does it); returns how many certificates were looked at.
    pub async fn refresh_renewal_info(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        if !self
            .store
            .acquire_named_lease(ARI_LEASE, &self.owner, now, now + ARI_LEASE_MS)
            .await?
        {
            return Ok(0);
        }
        let due = self.store.ari_due(now, ARI_BATCH).await?;
        let count = due.len();
        for (certificate, version) in due {
            self.refresh_one(&certificate, &version).await?;
        }
        // Housekeeping under the same lease: counts outside every window.
        let pruned = self
            .store
            .prune_rate_limit_events(now.saturating_sub(self.longest_budget_window()))
            .await?;
        if pruned > 0 {
            tracing::debug!(pruned, "rate-limit events outside every window deleted");
        }
        self.store
            .release_named_lease(ARI_LEASE, &self.owner)
            .await?;
        Ok(count)
    }

    async fn refresh_one(
        &self,
        certificate: &Certificate,
        version: &CertificateVersion,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let ca = self.issuer_of(version).ok();
        let answer = match &ca {
            Some(ca) => match self.accounts.get(&certificate.organization_id, ca).await {
                Ok(account) => self.fetch_window(&account, ca, &version.leaf_pem).await,
                Err(error) => {
                    tracing::warn!(certificate_id = %certificate.id, %error, "cannot load the ACME account to fetch the renewal window");
                    AriAnswer::Failed
                }
            },
            // The issuing CA is no longer configured: the lifetime rule.
            None => AriAnswer::NotOffered,
        };
        let (window, renew_at, next) = match (answer, &ca) {
            (
                AriAnswer::Window {
                    start,
                    end,
                    recheck,
                },
                Some(ca),
            ) => {
                let unchanged = version.ari_start == Some(start) && version.ari_end == Some(end);
                if unchanged {
                    (None, None, Some(now + recheck))
                } else {
                    let chosen = ari_renew_at(start, end, rand::random::<f64>(), now);
                    let plan = self.window_plan(
                        certificate,
                        ca,
                        (start, end),
                        chosen,
                        now + recheck,
                        (version.not_before, version.not_after),
                    );
                    tracing::info!(certificate_id = %certificate.id, issuer = %ca.name, renew_at = plan.renew_at / 1000, "the CA's renewal window changed; renewal time chosen again");
                    (Some((start, end)), Some(plan), Some(now + recheck))
                }
            }
            (AriAnswer::Failed, _) => (None, None, Some(now + millis(ARI_RETRY))),
            _ => {
                // No longer offered: back to the lifetime rule, never asked again.
                let plan = lifetime_plan(
                    version.not_before,
                    version.not_after,
                    certificate.renew_before_ms,
                );
                (None, Some(plan), None)
            }
        };
        self.store
            .record_renewal_window(
                &certificate.organization_id,
                &certificate.id,
                &version.id,
                window,
                renew_at
                    .as_ref()
                    .map(|plan| (plan.renew_at, plan.reason.as_str())),
                next,
                now,
            )
            .await?;
        Ok(())
    }

    /// The longest window of the budgets (at least a week, so a replica with
    /// shorter windows never deletes what another replica's longer ones
    /// still count), in milliseconds.
    fn longest_budget_window(&self) -> i64 {
        let limits = &self.config.rate_limits;
        [
            limits.orders_per_account,
            limits.certificates_per_domain,
            limits.certificates_per_name_set,
            limits.failed_authorizations_per_name,
        ]
        .iter()
        .map(|budget| millis(budget.window))
        .chain([millis(Duration::from_secs(7 * 86_400))])
        .max()
        .unwrap_or(i64::MAX)
        .saturating_add(millis(Duration::from_secs(3600)))
    }

    /// Refreshes the windows every `interval` until `stop` completes.
    pub async fn run_renewal_info_until(
        self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        crate::every(interval, stop, "renewal information pass", || {
            self.refresh_renewal_info()
        })
        .await;
    }
}

enum AriAnswer {
    Window { start: i64, end: i64, recheck: i64 },
    NotOffered,
    Failed,
}

/// The lifetime rule (DESIGN section 5), with its reason in words.
pub(crate) fn lifetime_plan(
    not_before: i64,
    not_after: i64,
    renew_before_ms: Option<i64>,
) -> RenewalPlan {
    let at = renew_at(not_before, not_after, renew_before_ms);
    let default_at = renew_at(not_before, not_after, None);
    let lifetime = Duration::from_millis(u64::try_from(not_after - not_before).unwrap_or(0));
    let asked_too_much = renew_before_ms
        .filter(|before| {
            *before > 0 && renew_before_override(not_before, not_after, Some(*before)).is_none()
        })
        .map(|before| {
            format!(
                " (renew_before of {} is not shorter than the lifetime, so it is ignored)",
                span(Duration::from_millis(u64::try_from(before).unwrap_or(0)))
            )
        })
        .unwrap_or_default();
    let reason = if at < default_at {
        let before = Duration::from_millis(u64::try_from(not_after - at).unwrap_or(0));
        format!("{} before expiry, as the certificate asks", span(before))
    } else if lifetime <= Duration::from_secs(10 * 86_400) {
        format!("half of the {} lifetime left", span(lifetime))
    } else {
        format!("a third of the {} lifetime left", span(lifetime))
    };
    RenewalPlan::at(at, format!("{reason}{asked_too_much}"))
}

pub(crate) fn failed_authorization_scope(organization_id: &str, name: &str) -> String {
    format!("{organization_id}/{name}")
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A duration in the largest whole unit: `7 days`, `3 hours`, `90 seconds`;
/// from two days (or hours) on, to the nearest one (a certificate's lifetime
/// is rarely whole days: Pebble's is a second short of 1,826).
pub fn span(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (amount, unit) = match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 2 * 86_400 => ((s + 43_200) / 86_400, "day"),
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s >= 2 * 3600 => ((s + 1800) / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    if amount == 1 {
        format!("1 {unit}")
    } else {
        format!("{amount} {unit}s")
    }
}

/// Unix milliseconds as RFC 3339 (UTC, whole seconds).
pub(crate) fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn spans_read_in_whole_units() {
        assert_eq!(span(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(span(Duration::from_secs(3 * 3600)), "3 hours");
        assert_eq!(span(Duration::from_secs(3600)), "1 hour");
        assert_eq!(span(Duration::from_secs(90)), "90 seconds");
        assert_eq!(span(Duration::from_secs(157_766_399)), "1826 days");
        assert_eq!(span(Duration::from_secs(3 * 3600 + 1)), "3 hours");
        assert_eq!(format_ms(1_796_677_200_000), "2026-12-07T21:00:00Z");
    }

    #[test]
    fn the_lifetime_rule_says_why() {
        let plan = lifetime_plan(0, 90 * DAY, None);
        assert_eq!(plan.renew_at, 60 * DAY);
        assert_eq!(plan.reason, "a third of the 90 days lifetime left");
        let short = lifetime_plan(0, 6 * DAY, None);
        assert_eq!(short.renew_at, 3 * DAY);
        assert_eq!(short.reason, "half of the 6 days lifetime left");
        let asked = lifetime_plan(0, 90 * DAY, Some(45 * DAY));
        assert_eq!(asked.renew_at, 45 * DAY);
        assert_eq!(
            asked.reason,
            "45 days before expiry, as the certificate asks"
        );
        assert_eq!(asked.ari_window, None);
        let impossible = lifetime_plan(0, 6 * DAY, Some(30 * DAY));
        assert_eq!(impossible.renew_at, 3 * DAY, "no renewal loop");
        assert_eq!(
            impossible.reason,
            "half of the 6 days lifetime left (renew_before of 30 days is not shorter than the lifetime, so it is ignored)"
        );
    }
}
