//! The pipeline every object input applies objects with, which a config reload replaces.
//!
//! A reload that changes `[[resources]]` compiles a new [`ObjectPipeline`] and publishes it as a
//! new [`Generation`]. Each running input applies every object it holds again with it (a watch
//! from what it keeps, without asking the apiserver), then says so; aggregates and derived
//! metrics, whose state the new pipeline rebuilds from those objects, are computed again only
//! once every input has done it, so they never show a half-filled state.
//!
//! The same channel carries the host's other request to the inputs that hold objects: to send
//! their sources again ([`PipelinePublisher::resend`]), from what they hold, so that the host can
//! give an exporter that restarted or fell behind the whole state without keeping a copy of it.

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

/// What the publisher shows the inputs: the current generation (numbered), and the last resend
/// round asked.
#[derive(Debug, Clone)]
struct Published {
    generation: Arc<Generation>,
    number: u64,
    resend: u64,
}

/// Publishes pipelines and resend requests to the inputs (held by the host).
#[derive(Debug)]
pub struct PipelinePublisher(watch::Sender<Published>);

/// An input's view of the current pipeline and of the resend requests.
#[derive(Debug, Clone)]
pub struct SharedPipeline {
    receiver: watch::Receiver<Published>,
    /// The number of the last generation seen.
    generation: u64,
    /// The last resend round seen.
    resend: u64,
}

/// What an input is told, in order: a new pipeline comes before a resend asked with it.
#[derive(Debug)]
pub enum Change {
    /// Apply every held object again with this generation's pipeline, then say so
    /// ([`Generation::reapplied`]).
    Pipeline(Arc<Generation>),
    /// Send every source again, for the host's resync round `u64` (see
    /// [`crate::Event::Resent`]).
    Resend(u64),
}

impl PipelinePublisher {
    /// A publisher whose first pipeline is `pipeline`.
    pub fn new(pipeline: Arc<ObjectPipeline>) -> Self {
        let first = Generation {
            pipeline,
            pending: AtomicUsize::new(0),
            done: Notify::new(),
        };
        PipelinePublisher(watch::Sender::new(Published {
            generation: Arc::new(first),
            number: 0,
            resend: 0,
        }))
    }

    /// Publishes `pipeline`, which `inputs` running inputs will apply their objects with.
    pub fn publish(&self, pipeline: Arc<ObjectPipeline>, inputs: usize) {
        self.0.send_modify(|published| {
            published.generation = Arc::new(Generation {
                pipeline,
                pending: AtomicUsize::new(inputs),
                done: Notify::new(),
            });
            published.number += 1;
        });
    }

    /// Asks every input that can (a watch, from the objects it holds) to send its sources again
    /// for resync `round`, which must be new: the inputs follow only the last round asked.
    pub fn resend(&self, round: u64) {
        self.0.send_modify(|published| published.resend = round);
    }

    /// A view for a new input: it starts with the current pipeline and sees later ones, and the
    /// resend rounds asked from now on.
    pub fn subscribe(&self) -> SharedPipeline {
        let receiver = self.0.subscribe();
        let (generation, resend) = {
            let published = receiver.borrow();
            (published.number, published.resend)
        };
        SharedPipeline {
            receiver,
            generation,
            resend,
        }
    }
}

impl SharedPipeline {
    /// A view of one pipeline that never changes (tests, tools).
    pub fn fixed(pipeline: Arc<ObjectPipeline>) -> Self {
        PipelinePublisher::new(pipeline).subscribe()
    }

    /// The current generation, marking it seen.
    pub fn current(&mut self) -> Arc<Generation> {
        let published = self.receiver.borrow_and_update();
        self.generation = published.number;
        published.generation.clone()
    }

    /// Waits for the next change not seen yet (cancel-safe); pending forever once the publisher
    /// is gone (the host is stopping, and its inputs with it).
    pub async fn next(&mut self) -> Change {
        loop {
            {
                let published = self.receiver.borrow_and_update();
                if published.number != self.generation {
                    self.generation = published.number;
                    return Change::Pipeline(published.generation.clone());
                }
                if published.resend != self.resend {
                    self.resend = published.resend;
                    return Change::Resend(published.resend);
                }
            }
            if self.receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits for a newer generation than the last one seen, passing over resend requests: for
    /// inputs that cannot resend (the host keeps a copy of their sources).
    pub async fn changed(&mut self) -> Arc<Generation> {
        loop {
            if let Change::Pipeline(generation) = self.next().await {
                return generation;
            }
        }
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

    #[tokio::test]
    async fn a_resend_comes_after_the_pipeline_published_before_it_and_changed_passes_it_over() {
        let publisher = PipelinePublisher::new(pipeline());
        let mut watch = publisher.subscribe();
        let mut files = publisher.subscribe();
        publisher.publish(pipeline(), 2);
        publisher.resend(1);
        assert!(matches!(watch.next().await, Change::Pipeline(_)));
        assert!(matches!(watch.next().await, Change::Resend(1)));
        files.changed().await;
        let pending = tokio::time::timeout(Duration::from_millis(20), files.changed()).await;
        assert!(pending.is_err(), "a resend is not a new pipeline");
        // Subscribed after round 1: only later rounds are asked of it.
        let mut late = publisher.subscribe();
        publisher.resend(2);
        assert!(matches!(late.next().await, Change::Resend(2)));
    }
}
