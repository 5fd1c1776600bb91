//! The allocator's own view of the host's memory, as self-metrics: how much the host asked for
//! (`allocated`), what that occupies in pages (`active`), what the allocator keeps resident or
//! mapped for it, its metadata, and the free pages it holds on to, `dirty` (freed, still resident,
//! reused first; jemalloc's background thread returns them to the kernel after a delay) and
//! `retained` (unmapped address space kept for reuse, not resident). `resident` minus `allocated`
//! is the slack between what the host holds and what the kernel charges it for.
//!
//! Read from jemalloc at each scrape of the host's `/metrics`; without the `jemalloc` feature
//! (the system's malloc) there is nothing to report and the family is left out.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};

/// `periscope_allocator_bytes{kind}`, read at each scrape.
#[derive(Clone)]
pub struct AllocatorCollector {
    bytes: IntGaugeVec,
}

impl AllocatorCollector {
    /// The collector; register it once.
    pub fn new() -> AllocatorCollector {
        let opts = Opts::new(
            "periscope_allocator_bytes",
            "The allocator's view of the host's memory by kind: allocated (asked for), active (pages holding allocations), resident, mapped, metadata, dirty (free pages still resident), retained (free address space, not resident).",
        );
        AllocatorCollector {
            bytes: IntGaugeVec::new(opts, &["kind"]).expect("valid gauge"),
        }
    }
}

impl Default for AllocatorCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for AllocatorCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.bytes.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(figures) = figures() else {
            return Vec::new();
        };
        for (kind, bytes) in figures {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            self.bytes.with_label_values(&[kind]).set(bytes);
        }
        self.bytes.collect()
    }
}

/// Each kind of figure and its size in bytes, fresh from jemalloc. Dirty pages have no typed
/// accessor in `tikv-jemalloc-ctl`: they are read by name, which is `unsafe` only because the
/// caller names the value's type.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[allow(unsafe_code)]
fn figures() -> Option<Vec<(&'static str, usize)>> {
    use tikv_jemalloc_ctl::{epoch, raw, stats};
    // Statistics are cached until the epoch moves.
    epoch::advance().ok()?;
    // `MALLCTL_ARENAS_ALL` (4096): the sum over every arena. Both keys are `size_t`.
    // SAFETY: `usize` is `size_t`, the type jemalloc documents for both keys.
    let dirty_pages = unsafe { raw::read::<usize>(b"stats.arenas.4096.pdirty\0") }.ok()?;
    // SAFETY: as above.
    let page = unsafe { raw::read::<usize>(b"arenas.page\0") }.ok()?;
    Some(vec![
        ("allocated", stats::allocated::read().ok()?),
        ("active", stats::active::read().ok()?),
        ("resident", stats::resident::read().ok()?),
        ("mapped", stats::mapped::read().ok()?),
        ("metadata", stats::metadata::read().ok()?),
        ("retained", stats::retained::read().ok()?),
        ("dirty", dirty_pages * page),
    ])
}

/// Without jemalloc there is nothing to read.
#[cfg(not(all(feature = "jemalloc", not(target_env = "msvc"))))]
fn figures() -> Option<Vec<(&'static str, usize)>> {
    None
}
