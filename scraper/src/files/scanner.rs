//! One read of the configured path, compared with the previous one: what to send.
//!
//! The scanner remembers, per file, a hash of its content and the source ids its objects produced,
//! and per source the last update sent. A file whose content did not change is not parsed again;
//! a source that no file produces any more is removed. A file that cannot be read or parsed keeps
//! its previous sources until it can be read again, and its error is reported once per change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::{manifests, regular};
use crate::event::{ErrorKind, Event, SourceUpdate};
use crate::objects::{ObjectKey, ObjectPipeline};

/// Reads the configured path and works out the events since the previous read.
pub(super) struct Scanner {
    root: PathBuf,
    /// The largest file read.
    max_file_bytes: u64,
    input: String,
    pipeline: Arc<ObjectPipeline>,
    files: BTreeMap<PathBuf, FileState>,
    /// The last update sent for every current source.
    sent: HashMap<String, SourceUpdate>,
    /// With joins, every object read that is no source.
    others: HashSet<ObjectKey>,
    /// The last error listing the root, not to report it at every read.
    listing_error: Option<String>,
}

/// What the scanner remembers of one file.
#[derive(Default)]
struct FileState {
    /// Length and hash of the content last parsed (successfully or not).
    fingerprint: Option<(usize, u64)>,
    /// The sources the file's objects produced at its last successful parse.
    ids: Vec<String>,
    /// With joins, the objects of the file that were no source (only joins read them, or no
    /// entry selects them): when they vanish, joins must stop finding them.
    others: Vec<ObjectKey>,
    /// The last error reported for the file.
    error: Option<String>,
}

impl Scanner {
    pub(super) fn new(
        root: PathBuf,
        max_file_bytes: u64,
        input: String,
        pipeline: Arc<ObjectPipeline>,
    ) -> Self {
        Scanner {
            root,
            max_file_bytes,
            input,
            pipeline,
            files: BTreeMap::new(),
            sent: HashMap::new(),
            others: HashSet::new(),
            listing_error: None,
        }
    }

    /// Applies every object with `pipeline` from the next read on: every file is parsed again
    /// then, whether it changed or not.
    pub(super) fn set_pipeline(&mut self, pipeline: Arc<ObjectPipeline>) {
        self.pipeline = pipeline;
        for state in self.files.values_mut() {
            state.fingerprint = None;
        }
    }

    /// Reads every file (skipping unchanged ones) and returns the events to send: updates of new
    /// and changed sources, then removes of vanished ones, with errors where they happened.
    ///
    /// When what joins find changed during the read (a joined object read after an object that
    /// joins it, or changed since), every file is read again at once: the files do not say which
    /// objects depend on which, and the second read finds every joined object in place.
    pub(super) fn scan(&mut self, now_ms: i64) -> Vec<Event> {
        let mut events = self.scan_once(now_ms);
        if self.pipeline.take_any_recompute() {
            for state in self.files.values_mut() {
                state.fingerprint = None;
            }
            events.extend(self.scan_once(now_ms));
        }
        events
    }

    /// One read of every file.
    fn scan_once(&mut self, now_ms: i64) -> Vec<Event> {
        let mut events = Vec::new();
        let Some(paths) = self.list(&mut events) else {
            return events;
        };
        self.files.retain(|path, _| paths.contains(path));
        for path in paths {
            self.read_file(path, now_ms, &mut events);
        }
        let current: HashSet<&str> = self
            .files
            .values()
            .flat_map(|file| file.ids.iter().map(String::as_str))
            .collect();
        let mut gone: Vec<String> = self
            .sent
            .keys()
            .filter(|id| !current.contains(id.as_str()))
            .cloned()
            .collect();
        gone.sort_unstable();
        let others: HashSet<&ObjectKey> = self.files.values().flat_map(|f| &f.others).collect();
        let vanished: Vec<ObjectKey> = self
            .others
            .iter()
            .filter(|key| !others.contains(key))
            .cloned()
            .collect();
        for key in vanished {
            self.pipeline.forget(&key);
            self.others.remove(&key);
        }
        for id in gone {
            if let Some(last) = self.sent.remove(&id) {
                // Through the pipeline, so the object's share of aggregates goes with it.
                let source = last.update().source();
                let update = ObjectKey::new(
                    source.api_version,
                    source.object_kind,
                    source.namespace,
                    source.name,
                    source.uid,
                )
                .and_then(|key| self.pipeline.remove(&key))
                .unwrap_or_else(|| SourceUpdate::remove(source));
                events.push(Event::Update(update));
            }
        }
        events
    }

