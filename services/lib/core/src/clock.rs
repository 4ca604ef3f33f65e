//! The source of "now" for all scheduling, replaceable in tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current time in unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
}

/// Wall clock plus an offset that tests move forward (or back) at will.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock::default())
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::SeqCst);
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        system_now_ms().saturating_add(self.offset_ms())
    }
}

fn system_now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_2023() {
        assert!(SystemClock.now_ms() > 1_672_531_200_000);
    }

    #[test]
    fn manual_clock_moves_by_offset() {
        let clock = ManualClock::new();
        let start = clock.now_ms();
        clock.advance(Duration::from_secs(3600));
        let later = clock.now_ms();
        assert!(later - start >= 3_600_000);
        assert!(later - start < 3_660_000);
        clock.set_offset_ms(-86_400_000);
        assert!(clock.now_ms() < start);
        assert_eq!(clock.offset_ms(), -86_400_000);
        let shared: Arc<dyn Clock> = clock;
        assert!(shared.now_ms() > 0);
    }
}
