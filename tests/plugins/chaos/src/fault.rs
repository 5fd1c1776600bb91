//! Which fault an export call gets, and the process-wide call counters that decide it.
//!
//! The counters are statics: the host never unloads a plugin library, so they survive the host
//! restarting an exporter (a fresh instance after a panic sees the next call number, which is what
//! lets a test say "panic on call 2, then succeed"). Every chaos exporter in the process shares them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::config::ChaosConfig;

/// `export` calls made in this process so far.
static EXPORT_CALLS: AtomicU64 = AtomicU64::new(0);

/// `new` calls made in this process so far.
static NEW_CALLS: AtomicU32 = AtomicU32::new(0);

/// Counts an `export` call and returns its 1-based number.
pub fn next_export_call() -> u64 {
    EXPORT_CALLS.fetch_add(1, Ordering::SeqCst) + 1
}

/// Counts a `new` call and returns its 1-based number.
pub fn next_new_call() -> u32 {
    NEW_CALLS.fetch_add(1, Ordering::SeqCst) + 1
}

/// What an export call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Panic inside the plugin.
    Panic,
    /// Ask the host to retry.
    Retry,
    /// Reject the batch.
    Reject,
    /// Accept (and record) the batch.
    None,
}

/// The fault chosen for export call `call`; a panic wins over a retry, a retry over a reject.
pub fn for_call(config: &ChaosConfig, call: u64) -> Fault {
    if config.panic_on_calls.contains(&call) {
        Fault::Panic
    } else if config.retry_on_calls.contains(&call) || call <= config.retry_through_call {
        Fault::Retry
    } else if config.reject_on_calls.contains(&call) {
        Fault::Reject
    } else {
        Fault::None
    }
}

/// Whether `new` call `call` must fail.
pub fn new_fails(config: &ChaosConfig, call: u32) -> bool {
    call <= config.fail_new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listed_call_gets_its_fault_and_others_none() {
        let config = ChaosConfig {
            panic_on_calls: vec![1, 4],
            retry_on_calls: vec![2, 4],
            reject_on_calls: vec![3],
            ..ChaosConfig::default()
        };
        let faults: Vec<_> = (1..=5).map(|call| for_call(&config, call)).collect();
        assert_eq!(
            faults,
            [
                Fault::Panic,
                Fault::Retry,
                Fault::Reject,
                Fault::Panic,
                Fault::None
            ]
        );
    }

    #[test]
    fn only_the_first_fail_new_calls_of_new_fail() {
        let config = ChaosConfig {
            fail_new: 2,
            ..ChaosConfig::default()
        };
        let fails: Vec<_> = (1..=3).map(|call| new_fails(&config, call)).collect();
        assert_eq!(fails, [true, true, false]);
        assert!(!new_fails(&ChaosConfig::default(), 1));
    }

    #[test]
    fn call_numbers_are_one_based_and_increase() {
        let first = next_export_call();
        assert!(first >= 1);
        assert!(next_export_call() > first);
    }
}
