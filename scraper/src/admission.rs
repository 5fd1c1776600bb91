//! Whether the host takes in new objects and series. The host closes it above its
//! `memory_limit` (`core/src/memory.rs`) and opens it again once memory went down. While it is
//! closed, watches take in no object they do not know yet, and an endpoint target's scrape writes
//! no more series than the target's last one did (the rest is counted in
//! `periscope_series_limited_total{reason="memory_limit"}`): what is known keeps being updated and
//! removed, so memory can only go down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The reason label of series left out while admission is closed.
pub const MEMORY_LIMIT: &str = "memory_limit";

/// A shared open/closed flag; clones share it.
#[derive(Debug, Clone)]
pub struct Admission(Arc<AtomicBool>);

impl Default for Admission {
    fn default() -> Self {
        Admission(Arc::new(AtomicBool::new(true)))
    }
}

impl Admission {
    /// Whether new objects and series are taken in.
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Opens or closes admission for every clone.
    pub fn set_open(&self, open: bool) {
        self.0.store(open, Ordering::Relaxed);
    }
}
