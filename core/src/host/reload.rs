//! What asks the host to reload its config: `SIGHUP`, a change of the config file or directory,
//! and `POST /-/reload` (see [`crate::server`]).
//!
//! The config's directory (the file's, or the directory itself) is watched with `notify`
//! (inotify), falling back to polling it when inotify cannot be used. That also sees the way
//! kubelet updates a mounted ConfigMap: the `..data` symlink swapped for a new directory. A burst
//! of file events becomes one request once the files are quiet for [`SETTLE`]; the host reloads
//! only if the files' hash changed, so a ConfigMap swap means exactly one reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

/// How long the config files must be quiet after a change before it is read.
const SETTLE: Duration = Duration::from_millis(300);
/// How often the polling fallback looks at the config files.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `SIGHUP`.
    Signal,
    /// The config files changed on disk: reload only if their content did.
    FilesChanged,
    /// `POST /-/reload`.
    Http,
    /// A MetricsConfig was created, changed or deleted.
    MetricsConfigs,
}

impl Trigger {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FilesChanged => "config files changed",
            Trigger::Http => "POST /-/reload",
            Trigger::MetricsConfigs => "MetricsConfigs changed",
        }
    }
}

/// A request to reload, with where the outcome goes (`POST /-/reload` waits for it).
#[derive(Debug)]
pub struct ReloadRequest {
    /// Why.
    pub trigger: Trigger,
    /// Gets `Ok` once the new config is applied (or nothing changed), or every reason it was
    /// refused.
    pub reply: Option<oneshot::Sender<Result<(), String>>>,
}

/// Starts sending a [`ReloadRequest`] on `SIGHUP` and whenever the files under `config` change
/// (nothing is watched for the embedded config), until `stop`.
pub fn watch(
    config: Option<&Path>,
    requests: mpsc::Sender<ReloadRequest>,
    stop: CancellationToken,
) {
    tokio::spawn(on_sighup(requests.clone(), stop.clone()));
    if let Some(config) = config {
        let (dir, file) = if config.is_dir() {
            (config.to_owned(), None)
        } else {
            let dir = match config.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
                _ => PathBuf::from("."),
            };
            (dir, config.file_name().map(ToOwned::to_owned))
        };
        tokio::spawn(on_change(dir, file, requests, stop));
    }
}

/// Whether a change of `path` may change the config: the config file itself (or, for a
/// directory, any `*.toml` file), a YAML file beside it (a config it may import with
/// `[[imports]]`; a reload that changes nothing is a no-op), or kubelet's `..data` and
/// timestamped directories.
fn concerns_config(path: &Path, file: Option<&std::ffi::OsStr>) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    let text = name.to_string_lossy();
    if text.starts_with("..") || text.ends_with(".yaml") || text.ends_with(".yml") {
        return true;
    }
    match file {
        Some(file) => name == file,
        None => name.to_string_lossy().ends_with(".toml"),
    }
}

async fn on_sighup(requests: mpsc::Sender<ReloadRequest>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            error!(error = %e, "cannot listen for SIGHUP; reload by file change or POST /-/reload");
            return;
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = hangup.recv() => {
                let request = ReloadRequest { trigger: Trigger::Signal, reply: None };
                if requests.send(request).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Watches `dir` (not recursively) for changes of the config `file` (every `*.toml` when
/// `None`), sending one request per burst of changes. Other files there (a log written next to
/// the config) are ignored.
async fn on_change(
    dir: PathBuf,
    file: Option<std::ffi::OsString>,
    requests: mpsc::Sender<ReloadRequest>,
    stop: CancellationToken,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let handler = move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            !e.kind.is_access()
                && e.paths
                    .iter()
                    .any(|path| concerns_config(path, file.as_deref()))
        });
        if relevant {
            let _ = events_tx.send(());
        }
    };
    let watcher = start_watcher(&dir, handler);
    let Some(_watcher) = watcher else {
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = events.recv() => {}
            else => return,
        }
        // Let the burst settle: a ConfigMap update is several renames and a removal.
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some(()) = events.recv() => continue,
                () = tokio::time::sleep(SETTLE) => break,
            }
        }
        let request = ReloadRequest {
            trigger: Trigger::FilesChanged,
            reply: None,
        };
        if requests.send(request).await.is_err() {
            return;
        }
    }
}

/// An inotify watcher of `dir`, or a polling one when inotify is not available (out of watches,
/// a filesystem without it); `None` (logged) when neither can watch it.
fn start_watcher<F>(dir: &Path, handler: F) -> Option<Box<dyn notify::Watcher + Send>>
where
    F: notify::EventHandler + Clone,
{
    let inotify = notify::RecommendedWatcher::new(handler.clone(), notify::Config::default())
        .and_then(|mut w| {
            w.watch(dir, notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        });
    match inotify {
        Ok(watcher) => return Some(Box::new(watcher)),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot watch the config with inotify; polling it every {}s", POLL_INTERVAL.as_secs())
        }
    }
    let config = notify::Config::default()
        .with_poll_interval(POLL_INTERVAL)
        .with_compare_contents(true);
    let polling = notify::PollWatcher::new(handler, config)
        .and_then(|mut w| w.watch(dir, notify::RecursiveMode::Recursive).map(|()| w));
    match polling {
        Ok(watcher) => Some(Box::new(watcher)),
        Err(e) => {
            error!(dir = %dir.display(), error = %e, "cannot watch the config for changes; reload with SIGHUP");
            None
        }
    }
}
