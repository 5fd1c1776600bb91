//! Delivery: everything between the fan-out and an exporter plugin. The host owns queueing,
//! batching, retries, dead letters and restarts, so every exporter gets them for free.

mod backoff;
mod dead_letter;
mod disk_queue;
mod queue;
mod refusal;
#[cfg(test)]
mod test_batches;
mod watchdog;
mod worker;

pub use backoff::{Backoff, Stop};
pub use dead_letter::DeadLetter;
pub use disk_queue::DiskQueue;
pub use queue::{MemoryQueue, Queue};
pub use refusal::{RefusalError, Refusals, Refused};
pub use watchdog::Watchdog;
pub use worker::{Worker, WorkerSpec};
