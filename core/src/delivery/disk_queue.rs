//! The durable queue: batches kept in segment files on disk, so what an exporter has not delivered
//! survives a crash of the host (`kill -9`) and, with `fsync = "always"`, of the machine; it is
//! replayed on the next start.
//!
//! Layout of the queue's directory:
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segment files, appended in order, each a run of whole records
//!   (the format is in [`segment`]);
//! - `ack`: where a restart replays from ([`cursor`]), rewritten (write, sync, rename, sync the
//!   directory) after every delivery and every round of `drop_oldest` drops.
//!
//! Two cursors walk the records: the read cursor, where the delivery thread pops and
//! `drop_oldest` drops, and the ack cursor, which catches up with it when the delivery thread
//! commits. A drop while an export is in flight moves the ack cursor too, but lists the records
//! of that export as pending: a batch popped and not yet delivered is never acknowledged, and a
//! dropped batch is never replayed.
//!
//! Delivery is at least once: a crash replays the export in flight (popped, maybe delivered, not
//! yet committed) and everything not yet popped. So a crash delivers at most one export's batches
//! twice (exporters with deterministic ids, such as Elasticsearch's, absorb it). On open, every
//! record after the `ack` is checked; a corrupt record is skipped (overwritten with a hole, so it
//! is counted once) and the queue resynchronises at the next valid record; a torn tail is cut.
//! Each loss is logged and counted (`periscope_exporter_queue_corrupt_records_total`, and its
//! samples, as far as its header tells, in `dropped_samples_total{reason="corrupt"}`). Never a
//! crash.
//!
//! Foreign state is never trusted and never deleted: entries that are not segment files this queue
//! names (`5.seg`, a directory) are warned about and left alone, and an `ack` that names no segment
//! present (damaged, random bytes, `u64::MAX`) is ignored: every segment is replayed, nothing is
//! deleted.
//!
//! With `fsync = "always"`, a record is synced before `push` returns, and a new segment's name and
//! the renamed `ack` file are made durable by syncing the directory, so what was pushed survives a
//! power loss. Records are read and decoded outside the queue's lock: a push never waits on a read.

mod cursor;
#[cfg(test)]
mod model_tests;
mod segment;

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use periscope_plugin_api::Batch;
use tokio::sync::Notify;
use tracing::{error, info};

use self::cursor::{AckCursor, ReadCursor};
use self::segment::{Located, Position, Record, RecordError};
use super::queue::wait_until;
use crate::config::{DiskFsync, WhenFull};
use crate::telemetry::ExporterMetrics;

/// A queue of batches in segment files.
pub struct DiskQueue {
    dir: PathBuf,
    state: Mutex<State>,
    /// The file of the segment last read, kept open between pops (only the delivery thread pops).
    reader: Mutex<Option<(u64, File)>>,
    not_empty: Condvar,
    not_full: Notify,
    limits: Limits,
    when_full: WhenFull,
    sync: bool,
    metrics: ExporterMetrics,
}

/// How much the queue holds.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// The most the segment files hold (see [`DiskQueue::push`] for what may exceed it).
    max_bytes: u64,
    /// The size from which the next record starts a new segment.
    segment_bytes: u64,
}

impl Limits {
    /// `max_bytes` as configured (at least 64 KiB), in segments of an eighth of it (64 KiB to
    /// 64 MiB).
    fn new(max_bytes: u64) -> Limits {
        let max_bytes = max_bytes.max(1 << 16);
        Limits {
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(1 << 16, 64 << 20),
        }
    }
}

/// One segment file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    number: u64,
    /// The end of its last whole record (what is after it, if anything, is ignored).
    size: u64,
}

/// Everything the lock guards: the index of the records, the cursors and the file appended to.
struct State {
    /// Oldest first; the last one is appended to.
    segments: VecDeque<Segment>,
    /// `None` after a write that could not be undone: the next record starts a new segment.
    writer: Option<File>,
    read: ReadCursor,
    ack: AckCursor,
    /// Records not handed out yet, in order: after a restart, first those the ack left pending
    /// (before the read cursor), then those after the read cursor.
    unread: VecDeque<Located>,
    /// Records popped and not yet committed, in order.
    in_flight: Vec<Located>,
    /// Bytes of all segments.
    bytes: u64,
    closed: bool,
}

