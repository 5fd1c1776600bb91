//! Exponential backoff with jitter, and a stop signal that cuts waits short at shutdown.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::RetryConfig;

/// Exponential backoff: each wait doubles up to a maximum, with "equal jitter" (a random point in
/// the upper half) so exporters that failed together do not retry together.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `retry.initial`, capped at `retry.max`.
    pub fn new(retry: &RetryConfig) -> Self {
        Backoff {
            initial: retry.initial.0,
            max: retry.max.0.max(retry.initial.0),
            attempt: 0,
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling / 2 + ceiling.mul_f64(fastrand::f64() / 2.0)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Tells a delivery thread that shutdown began and by when it must be done.
#[derive(Debug, Default)]
pub struct Stop {
    deadline: Mutex<Option<Instant>>,
    changed: Condvar,
}

impl Stop {
    /// Starts shutdown: work may go on until `now + grace`.
    pub fn begin(&self, grace: Duration) {
        let mut deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        *deadline = Some(Instant::now() + grace);
        self.changed.notify_all();
    }

    /// Whether the shutdown deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|d| Instant::now() >= d)
    }

    /// Sleeps for `wait`, or less if the shutdown deadline comes first.
    pub fn sleep(&self, wait: Duration) {
        // A plugin's `Retry` may ask for more than a clock can add: a century is as long.
        let wait = wait.min(Duration::from_secs(100 * 365 * 24 * 3600));
        let until = Instant::now() + wait;
        let mut deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let end = deadline.map_or(until, |d| d.min(until));
            let now = Instant::now();
            if now >= end {
                return;
            }
            deadline = self
                .changed
                .wait_timeout(deadline, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::Duration as D;

    #[test]
    fn waits_double_within_jitter_and_stop_at_the_cap() {
        let mut b = Backoff::new(&RetryConfig {
            initial: D(Duration::from_millis(100)),
            max: D(Duration::from_millis(400)),
        });
        let waits: Vec<_> = (0..5).map(|_| b.next_wait().as_millis()).collect();
        for (wait, ceiling) in waits.iter().zip([100, 200, 400, 400, 400]) {
            assert!((ceiling / 2..=ceiling).contains(wait), "{waits:?}");
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }

    #[test]
    fn stop_cuts_short_a_sleep_longer_than_a_clock_can_add() {
        let stop = std::sync::Arc::new(Stop::default());
        let s = stop.clone();
        let t = std::thread::spawn(move || s.sleep(Duration::MAX));
        std::thread::sleep(Duration::from_millis(20));
        stop.begin(Duration::ZERO);
        assert!(t.join().is_ok(), "the sleep must not panic");
    }

    #[test]
    fn stop_cuts_a_sleep_short() {
        let stop = std::sync::Arc::new(Stop::default());
        let started = Instant::now();
        let s = stop.clone();
        let t = std::thread::spawn(move || s.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        stop.begin(Duration::ZERO);
        t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(stop.expired());
    }
}
