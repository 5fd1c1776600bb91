//! The queue between an exporter's intake (async) and its delivery thread: bounded in memory, or
//! durable on disk ([`super::DiskQueue`]); [`Queue`] is either.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use periscope_plugin_api::Batch;
use tokio::sync::Notify;

use crate::config::WhenFull;
use crate::telemetry::ExporterMetrics;

/// An exporter's queue, in memory or on disk.
#[derive(Clone)]
pub enum Queue {
    /// Bounded, in memory: lost on a crash.
    Memory(Arc<MemoryQueue>),
    /// Segment files: replayed after a crash.
    Disk(Arc<super::DiskQueue>),
}

impl Queue {
    /// Adds a batch at the tail (see each queue's `push` for what happens when full).
    pub async fn push(&self, batch: Arc<Batch>) {
        match self {
            Queue::Memory(q) => q.push(batch).await,
            Queue::Disk(q) => q.push(batch).await,
        }
    }

    /// Takes the batch at the head, waiting at most until `deadline`; `None` when closed and empty.
    pub fn pop(&self, deadline: Option<Instant>) -> Option<Arc<Batch>> {
        match self {
            Queue::Memory(q) => q.pop(deadline),
            Queue::Disk(q) => q.pop(deadline),
        }
    }

    /// Everything popped so far is delivered (or dead-lettered): a disk queue will not replay it.
    pub fn commit(&self) {
        if let Queue::Disk(q) = self {
            q.commit();
        }
    }

    /// Whether what is still queued at shutdown survives (and so is not dropped).
    pub fn is_durable(&self) -> bool {
        matches!(self, Queue::Disk(_))
    }

    /// Takes what an in-memory queue still holds (a disk queue keeps its batches for the next run).
    pub fn drain(&self) -> Vec<Arc<Batch>> {
        match self {
            Queue::Memory(q) => q.drain(),
            Queue::Disk(_) => Vec::new(),
        }
    }

    /// No more pushes will come.
    pub fn close(&self) {
        match self {
            Queue::Memory(q) => q.close(),
            Queue::Disk(q) => q.close(),
        }
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        match self {
            Queue::Memory(q) => q.is_closed(),
            Queue::Disk(q) => q.is_closed(),
        }
    }
}

/// Waits on `condvar` until notified or `deadline` (forever without one); `None` once the
/// deadline has passed. Shared by both queues' `pop`.
pub(super) fn wait_until<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, T>> {
    // A poisoned lock means a panic while holding it; both queues keep their state consistent
    // between single mutations, so carry on.
    match deadline {
        None => Some(condvar.wait(guard).unwrap_or_else(|e| e.into_inner())),
        Some(deadline) => {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            Some(
                condvar
                    .wait_timeout(guard, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0,
            )
        }
    }
}

/// A bounded FIFO of batches: pushed by the intake task, popped by the delivery thread.
pub struct MemoryQueue {
    state: Mutex<State>,
    /// Wakes the delivery thread when a batch arrives or the queue closes.
    not_empty: Condvar,
    /// Wakes the intake when room frees up (one producer, so a stored permit is enough).
    not_full: Notify,
    capacity: usize,
    when_full: WhenFull,
    metrics: ExporterMetrics,
}

#[derive(Default)]
struct State {
    items: VecDeque<Arc<Batch>>,
    closed: bool,
}

impl MemoryQueue {
    /// A queue holding at most `capacity` batches (at least one).
    pub fn new(capacity: usize, when_full: WhenFull, metrics: ExporterMetrics) -> Self {
        MemoryQueue {
            state: Mutex::new(State::default()),
            not_empty: Condvar::new(),
            not_full: Notify::new(),
            capacity: capacity.max(1),
            when_full,
            metrics,
        }
    }

    /// Adds a batch at the tail. When full, waits for room (`block`) or drops the oldest batch and
    /// counts its samples (`drop_oldest`).
    pub async fn push(&self, batch: Arc<Batch>) {
        loop {
            {
                let mut state = self.lock();
                if state.items.len() < self.capacity || self.when_full == WhenFull::DropOldest {
                    if state.items.len() >= self.capacity
                        && let Some(oldest) = state.items.pop_front()
                    {
                        self.account(&oldest, -1);
                        self.metrics
                            .dropped_queue_full
                            .inc_by(oldest.sample_count() as u64);
                    }
                    self.account(&batch, 1);
                    state.items.push_back(batch);
                    self.not_empty.notify_one();
                    return;
                }
            }
            self.not_full.notified().await;
        }
    }

    /// Takes the batch at the head, waiting until one arrives, the queue closes (`None` once it is
    /// also empty) or `deadline` passes (`None`).
    pub fn pop(&self, deadline: Option<Instant>) -> Option<Arc<Batch>> {
        let mut state = self.lock();
        loop {
            if let Some(batch) = state.items.pop_front() {
                self.account(&batch, -1);
                self.not_full.notify_one();
                return Some(batch);
            }
            if state.closed {
                return None;
            }
            state = wait_until(&self.not_empty, state, deadline)?;
        }
    }

    /// Takes every queued batch at once (used to count what shutdown could not deliver).
    pub fn drain(&self) -> Vec<Arc<Batch>> {
        let mut state = self.lock();
        let items: Vec<_> = state.items.drain(..).collect();
        for batch in &items {
            self.account(batch, -1);
        }
        self.not_full.notify_one();
        items
    }

    /// No more pushes will come; `pop` returns `None` once the queue is empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn account(&self, batch: &Batch, sign: i64) {
        self.metrics.queued_batches.add(sign);
        self.metrics
            .queued_samples
            .add(sign * batch.sample_count() as i64);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the queue's state is still consistent
        // (every mutation is a single push or pop), so carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::test_batches::{batch, value};
    use crate::telemetry::Telemetry;
    use std::time::Duration;

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_and_counts_the_drop() {
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("q");
        let queue = MemoryQueue::new(2, WhenFull::DropOldest, metrics.clone());
        for v in [1.0, 2.0, 3.0] {
            queue.push(batch(v)).await;
        }
        assert_eq!(metrics.dropped_queue_full.get(), 1);
        assert_eq!(value(&queue.pop(None).unwrap()), 2.0);
        assert_eq!(value(&queue.pop(None).unwrap()), 3.0);
        assert_eq!(metrics.queued_batches.get(), 0);
    }

    #[tokio::test]
    async fn block_waits_for_room() {
        let telemetry = Telemetry::new();
        let queue = Arc::new(MemoryQueue::new(
            1,
            WhenFull::Block,
            telemetry.exporter("q"),
        ));
        queue.push(batch(1.0)).await;
        let pusher = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.push(batch(2.0)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !pusher.is_finished(),
            "push must wait while the queue is full"
        );
        let popper = {
            let queue = queue.clone();
            tokio::task::spawn_blocking(move || value(&queue.pop(None).unwrap()))
        };
        assert_eq!(popper.await.unwrap(), 1.0);
        pusher.await.unwrap();
        assert_eq!(value(&queue.pop(None).unwrap()), 2.0);
    }

    #[test]
    fn pop_returns_none_after_close_and_at_the_deadline() {
        let telemetry = Telemetry::new();
        let queue = MemoryQueue::new(4, WhenFull::Block, telemetry.exporter("q"));
        assert!(
            queue
                .pop(Some(Instant::now() + Duration::from_millis(10)))
                .is_none()
        );
        queue.close();
        assert!(queue.pop(None).is_none());
    }
}
