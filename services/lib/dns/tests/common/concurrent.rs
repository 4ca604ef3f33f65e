//! Separate issuances writing values at one name at the same time. Included
//! with `#[path]` by the tests that need it, so that `common` holds only
//! what every provider test uses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use certfleet_dns::{DnsError, DnsProvider, TxtRecord};

use crate::common::{NAME, record};

/// A call of a provider, such as `|dns, record| dns.present(record)`.
pub type Call = for<'a> fn(
    &'a dyn DnsProvider,
    &'a TxtRecord,
) -> Pin<Box<dyn Future<Output = Result<(), DnsError>> + Send + 'a>>;

/// Makes `call` for every value at `NAME` at once, each through a provider
/// of its own from `provider`, as separate issuances would.
pub async fn at_once(
    values: &[String],
    provider: impl Fn() -> anyhow::Result<Arc<dyn DnsProvider>>,
    call: Call,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for value in values {
        let dns = provider()?;
        let wanted = record(NAME, value);
        tasks.push(tokio::spawn(async move { call(&*dns, &wanted).await }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
