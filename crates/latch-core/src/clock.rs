//! Time as a parameter. Logic never reads the system clock directly (clippy
//! bans `SystemTime::now` outside this module), so expiry and rate-limit
//! windows can be tested by moving a clock instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    /// Saturating addition, so a hostile duration cannot wrap a deadline into the past.
    pub fn plus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
    pub fn minus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }
    /// RFC 3339 with millisecond precision, e.g. `2026-11-25T10:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let fmt = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                );
                t.format(&fmt).unwrap_or_else(|_| self.0.to_string())
            }
            Err(_) => self.0.to_string(),
        }
    }
    /// Reads an RFC 3339 time (any offset) back, to the millisecond.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok().map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The only way logic learns the time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the system clock
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock fixed at a value that tests set and advance.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// System time plus an offset that only moves forward. A dev server started
/// with `--test-clock` uses it, so black-box tests can skip ahead in time
/// (session expiry, TOTP steps, rate-limit windows) without sleeping.
///
/// It can also be frozen: it then stands still except when advanced, so a
/// test can assert exact durations (time-to-grant, time-to-revoke). Thawing
/// resumes from system time plus the offset, which is never earlier than the
/// frozen time: the clock never goes back.
#[derive(Clone, Debug)]
pub struct OffsetClock {
    offset_ms: Arc<AtomicI64>,
    /// System time when frozen, or [`OffsetClock::RUNNING`].
    frozen_ms: Arc<AtomicI64>,
}

impl Default for OffsetClock {
    fn default() -> Self {
        OffsetClock { offset_ms: Arc::default(), frozen_ms: Arc::new(AtomicI64::new(Self::RUNNING)) }
    }
}

impl OffsetClock {
    const RUNNING: i64 = i64::MIN;

    pub fn new() -> Self {
        Self::default()
    }
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn offset(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.offset_ms.load(Ordering::SeqCst)).unwrap_or(0))
    }
    /// Stops the clock where it is (`true`) or lets it run on with system time (`false`).
    pub fn freeze(&self, frozen: bool) {
        let base = if frozen { SystemClock.now().millis() } else { Self::RUNNING };
        if frozen {
            // Already frozen: stay at the time it stands at.
            let _ = self.frozen_ms.compare_exchange(Self::RUNNING, base, Ordering::SeqCst, Ordering::SeqCst);
        } else {
            self.frozen_ms.store(base, Ordering::SeqCst);
        }
    }
    pub fn is_frozen(&self) -> bool {
        self.frozen_ms.load(Ordering::SeqCst) != Self::RUNNING
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let offset = Duration::from_millis(u64::try_from(self.offset_ms.load(Ordering::SeqCst)).unwrap_or(0));
        match self.frozen_ms.load(Ordering::SeqCst) {
            Self::RUNNING => SystemClock.now().plus(offset),
            base => Timestamp(base).plus(offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(Timestamp::parse_rfc3339("2025-11-25T10:00:00.123Z"), Some(Timestamp(1_764_064_800_123)));
        assert_eq!(Timestamp::parse_rfc3339("not a time"), None);
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(1_764_064_800_123).to_rfc3339(), "2025-11-25T10:00:00.123Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp(1000));
        assert_eq!(c.now(), Timestamp(1000));
        c.advance(Duration::from_secs(30));
        assert_eq!(c.now(), Timestamp(31_000));
    }

    #[test]
    fn plus_saturates() {
        assert_eq!(Timestamp(i64::MAX - 1).plus(Duration::from_secs(10)), Timestamp(i64::MAX));
    }

    #[test]
    fn offset_clock_is_ahead_of_system() {
        let c = OffsetClock::new();
        c.advance(Duration::from_secs(3600));
        assert!(c.now().millis() >= SystemClock.now().millis() + 3_599_000);
    }

    #[test]
    fn frozen_offset_clock_moves_only_when_advanced() {
        let c = OffsetClock::new();
        c.freeze(true);
        let t = c.now();
        let wall = SystemClock.now().millis();
        while SystemClock.now().millis() < wall + 3 {
            std::hint::spin_loop();
        }
        assert_eq!(c.now(), t);
        c.freeze(true);
        assert_eq!(c.now(), t, "freezing again keeps the time");
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now().millis(), t.millis() + 90_000);
        c.freeze(false);
        assert!(!c.is_frozen());
        assert!(c.now().millis() >= t.millis() + 90_000, "thawing never goes back");
    }
}
