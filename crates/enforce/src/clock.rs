//! The clock: the one place the wall clock is read (a tidy test checks it). Everything else takes
//! `now` as a parameter or a [`Clock`] handle, so tests move time with a [`TestClock`] instead of
//! sleeping. It lives here, below the gateway, so that `countersign run` in the small front
//! binary (which links no gateway) reads the same clock; the gateway re-exports it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign_core::Timestamp;

/// A source of the current time (the system clock, or a [`TestClock`] in tests).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    })
}

/// A clock that moves only when told to.
#[derive(Clone, Debug)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    /// A clock standing at `start`.
    pub fn at(start: Timestamp) -> TestClock {
        TestClock(Arc::new(AtomicI64::new(start.millis())))
    }

    /// The time it shows.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }

    /// Moves it forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// A [`Clock`] handle that reads this clock.
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Arc::new(move || me.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_only_when_told() {
        let t = TestClock::at(Timestamp(1_000));
        let clock = t.clock();
        assert_eq!(clock(), Timestamp(1_000));
        t.advance(Duration::from_secs(2));
        assert_eq!(clock(), Timestamp(3_000));
        assert_eq!(t.now(), Timestamp(3_000));
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(system_clock()().millis() > 1_577_836_800_000);
    }
}
