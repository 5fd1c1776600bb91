//! The pipeline every object input applies objects with, which a config reload replaces.
//!
//! A reload that changes `[[resources]]` compiles a new [`ObjectPipeline`] and publishes it as a
//! new [`Generation`]. Each running input applies every object it holds again with it (a watch
//! from what it keeps, without asking the apiserver), then says so; aggregates and derived
//! metrics, whose state the new pipeline rebuilds from those objects, are computed again only
//! once every input has done it, so they never show a half-filled state.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::ObjectPipeline;

/// One pipeline, and how many inputs have still to apply their objects with it.
#[derive(Debug)]
pub struct Generation {
    pipeline: Arc<ObjectPipeline>,
    pending: AtomicUsize,
    done: Notify,
}

impl Generation {
    /// The pipeline.
    pub fn pipeline(&self) -> &Arc<ObjectPipeline> {
        &self.pipeline
    }

    /// Records that one input has applied all its objects with this pipeline.
    pub fn reapplied(&self) {
        let before = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .unwrap_or(0);
        if before <= 1 {
            self.done.notify_waiters();
        }
    }

    /// Waits until every input counted when it was published has applied its objects, at most
    /// `timeout`; false if some had not by then.
    pub async fn all_reapplied(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.done.notified();
                if self.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

/// Publishes pipelines to the inputs (held by the host).
#[derive(Debug)]
pub struct PipelinePublisher(watch::Sender<Arc<Generation>>);

/// An input's view of the current pipeline.
#[derive(Debug, Clone)]
pub struct SharedPipeline(watch::Receiver<Arc<Generation>>);

impl PipelinePublisher {
    /// A publisher whose first pipeline is `pipeline`.
    pub fn new(pipeline: Arc<ObjectPipeline>) -> Self {
        let first = Generation {
            pipeline,
            pending: AtomicUsize::new(0),
            done: Notify::new(),
        };
        PipelinePublisher(watch::Sender::new(Arc::new(first)))
    }

    /// Publishes `pipeline`, which `inputs` running inputs will apply their objects with.
    pub fn publish(&self, pipeline: Arc<ObjectPipeline>, inputs: usize) {
        self.0.send_replace(Arc::new(Generation {
            pipeline,
            pending: AtomicUsize::new(inputs),
            done: Notify::new(),
        }));
    }

    /// A view for a new input: it starts with the current pipeline and sees later ones.
    pub fn subscribe(&self) -> SharedPipeline {
        SharedPipeline(self.0.subscribe())
    }
}

impl SharedPipeline {
    /// A view of one pipeline that never changes (tests, tools).
    pub fn fixed(pipeline: Arc<ObjectPipeline>) -> Self {
        PipelinePublisher::new(pipeline).subscribe()
    }

    /// The current generation, marking it seen.
    pub fn current(&mut self) -> Arc<Generation> {
        self.0.borrow_and_update().clone()
    }

    /// Waits for a newer generation than the last one seen; pending forever once the publisher
    /// is gone (the host is stopping, and its inputs with it).
    pub async fn changed(&mut self) -> Arc<Generation> {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.0.borrow_and_update().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Arc<ObjectPipeline> {
        Arc::new(ObjectPipeline::compile(&[], super::super::Secrets::Refused).unwrap())
    }

    #[tokio::test]
    async fn a_new_generation_is_seen_once_and_waits_for_every_input() {
        let publisher = PipelinePublisher::new(pipeline());
        let mut a = publisher.subscribe();
        let first = a.current();
        assert!(first.all_reapplied(Duration::ZERO).await);
        publisher.publish(pipeline(), 2);
        let second = a.changed().await;
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(!second.all_reapplied(Duration::from_millis(10)).await);
        second.reapplied();
        let waiter = {
            let second = second.clone();
            tokio::spawn(async move { second.all_reapplied(Duration::from_secs(5)).await })
        };
        second.reapplied();
        assert!(waiter.await.unwrap());
        // Subscribed later: the current one is not a change.
        let mut late = publisher.subscribe();
        assert!(Arc::ptr_eq(&late.current(), &second));
        let pending = tokio::time::timeout(Duration::from_millis(20), late.changed()).await;
        assert!(pending.is_err());
    }
}
