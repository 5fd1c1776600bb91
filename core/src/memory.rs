//! `[host] memory_limit`: the host stops taking in new objects and series before it is
//! OOM-killed.
//!
//! Like Go's `GOMEMLIMIT`, the limit is either configured (`memory_limit = "512MiB"`) or, when
//! the host runs in a container, read from the cgroup v2 limit (`/sys/fs/cgroup/memory.max`).
//! Once a second the host reads its resident memory (`VmRSS` of `/proc/self/status`: what the kernel's
//! OOM killer and the cgroup judge it by). Above [`CLOSE_AT`] of the limit it closes the host's
//! [`Admission`]: watches stop taking in objects they do not know yet (each one is counted in
//! `periscope_watch_objects_ignored_total{reason="memory_limit"}`) and an endpoint target writes
//! no more series than its last scrape did (the rest counted in
//! `periscope_series_limited_total{reason="memory_limit"}`); what is known keeps being updated and
//! removed, so memory can only go down. Below [`OPEN_AT`] admission opens again. Each change is logged once; `/healthz` and `/readyz` do not change: a host holding its
//! memory is working, only not taking more.

use std::path::Path;
use std::time::Duration;

use periscope_scraper::admission::Admission;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The share of the limit above which new objects are refused.
pub const CLOSE_AT: f64 = 0.90;
/// The share of the limit below which new objects are taken again.
pub const OPEN_AT: f64 = 0.85;
/// How often resident memory is read.
const PERIOD: Duration = Duration::from_secs(1);

/// The limit in bytes: the configured one, or the cgroup v2 limit of the host's cgroup when
/// there is one (`max` means none).
pub fn limit(configured: Option<u64>) -> Option<u64> {
    configured.or_else(|| cgroup_limit(Path::new("/sys/fs/cgroup/memory.max")))
}

/// The number in a cgroup v2 `memory.max` file; `None` for `max`, a missing or unreadable file.
fn cgroup_limit(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.trim().parse().ok()
}

/// The host's resident memory in bytes, from `VmRSS` in `/proc/self/status`.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether new objects are taken in, after reading `resident` bytes against `limit`, when they
/// were (`admitting`) before: closes above [`CLOSE_AT`], opens again below [`OPEN_AT`].
pub fn admits(admitting: bool, resident: u64, limit: u64) -> bool {
    let share = resident as f64 / limit as f64;
    if admitting {
        share <= CLOSE_AT
    } else {
        share < OPEN_AT
    }
}

/// Watches the host's memory against `limit` until `shutdown`, opening and closing the
/// admission of new objects and series.
pub async fn watch(limit: u64, admission: Admission, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(resident) = resident_bytes() else {
            continue;
        };
        let before = admission.is_open();
        let now = admits(before, resident, limit);
        if now != before {
            admission.set_open(now);
            if now {
                info!(
                    resident,
                    limit, "memory below the limit again: taking in new objects and series"
                );
            } else {
                warn!(
                    resident,
                    limit,
                    "memory near the limit: new objects and series are ignored (counted in periscope_watch_objects_ignored_total and periscope_series_limited_total)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_closes_above_ninety_percent_and_opens_below_eighty_five() {
        assert!(admits(true, 900, 1000));
        assert!(!admits(true, 901, 1000));
        assert!(
            !admits(false, 860, 1000),
            "between the two, it stays closed"
        );
        assert!(admits(false, 849, 1000));
    }

    #[test]
    fn the_cgroup_limit_is_a_number_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.max");
        std::fs::write(&file, "536870912\n").unwrap();
        assert_eq!(cgroup_limit(&file), Some(512 << 20));
        std::fs::write(&file, "max\n").unwrap();
        assert_eq!(cgroup_limit(&file), None);
        assert_eq!(cgroup_limit(&dir.path().join("missing")), None);
    }

    #[test]
    fn resident_memory_is_read() {
        assert!(resident_bytes().is_some_and(|bytes| bytes > 1 << 20));
    }
}
