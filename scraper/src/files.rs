//! The offline input: Kubernetes manifests read from disk, the embedded default and the way to
//! try a config without a cluster.
//!
//! A [`FilesSource`] reads a file, or every `*.yaml`, `*.yml` and `*.json` file of a directory (not
//! recursively), sends an update per object and then [`Event::Synced`], and reads again every
//! `interval`: objects that changed or appeared are sent again, objects that vanished (from a file,
//! or with their file) are removed. Nothing stops the loop but the shutdown token: unreadable files,
//! broken YAML and extraction problems go out as [`Event::Error`].

mod manifests;
mod regular;
mod scanner;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use crate::config::FilesConfig;
use crate::event::{ErrorKind, Event};
use crate::objects::SharedPipeline;
use scanner::Scanner;

/// The shortest interval between reads, so that a zero interval does not spin.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Reads manifests from disk and sends the updates of the objects in them.
pub struct FilesSource {
    scanner: Scanner,
    input: String,
    interval: Duration,
    pipeline: SharedPipeline,
}

impl FilesSource {
    /// A source for one `[[sources.files]]` entry, turning objects into updates with `pipeline`
    /// (and reading everything again when it changes).
    pub fn new(config: &FilesConfig, mut pipeline: SharedPipeline) -> Self {
        let input = format!("files:{}", config.path);
        FilesSource {
            scanner: Scanner::new(
                PathBuf::from(&config.path),
                config.max_file_bytes.0,
                input.clone(),
                pipeline.current().pipeline().clone(),
            ),
            input,
            interval: config.interval.0.max(MIN_INTERVAL),
            pipeline,
        }
    }

    /// The input's name in events and self-metrics: `files:<path as configured>`.
    pub fn input_name(&self) -> String {
        self.input.clone()
    }

    /// Reads everything and sends an [`Event::Update`] per object, then [`Event::Synced`] once;
    /// then reads again every `interval`, sending updates of changed and new objects and removes of
    /// vanished ones. Errors go out as [`Event::Error`] and never stop the loop. Returns when
    /// `shutdown` is cancelled or nobody receives the events any more (or, after an error event, if
    /// reading panicked: a bug).
    pub async fn run(self, events: Sender<Event>, shutdown: CancellationToken) {
        let FilesSource {
            mut scanner,
            input,
            interval,
            mut pipeline,
        } = self;
        let mut synced = false;
        // A new pipeline to tell once the read that applies it is sent.
        let mut reapplying: Option<std::sync::Arc<crate::objects::Generation>> = None;
        loop {
            let read = tokio::task::spawn_blocking(move || {
                let found = scanner.scan(jiff::Timestamp::now().as_millisecond());
                (scanner, found)
            });
            let found;
            (scanner, found) = match read.await {
                Ok(done) => done,
                Err(e) => {
                    let message = format!("reading the manifests failed: {e}");
                    let kind = ErrorKind::Read;
                    send(
                        &events,
                        &shutdown,
                        Event::Error {
                            input,
                            kind,
                            message,
                        },
                    )
                    .await;
                    return;
                }
            };
            tracing::debug!(input = %input, events = found.len(), "manifests read");
            for event in found {
                if !send(&events, &shutdown, event).await {
                    return;
                }
            }
            if let Some(generation) = reapplying.take() {
                generation.reapplied();
            }
            if !synced {
                synced = true;
                let event = Event::Synced {
                    input: input.clone(),
                };
                if !send(&events, &shutdown, event).await {
                    return;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                generation = pipeline.changed() => {
                    scanner.set_pipeline(generation.pipeline().clone());
                    reapplying = Some(generation);
                }
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Sends `event` unless shutdown comes first; false when the loop should end.
async fn send(events: &Sender<Event>, shutdown: &CancellationToken, event: Event) -> bool {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => false,
        sent = events.send(event) => sent.is_ok(),
    }
}

#[cfg(test)]
mod tests;