    /// The files to read, sorted; `None` when the root cannot be listed (the state is kept).
    fn list(&mut self, events: &mut Vec<Event>) -> Option<Vec<PathBuf>> {
        let listed = match std::fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => list_dir(&self.root),
            Ok(_) => Ok(vec![self.root.clone()]),
            Err(e) => Err(e),
        };
        match listed {
            Ok(paths) => {
                self.listing_error = None;
                Some(paths)
            }
            Err(e) => {
                let message = format!("{}: {e}", self.root.display());
                if self.listing_error.as_ref() != Some(&message) {
                    events.push(self.error(ErrorKind::Read, message.clone()));
                    self.listing_error = Some(message);
                }
                // A path that is gone holds no objects; any other failure may be passing.
                (e.kind() == io::ErrorKind::NotFound).then(Vec::new)
            }
        }
    }

    fn read_file(&mut self, path: PathBuf, now_ms: i64, events: &mut Vec<Event>) {
        let content = regular::read(&path, self.max_file_bytes);
        let state = self.files.entry(path.clone()).or_default();
        let parsed = match content {
            Err(e) => Err((ErrorKind::Read, e.to_string())),
            Ok(bytes) => {
                let fingerprint = (bytes.len(), hash(&bytes));
                if state.fingerprint == Some(fingerprint) {
                    return;
                }
                state.fingerprint = Some(fingerprint);
                String::from_utf8(bytes)
                    .map_err(|_| "the file is not UTF-8 text".to_owned())
                    .and_then(|text| {
                        manifests::objects(&text, is_json(&path)).map_err(|e| e.to_string())
                    })
                    .map_err(|message| (ErrorKind::Parse, message))
            }
        };
        let objects = match parsed {
            Ok(objects) => objects,
            Err((kind, message)) => {
                let message = format!("{}: {message}", path.display());
                if state.error.as_ref() != Some(&message) {
                    state.error = Some(message.clone());
                    events.push(self.error(kind, message));
                }
                return;
            }
        };
        state.error = None;
        let (ids, others) = self.apply_all(&path, &objects, now_ms, events);
        self.others.extend(others.iter().cloned());
        if let Some(state) = self.files.get_mut(&path) {
            state.ids = ids;
            state.others = others;
        }
    }

    /// Applies the pipeline to every object of a file; returns the ids of the sources produced
    /// and the keys of the objects that are no source.
    fn apply_all(
        &mut self,
        path: &Path,
        objects: &[Value],
        now_ms: i64,
        events: &mut Vec<Event>,
    ) -> (Vec<String>, Vec<ObjectKey>) {
        let mut ids = Vec::new();
        let mut others = Vec::new();
        for (index, object) in objects.iter().enumerate() {
            let Some(key) = ObjectKey::of(object) else {
                let message = format!(
                    "{}: object {}: not a Kubernetes object (it needs apiVersion, kind and metadata.name)",
                    path.display(),
                    index + 1
                );
                events.push(self.error(ErrorKind::Parse, message));
                continue;
            };
            // Pruned as a watch prunes it, so that it yields the same samples.
            let pruned = self
                .pipeline
                .reads(key.api_version(), key.kind())
                .map(|keep| keep.pruned(object));
            let object = pruned.as_ref().unwrap_or(object);
            let Some((update, problems)) = self.pipeline.apply(&key, object, now_ms) else {
                if self.pipeline.has_joins() {
                    others.push(key);
                }
                continue;
            };
            let id = update.source_id().to_owned();
            for problem in problems.messages {
                let message = format!("{}: {id}: {problem}", path.display());
                events.push(self.error(ErrorKind::Value, message));
            }
            for mut failure in problems.expressions {
                failure.message = format!("{}: {id}: {}", path.display(), failure.message);
                let input = self.input.clone();
                events.push(Event::Expression { input, failure });
            }
            let unchanged = self
                .sent
                .get(&id)
                .is_some_and(|last| last.batch().same_content(update.batch()));
            if !unchanged {
                self.sent.insert(id.clone(), update.clone());
                events.push(Event::Update(update));
            }
            ids.push(id);
        }
        (ids, others)
    }

    fn error(&self, kind: ErrorKind, message: String) -> Event {
        Event::Error {
            input: self.input.clone(),
            kind,
            message,
        }
    }
}

/// The manifest entries of a directory, sorted by name; not recursive. Subdirectories are left
/// out; every other entry named like a manifest is listed, so that a FIFO, a device or a symlink
/// loop among them is refused and reported when read, not skipped silently.
fn list_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if manifest && !path.is_dir() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}
