//! Notices an `export` call that does not return within the exporter's `export_timeout`.
//!
//! The delivery thread marks the start and end of each call; a task of the host's runtime looks
//! every so often. A call past its deadline is reported once — the exporter turns unhealthy and
//! unready, a counter and an error line say so — and again when it returns at last. The host cannot
//! interrupt the call: the thread belongs to the plugin until it returns.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The state of the call in flight, shared by the delivery thread and the watching task.
#[derive(Debug)]
pub struct Watchdog {
    timeout: Duration,
    call: Mutex<Call>,
}

#[derive(Debug, Default)]
struct Call {
    /// When the call in flight started; `None` between calls.
    started: Option<Instant>,
    /// Whether the call in flight was reported as stalled.
    stalled: bool,
}

impl Watchdog {
    /// A watchdog for calls that should return within `timeout`.
    pub fn new(timeout: Duration) -> Watchdog {
        Watchdog {
            timeout,
            call: Mutex::new(Call::default()),
        }
    }

    /// How often the watching task should look: often enough to report a stall soon after the
    /// deadline, never busier than 10 times a second.
    pub fn period(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// The delivery thread starts a call.
    pub fn begin(&self, now: Instant) {
        *self.lock() = Call {
            started: Some(now),
            stalled: false,
        };
    }

    /// The delivery thread's call returned. `Some(duration)` when it had been reported stalled.
    pub fn end(&self, now: Instant) -> Option<Duration> {
        let call = std::mem::take(&mut *self.lock());
        match call {
            Call {
                started: Some(started),
                stalled: true,
            } => Some(now.saturating_duration_since(started)),
            _ => None,
        }
    }

    /// The watching task looks. `Some(duration)` the first time the call in flight is past its
    /// deadline.
    pub fn check(&self, now: Instant) -> Option<Duration> {
        let mut call = self.lock();
        let elapsed = now.saturating_duration_since(call.started?);
        if call.stalled || elapsed < self.timeout {
            return None;
        }
        call.stalled = true;
        Some(elapsed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Call> {
        // The state is two plain fields, valid whatever a panicking holder left half done.
        self.call
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_past_its_deadline_is_reported_once_and_again_when_it_returns() {
        let dog = Watchdog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(dog.check(t0 + Duration::from_secs(60)), None, "no call yet");
        dog.begin(t0);
        assert_eq!(dog.check(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            dog.check(t0 + Duration::from_secs(11)),
            Some(Duration::from_secs(11))
        );
        assert_eq!(dog.check(t0 + Duration::from_secs(20)), None, "once");
        assert_eq!(
            dog.end(t0 + Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(dog.check(t0 + Duration::from_secs(40)), None, "idle");
    }

    #[test]
    fn a_call_within_its_deadline_is_never_reported() {
        let dog = Watchdog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        dog.begin(t0);
        assert_eq!(dog.check(t0 + Duration::from_secs(5)), None);
        assert_eq!(dog.end(t0 + Duration::from_secs(6)), None);
        dog.begin(t0 + Duration::from_secs(6));
        assert_eq!(dog.check(t0 + Duration::from_secs(12)), None, "a new call");
    }

    #[test]
    fn the_watching_period_stays_between_a_tenth_and_one_second() {
        assert_eq!(
            Watchdog::new(Duration::from_secs(60)).period(),
            Duration::from_secs(1)
        );
        assert_eq!(
            Watchdog::new(Duration::from_millis(100)).period(),
            Duration::from_millis(100)
        );
        assert_eq!(
            Watchdog::new(Duration::from_secs(2)).period(),
            Duration::from_millis(500)
        );
    }
}