/// What became of a record handed to [`DiskQueue::try_append`].
enum Append {
    /// Written (or dropped, and counted).
    Done,
    /// No room (`block`): handed back, to try again once room frees up.
    Full(Record),
}

impl DiskQueue {
    /// Opens (or creates) the queue in `dir`, checking and replaying what an earlier run left.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        when_full: WhenFull,
        fsync: DiskFsync,
        metrics: ExporterMetrics,
    ) -> io::Result<DiskQueue> {
        Self::open_with(dir, Limits::new(max_bytes), when_full, fsync, metrics)
    }

    fn open_with(
        dir: &Path,
        limits: Limits,
        when_full: WhenFull,
        fsync: DiskFsync,
        metrics: ExporterMetrics,
    ) -> io::Result<DiskQueue> {
        let sync = fsync == DiskFsync::Always;
        fs::create_dir_all(dir)?;
        if sync {
            segment::sync_dir(dir)?;
            segment::sync_dir(parent(dir))?;
        }
        let numbers = segment::list(dir)?;
        let saved = AckCursor::load(dir);
        let named = saved.position().segment;
        let saved = if numbers.contains(&named) || (numbers.is_empty() && named == 0) {
            saved
        } else {
            // The ack always names a segment the queue keeps: this one is foreign or damaged.
            // Trust nothing it says; replay all that is on disk (at least once), delete nothing.
            error!(
                dir = %dir.display(),
                segment = named,
                "the disk queue's ack names no segment present; replaying every segment"
            );
            AckCursor::resume(
                Position {
                    segment: numbers.first().copied().unwrap_or(0),
                    offset: 0,
                },
                Vec::new(),
            )
            .1
        };
        let acked = saved.position();
        let pinned: BTreeSet<u64> = saved.pending().iter().map(|r| r.at.segment).collect();
        let mut segments = VecDeque::new();
        let mut replay = Vec::new();
        for number in numbers {
            if number < acked.segment {
                if pinned.contains(&number) {
                    // Holds only records the ack left pending; checked one by one below.
                    let size = fs::metadata(segment::path(dir, number))?.len();
                    segments.push_back(Segment { number, size });
                } else {
                    fs::remove_file(segment::path(dir, number))?;
                }
                continue;
            }
            let start = if number == acked.segment {
                acked.offset
            } else {
                0
            };
            let scan = segment::scan(dir, number, start, &metrics)?;
            replay.extend(scan.records);
            segments.push_back(Segment {
                number,
                size: scan.end,
            });
        }
        let pending = Self::check_pending(dir, saved.pending(), &segments, &metrics);
        // Replay from the ack if its segment is still there (within what survived of it), else
        // from the oldest segment after it.
        let start = match segments.iter().find(|s| s.number >= acked.segment) {
            Some(first) if first.number == acked.segment => Position {
                segment: first.number,
                offset: acked.offset.min(first.size),
            },
            Some(first) => Position {
                segment: first.number,
                offset: 0,
            },
            None => {
                segments.push_back(Segment {
                    number: acked.segment,
                    size: 0,
                });
                Position {
                    segment: acked.segment,
                    offset: 0,
                }
            }
        };
        let mut last = segments.back().map_or(start.segment, |s| s.number);
        if last == acked.segment && start.offset < acked.offset {
            // Acknowledged records at the end of the newest segment were torn: appending there
            // would put new records where a later full replay reads the torn ones. Start anew.
            last = last.checked_add(1).ok_or_else(|| {
                io::Error::other(
                    "segment numbers are exhausted (a foreign segment named u64::MAX?)",
                )
            })?;
            segments.push_back(Segment {
                number: last,
                size: 0,
            });
        }
        let writer = segment::open_for_append(dir, last, sync)?;
        let (read, ack) = AckCursor::resume(start, pending.clone());
        if ack != saved {
            ack.store(dir, sync)?;
        }
        let unread: VecDeque<Located> = pending.into_iter().chain(replay).collect();
        if !unread.is_empty() {
            info!(batches = unread.len(), dir = %dir.display(), "replaying batches left in the disk queue");
        }
        metrics.queued_batches.set(unread.len() as i64);
        metrics
            .queued_samples
            .set(unread.iter().map(|r| i64::from(r.meta.samples)).sum());
        Ok(DiskQueue {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                bytes: segments.iter().map(|s| s.size).sum(),
                segments,
                writer: Some(writer),
                read,
                ack,
                unread,
                in_flight: Vec::new(),
                closed: false,
            }),
            reader: Mutex::new(None),
            not_empty: Condvar::new(),
            not_full: Notify::new(),
            limits,
            when_full,
            sync,
            metrics,
        })
    }

    /// The records the ack left pending that can still be read back; the others are logged and
    /// counted as corrupt.
    fn check_pending(
        dir: &Path,
        pending: &[Located],
        segments: &VecDeque<Segment>,
        metrics: &ExporterMetrics,
    ) -> Vec<Located> {
        let mut readable = Vec::new();
        for record in pending {
            let read = match segments.iter().find(|s| s.number == record.at.segment) {
                Some(s) if record.end().offset <= s.size => {
                    File::open(segment::path(dir, record.at.segment))
                        .map_err(RecordError::from)
                        .and_then(|file| segment::read(&file, record.at.offset, record.meta))
                }
                _ => Err(RecordError::Missing),
            };
            match read {
                Ok(_) => readable.push(*record),
                Err(e) => {
                    error!(
                        dir = %dir.display(),
                        segment = record.at.segment,
                        offset = record.at.offset,
                        "disk queue record left pending cannot be read back, skipped: {e}"
                    );
                    metrics.queue_corrupt_records.inc();
                    metrics
                        .dropped_corrupt
                        .inc_by(u64::from(record.meta.samples));
                }
            }
        }
        readable
    }

    /// Appends a batch (written, and synced per policy, before it returns). When the queue is at
    /// `max_bytes`: waits for room (`block`) or drops the oldest batches not yet popped, counting
    /// them (`drop_oldest`). A batch that cannot be written (full or failing disk) is dropped and
    /// counted as `write_failed`.
    ///
    /// `max_bytes` bounds the segment files up to one segment (an eighth of it), and the segments
    /// holding the export in flight, which stay on disk until it is delivered.
    pub async fn push(self: &Arc<Self>, batch: Arc<Batch>) {
        let Some(mut record) = Record::frame(&batch) else {
            error!(dir = %self.dir.display(), "batch too large for the disk queue (4 GiB), dropped");
            self.metrics
                .dropped_write_failed
                .inc_by(batch.sample_count() as u64);
            return;
        };
        loop {
            let queue = self.clone();
            match tokio::task::spawn_blocking(move || queue.try_append(record)).await {
                Ok(Append::Done) => return,
                Ok(Append::Full(back)) => record = back,
                Err(e) => {
                    error!(dir = %self.dir.display(), error = %e, "disk queue write task failed, batch dropped");
                    self.metrics
                        .dropped_write_failed
                        .inc_by(batch.sample_count() as u64);
                    return;
                }
            }
            self.not_full.notified().await;
        }
    }

    /// Appends if there is room (making room under `drop_oldest`); hands the record back if not.
    fn try_append(&self, record: Record) -> Append {
        let meta = record.meta();
        let mut state = self.lock();
        match self.append(&mut state, &record) {
            Ok(true) => {
                self.metrics.queued_batches.inc();
                self.metrics.queued_samples.add(i64::from(meta.samples));
                self.not_empty.notify_one();
                Append::Done
            }
            Ok(false) => Append::Full(record),
            Err(e) => {
                // A full or broken disk: the batch cannot be kept. Count it rather than lose it
                // silently.
                error!(dir = %self.dir.display(), error = %e, "disk queue write failed, batch dropped");
                self.metrics
                    .dropped_write_failed
                    .inc_by(u64::from(meta.samples));
                Append::Done
            }
        }
    }

    /// Writes `record` if there is room, making room under `drop_oldest`; false when `block`
    /// must wait for room.
    fn append(&self, state: &mut State, record: &Record) -> io::Result<bool> {
        self.start_segment_if_due(state)?;
        let size = record.meta().size();
        if state.bytes + size > self.limits.max_bytes && !state.unread.is_empty() {
            match self.when_full {
                WhenFull::Block => return Ok(false),
                WhenFull::DropOldest => self.make_room(state, size),
            }
        }
        self.write(state, record)?;
        Ok(true)
    }

    /// Starts a new segment when the last one has reached its size, or its file cannot be
    /// written to any more.
    fn start_segment_if_due(&self, state: &mut State) -> io::Result<()> {
        let last = state.last_segment();
        if state.writer.is_some() && last.size < self.limits.segment_bytes {
            return Ok(());
        }
        let number = last.number.checked_add(1).ok_or_else(|| {
            io::Error::other("segment numbers are exhausted (a foreign segment named u64::MAX?)")
        })?;
        let file = segment::open_for_append(&self.dir, number, self.sync)?;
        state.segments.push_back(Segment { number, size: 0 });
        state.writer = Some(file);
        state.settle_read();
        Ok(())
    }

    /// `drop_oldest`: drops the oldest records not yet popped, counting their samples, until
    /// `size` more bytes fit beside what must stay (the segments from the read cursor on, and
    /// those holding records not delivered); then records the drops and frees what they emptied.
    fn make_room(&self, state: &mut State, size: u64) {
        let (mut batches, mut samples) = (0, 0);
        while state.bytes_kept() + size > self.limits.max_bytes {
            let Some(dropped) = self.take_next(state) else {
                break;
            };
            batches += 1;
            samples += u64::from(dropped.meta.samples);
        }
        if batches > 0 {
            self.metrics.dropped_queue_full.inc_by(samples);
            self.acknowledge(state);
        }
    }

    /// Appends `record` to the last segment. A write that fails is cut off again, so the segment
    /// stays a run of whole records; if it cannot be cut, the next record starts a new segment.
    fn write(&self, state: &mut State, record: &Record) -> io::Result<()> {
        let last = state.last_segment();
        let Some(writer) = state.writer.as_mut() else {
            return Err(io::Error::other("no segment open for writing"));
        };
        let written = writer.write_all(record.bytes()).and_then(|()| {
            if self.sync {
                writer.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            if writer.set_len(last.size).is_err() {
                state.writer = None;
            }
            return Err(e);
        }
        let meta = record.meta();
        if let Some(last) = state.segments.back_mut() {
            last.size += meta.size();
        }
        state.bytes += meta.size();
        state.unread.push_back(Located {
            at: Position {
                segment: last.number,
                offset: last.size,
            },
            meta,
        });
        Ok(())
    }

    /// Takes the next batch, waiting until one arrives, the queue closes (`None` once it is empty)
    /// or `deadline` passes (`None`). The batch stays on disk until [`DiskQueue::commit`].
    pub fn pop(&self, deadline: Option<Instant>) -> Option<Arc<Batch>> {
        loop {
            let record = {
                let mut state = self.lock();
                loop {
                    if let Some(record) = self.take_next(&mut state) {
                        state.in_flight.push(record);
                        break record;
                    }
                    if state.closed {
                        return None;
                    }
                    state = wait_until(&self.not_empty, state, deadline)?;
                }
            };
            // Read and decoded outside the lock: appends go on meanwhile.
            match self.read(record) {
                Ok(batch) => return Some(Arc::new(batch)),
                Err(e) => {
                    // Records were checked on open or written by this process: the disk changed
                    // under us. The record is lost; the others are still where the index says.
                    error!(
                        dir = %self.dir.display(),
                        segment = record.at.segment,
                        offset = record.at.offset,
                        "disk queue record cannot be read back, skipped: {e}"
                    );
                    self.metrics.queue_corrupt_records.inc();
                }
            }
        }
    }

    /// Takes the next record off the unread ones (to be popped or dropped), moving the read
    /// cursor past it.
    fn take_next(&self, state: &mut State) -> Option<Located> {
        let record = state.unread.pop_front()?;
        state.read.advance(record.end());
        state.settle_read();
        self.metrics.queued_batches.dec();
        self.metrics
            .queued_samples
            .sub(i64::from(record.meta.samples));
        Some(record)
    }

    fn read(&self, record: Located) -> Result<Batch, RecordError> {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let file = match reader.take() {
            Some((number, file)) if number == record.at.segment => file,
            _ => File::open(segment::path(&self.dir, record.at.segment))?,
        };
        let batch = segment::read(&file, record.at.offset, record.meta);
        *reader = Some((record.at.segment, file));
        batch
    }

    /// Records that everything popped so far is delivered: it will not be replayed. Frees fully
    /// delivered segments.
    pub fn commit(&self) {
        let mut state = self.lock();
        state.in_flight.clear();
        self.acknowledge(&mut state);
    }

    /// Moves the ack cursor to the read cursor, keeping what is not delivered pending; stores it
    /// and deletes the segments nothing needs any more.
    fn acknowledge(&self, state: &mut State) {
        let pending = state.not_delivered_before_read();
        if !state.ack.catch_up(&state.read, pending) {
            return;
        }
        if let Err(e) = state.ack.store(&self.dir, self.sync) {
            error!(dir = %self.dir.display(), error = %e, "cannot record delivery in the disk queue (batches may be replayed)");
        }
        let keep_from = state.ack.position().segment;
        let pinned: BTreeSet<u64> = state.ack.pending().iter().map(|r| r.at.segment).collect();
        let (kept, freed): (VecDeque<Segment>, VecDeque<Segment>) = state
            .segments
            .iter()
            .partition(|s| s.number >= keep_from || pinned.contains(&s.number));
        state.segments = kept;
        for segment in freed {
            state.bytes = state.bytes.saturating_sub(segment.size);
            if let Err(e) = fs::remove_file(segment::path(&self.dir, segment.number)) {
                error!(dir = %self.dir.display(), segment = segment.number, error = %e, "cannot delete a delivered disk queue segment");
            }
        }
        self.not_full.notify_one();
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

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; every mutation of the state leaves it
        // consistent, so carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// The segment appended to (there is always one).
    fn last_segment(&self) -> Segment {
        self.segments.back().copied().unwrap_or(Segment {
            number: self.read.position().segment,
            size: 0,
        })
    }

    /// Records before the read cursor not delivered: those popped and not committed, then those
    /// a restart left pending and not taken yet. In queue order.
    fn not_delivered_before_read(&self) -> Vec<Located> {
        let read = self.read.position();
        self.in_flight
            .iter()
            .chain(self.unread.iter().take_while(|r| r.at < read))
            .copied()
            .collect()
    }

    /// Moves the read cursor from the end of a segment to the start of the next, if there is one,
    /// so the segment it leaves can be freed.
    fn settle_read(&mut self) {
        loop {
            let at = self.read.position();
            let mut from_here = self.segments.iter().skip_while(|s| s.number < at.segment);
            let (Some(current), Some(next)) = (from_here.next(), from_here.next()) else {
                return;
            };
            if current.number != at.segment || at.offset < current.size {
                return;
            }
            self.read.advance(Position {
                segment: next.number,
                offset: 0,
            });
        }
    }

    /// The bytes that stay once the ack cursor catches up with the read cursor: the segments
    /// from the read cursor's on, and those holding records not delivered.
    fn bytes_kept(&self) -> u64 {
        let from = self.read.position().segment;
        let pinned: BTreeSet<u64> = self
            .not_delivered_before_read()
            .iter()
            .map(|r| r.at.segment)
            .collect();
        self.segments
            .iter()
            .filter(|s| s.number >= from || pinned.contains(&s.number))
            .map(|s| s.size)
            .sum()
    }
}

/// The directory holding `dir` (`.` for a bare relative name), whose entry for `dir` a power loss
/// must not lose either.
fn parent(dir: &Path) -> &Path {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::test_batches::{batch, batch_of, value};
    use crate::telemetry::Telemetry;
    use std::fs::OpenOptions;
    use std::time::Duration;

    fn open(dir: &Path, metrics: &ExporterMetrics) -> Arc<DiskQueue> {
        Arc::new(
            DiskQueue::open(
                dir,
                1 << 20,
                WhenFull::Block,
                DiskFsync::Always,
                metrics.clone(),
            )
            .unwrap(),
        )
    }

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_millis(50))
    }

    #[tokio::test]
    async fn undelivered_batches_are_replayed_after_a_restart_and_delivered_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("d");
        let queue = open(dir.path(), &metrics);
        for v in [1.0, 2.0, 3.0] {
            queue.push(batch(v)).await;
        }
        assert_eq!(value(&queue.pop(soon()).unwrap()), 1.0);
        queue.commit();
        assert_eq!(value(&queue.pop(soon()).unwrap()), 2.0); // popped, not committed: a crash now
        drop(queue);

        let queue = open(dir.path(), &metrics);
        assert_eq!(metrics.queued_batches.get(), 2);
        assert_eq!(value(&queue.pop(soon()).unwrap()), 2.0);
        assert_eq!(value(&queue.pop(soon()).unwrap()), 3.0);
        assert!(queue.pop(soon()).is_none());
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_with_an_error_and_the_rest_survives() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("d");
        let queue = open(dir.path(), &metrics);
        queue.push(batch(1.0)).await;
        queue.push(batch(2.0)).await;
        drop(queue);
        // A crash in the middle of the last write: chop the file inside the second record.
        let segment = segment::path(dir.path(), 0);
        let len = fs::metadata(&segment).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(len - 5)
            .unwrap();

        let queue = open(dir.path(), &metrics);
        assert_eq!(metrics.queue_corrupt_records.get(), 1);
        assert_eq!(value(&queue.pop(soon()).unwrap()), 1.0);
        assert!(queue.pop(soon()).is_none());
        // Writing goes on after the cut.
        queue.push(batch(3.0)).await;
        assert_eq!(value(&queue.pop(soon()).unwrap()), 3.0);
    }

    #[tokio::test]
    async fn garbage_in_a_segment_is_skipped_never_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("d");
        let queue = open(dir.path(), &metrics);
        queue.push(batch(1.0)).await;
        drop(queue);
        let segment = segment::path(dir.path(), 0);
        let mut bytes = fs::read(&segment).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&segment, bytes).unwrap();
        let queue = open(dir.path(), &metrics);
        assert!(queue.pop(soon()).is_none());
        assert_eq!(metrics.queue_corrupt_records.get(), 1);
    }

    #[tokio::test]
    async fn segments_roll_and_delivered_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("d");
        // 64 KiB segments (the smallest), batches of ~1 KiB.
        let queue = Arc::new(
            DiskQueue::open(
                dir.path(),
                1 << 19,
                WhenFull::Block,
                DiskFsync::Never,
                metrics.clone(),
            )
            .unwrap(),
        );
        // ~1 KiB batches: a long source id.
        let long_id = "s".repeat(1000);
        let big = |v: f64| batch_of(&long_id, v);
        for i in 0..200 {
            queue.push(big(f64::from(i))).await;
        }
        let segments = || {
            fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "seg")
                })
                .count()
        };
        assert!(segments() > 2, "{}", segments());
        for i in 0..200 {
            assert_eq!(value(&queue.pop(soon()).unwrap()), f64::from(i));
            queue.commit();
        }
        assert_eq!(segments(), 1);
        assert!(queue.pop(soon()).is_none());
    }

    #[tokio::test]
    async fn drop_oldest_never_acknowledges_a_batch_popped_but_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("d");
        let open = || {
            Arc::new(
                DiskQueue::open(
                    dir.path(),
                    1 << 16,
                    WhenFull::DropOldest,
                    DiskFsync::Never,
                    metrics.clone(),
                )
                .unwrap(),
            )
        };
        let queue = open();
        queue.push(batch(1.0)).await;
        // The delivery thread holds batch 1 (popped, being exported, not yet committed) …
        assert_eq!(value(&queue.pop(soon()).unwrap()), 1.0);
        // … while the intake fills the queue past `max_bytes`, so older batches are dropped.
        let big = batch_of(&"s".repeat(1000), 2.0);
        for _ in 0..200 {
            queue.push(big.clone()).await;
        }
        assert!(metrics.dropped_queue_full.get() > 0);
        // A crash before the export of batch 1 returns: it was never delivered, so it is replayed.
        drop(queue);
        let queue = open();
        assert_eq!(value(&queue.pop(soon()).unwrap()), 1.0);
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_written_is_counted_as_write_failed_and_the_queue_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("d");
        // 64 KiB segments of ~1 KiB batches; the second segment is /dev/full, where every write
        // fails as on a full disk.
        let queue = Arc::new(
            DiskQueue::open(
                dir.path(),
                1 << 19,
                WhenFull::Block,
                DiskFsync::Never,
                metrics.clone(),
            )
            .unwrap(),
        );
        std::os::unix::fs::symlink("/dev/full", segment::path(dir.path(), 1)).unwrap();
        let long_id = "s".repeat(1000);
        for i in 0..100 {
            queue.push(batch_of(&long_id, f64::from(i))).await;
        }
        assert_eq!(metrics.dropped_write_failed.get(), 1);
        assert_eq!(metrics.dropped_queue_full.get(), 0);
        let mut popped = Vec::new();
        while let Some(batch) = queue.pop(soon()) {
            popped.push(value(&batch));
        }
        assert_eq!(
            popped.len(),
            99,
            "every batch but the one that failed: {popped:?}"
        );
        assert!(popped.windows(2).all(|w| w[0] < w[1]), "{popped:?}");
        assert_eq!(metrics.queue_corrupt_records.get(), 0);
        queue.commit();
        assert!(
            !segment::path(dir.path(), 1).exists(),
            "the failed segment is freed too"
        );
    }

    #[test]
    fn a_push_does_not_wait_for_a_pop_reading_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("d");
        let queue = open(dir.path(), &metrics);
        let push = |v: f64| {
            let queue = queue.clone();
            let (done, pushed) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(queue.push(batch(v)));
                let _ = done.send(());
            });
            pushed.recv_timeout(Duration::from_secs(5)).is_ok()
        };
        assert!(push(1.0));
        // A pop stuck in its read: it has taken the record and waits for the segment file.
        let reading = queue.reader.lock().unwrap();
        let popper = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.pop(None).map(|b| value(&b)))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while metrics.queued_batches.get() != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(metrics.queued_batches.get(), 0, "the pop took the record");
        assert!(push(2.0), "a push waited for a pop's read");
        assert_eq!(metrics.queued_batches.get(), 1);
        drop(reading);
        assert_eq!(popper.join().unwrap(), Some(1.0));
    }

    #[tokio::test]
    async fn drop_oldest_makes_room_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::new();
        let metrics = telemetry.exporter("d");
        // The smallest queue is 64 KiB; fill it with ~1 KiB batches.
        let queue = Arc::new(
            DiskQueue::open(
                dir.path(),
                1 << 16,
                WhenFull::DropOldest,
                DiskFsync::Never,
                metrics.clone(),
            )
            .unwrap(),
        );
        let big = batch_of(&"s".repeat(1000), 1.0);
        for _ in 0..200 {
            queue.push(big.clone()).await;
        }
        assert!(metrics.dropped_queue_full.get() > 0);
        assert!(
            fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum::<u64>()
                <= (1 << 16) + 4096
        );
    }
}
