//! Delivery: everything between the fan-out and an exporter plugin. The host owns queueing,
//! batching, retries, dead letters and restarts, so every exporter gets them for free.

mod backoff;
mod dead_letter;
mod queue;
mod worker;

pub use backoff::{Backoff, Stop};
pub use dead_letter::DeadLetter;
pub use queue::MemoryQueue;
pub use worker::{Worker, WorkerSpec};
