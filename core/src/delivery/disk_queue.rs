//! The durable queue: batches kept in segment files on disk, so what an exporter has not delivered
//! survives a crash (`kill -9`) and is replayed on the next start.
//!
//! Layout of the queue's directory:
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segment files, appended in order; a record is
//!   `[payload length u32][CRC-32 of payload u32][samples u32][payload]`, the payload being
//!   [`Batch::encode`]'s form;
//! - `ack`: where the first record not yet delivered starts (segment number and offset), rewritten
//!   (write, sync, rename) after every delivery.
//!
//! Delivery is at least once: a crash between a delivery and its `ack` replays that batch (exporters
//! with deterministic ids, such as Elasticsearch's, absorb it). On open, every record after the
//! `ack` is checked; a torn or corrupt record ends its segment there — the segment is cut, the error
//! logged and counted — and the queue goes on with the next segment. Never a crash.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use periscope_plugin_api::Batch;
use tokio::sync::Notify;
use tracing::{error, info};

use super::queue::wait_until;
use crate::config::{DiskFsync, WhenFull};
use crate::telemetry::ExporterMetrics;

const HEADER: u64 = 12;

/// A queue of batches in segment files.
pub struct DiskQueue {
    dir: PathBuf,
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Notify,
    max_bytes: u64,
    segment_bytes: u64,
    when_full: WhenFull,
    fsync: DiskFsync,
    metrics: ExporterMetrics,
}

struct State {
    /// Segment numbers and sizes, oldest first; the last one is written to.
    segments: VecDeque<(u64, u64)>,
    writer: File,
    /// Where the next `pop` reads.
    read: (u64, u64),
    /// Records between `read` and the end, and their samples.
    unread: VecDeque<u32>,
    /// Bytes of all segments (what `max_bytes` bounds).
    bytes: u64,
    closed: bool,
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
        fs::create_dir_all(dir)?;
        let ack = read_ack(dir);
        let mut numbers: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut segments = VecDeque::new();
        let mut unread = VecDeque::new();
        let mut read = ack;
        for number in numbers {
            let path = segment_path(dir, number);
            if number < ack.0 {
                fs::remove_file(&path)?;
                continue;
            }
            let start = if number == ack.0 { ack.1 } else { 0 };
            let (valid_end, samples) = scan(&path, start, &metrics)?;
            unread.extend(samples);
            segments.push_back((number, valid_end));
        }
        if segments.front().is_none_or(|(n, _)| *n != read.0) {
            read = (segments.front().map_or(ack.0, |(n, _)| *n), 0);
        }
        let last = segments.back().map_or(read.0, |(n, _)| *n);
        if segments.is_empty() {
            segments.push_back((last, 0));
        }
        let writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, last))?;
        let bytes = segments.iter().map(|(_, size)| size).sum();
        if !unread.is_empty() {
            info!(batches = unread.len(), dir = %dir.display(), "replaying batches left in the disk queue");
        }
        metrics.queued_batches.set(unread.len() as i64);
        metrics
            .queued_samples
            .set(unread.iter().map(|s| i64::from(*s)).sum());
        Ok(DiskQueue {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                segments,
                writer,
                read,
                unread,
                bytes,
                closed: false,
            }),
            not_empty: Condvar::new(),
            not_full: Notify::new(),
            max_bytes: max_bytes.max(1 << 16),
            segment_bytes: (max_bytes / 8).clamp(1 << 16, 64 << 20),
            when_full,
            fsync,
            metrics,
        })
    }

    /// Appends a batch (written, and synced per policy, before it returns). When the queue is at
    /// `max_bytes`: waits for room (`block`) or drops the oldest batches, counting them.
    pub async fn push(self: &Arc<Self>, batch: Arc<Batch>) {
        let mut payload = Vec::new();
        batch.encode(&mut payload);
        let samples = u32::try_from(batch.sample_count()).unwrap_or(u32::MAX);
        loop {
            let queue = self.clone();
            let record = std::mem::take(&mut payload);
            let outcome =
                tokio::task::spawn_blocking(move || queue.try_append(record, samples)).await;
            match outcome {
                Ok(Ok(())) => return,
                Ok(Err(record)) => payload = record,
                Err(e) => {
                    error!("disk queue write task failed: {e}");
                    return;
                }
            }
            self.not_full.notified().await;
        }
    }

    /// Appends if there is room (making room under `drop_oldest`); gives the record back if not.
    fn try_append(&self, payload: Vec<u8>, samples: u32) -> Result<(), Vec<u8>> {
        let size = HEADER + payload.len() as u64;
        let mut state = self.lock();
        while state.bytes + size > self.max_bytes && !state.unread.is_empty() {
            if self.when_full == WhenFull::Block {
                return Err(payload);
            }
            let dropped = self.skip_oldest(&mut state);
            self.metrics.dropped_queue_full.inc_by(u64::from(dropped));
        }
        if let Err(e) = self.append(&mut state, &payload, samples) {
            // A full or broken disk: the batch cannot be kept. Count it rather than lose it silently.
            error!(dir = %self.dir.display(), "disk queue write failed, batch dropped: {e}");
            self.metrics.dropped_queue_full.inc_by(u64::from(samples));
            return Ok(());
        }
        self.metrics.queued_batches.inc();
        self.metrics.queued_samples.add(i64::from(samples));
        self.not_empty.notify_one();
        Ok(())
    }

    fn append(&self, state: &mut State, payload: &[u8], samples: u32) -> io::Result<()> {
        if state
            .segments
            .back()
            .is_some_and(|(_, size)| *size >= self.segment_bytes)
        {
            let next = state.segments.back().map_or(0, |(n, _)| n + 1);
            state.writer = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, next))?;
            state.segments.push_back((next, 0));
        }
        let mut record = Vec::with_capacity(HEADER as usize + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(&samples.to_le_bytes());
        record.extend_from_slice(payload);
        state.writer.write_all(&record)?;
        if self.fsync == DiskFsync::Always {
            state.writer.sync_data()?;
        }
        if let Some((_, size)) = state.segments.back_mut() {
            *size += record.len() as u64;
        }
        state.bytes += record.len() as u64;
        state.unread.push_back(samples);
        Ok(())
    }

    /// Takes the next batch, waiting until one arrives, the queue closes (`None` once it is empty)
    /// or `deadline` passes (`None`). The batch stays on disk until [`DiskQueue::commit`].
    pub fn pop(&self, deadline: Option<Instant>) -> Option<Arc<Batch>> {
        let mut state = self.lock();
        loop {
            while !state.unread.is_empty() {
                match self.read_next(&mut state) {
                    Ok(batch) => return Some(Arc::new(batch)),
                    Err(e) => {
                        // Records were checked on open or written by this process; a failure here
                        // is a disk gone bad under us. Skip the rest of that segment.
                        error!(dir = %self.dir.display(), "disk queue read failed, skipping the rest of the segment: {e}");
                        self.metrics.queue_corrupt_records.inc();
                        self.skip_segment(&mut state);
                    }
                }
            }
            if state.closed {
                return None;
            }
            state = wait_until(&self.not_empty, state, deadline)?;
        }
    }

    fn read_next(&self, state: &mut State) -> io::Result<Batch> {
        self.move_past_finished_segment(state);
        let (segment, offset) = state.read;
        let mut file = File::open(segment_path(&self.dir, segment))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut header = [0u8; HEADER as usize];
        file.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut payload = vec![0u8; len as usize];
        file.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "checksum mismatch",
            ));
        }
        let batch =
            Batch::decode(&payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        state.read.1 += HEADER + u64::from(len);
        let samples = state.unread.pop_front().unwrap_or(0);
        self.metrics.queued_batches.dec();
        self.metrics.queued_samples.sub(i64::from(samples));
        Ok(batch)
    }

    /// If the read position is at the end of a segment that is not the last, moves to the next.
    fn move_past_finished_segment(&self, state: &mut State) {
        while let Some(pos) = state.segments.iter().position(|(n, _)| *n == state.read.0) {
            let size = state.segments[pos].1;
            if state.read.1 < size || pos + 1 >= state.segments.len() {
                return;
            }
            state.read = (state.segments[pos + 1].0, 0);
        }
    }

    /// Drops the oldest unread record (for `drop_oldest`); its sample count.
    fn skip_oldest(&self, state: &mut State) -> u32 {
        match self.read_next(state) {
            Ok(batch) => {
                let dropped = batch.sample_count() as u32;
                self.commit_locked(state);
                dropped
            }
            Err(_) => {
                self.skip_segment(state);
                0
            }
        }
    }

    /// Gives up on the rest of the segment being read (it cannot be read back) and moves to the
    /// next one, recounting what is left there.
    fn skip_segment(&self, state: &mut State) {
        let before = state.unread.len();
        let pos = state.segments.iter().position(|(n, _)| *n == state.read.0);
        state.unread.clear();
        match pos {
            Some(pos) if pos + 1 < state.segments.len() => {
                state.read = (state.segments[pos + 1].0, 0);
                for (number, _) in state.segments.iter().skip(pos + 1) {
                    if let Ok((_, samples)) =
                        scan(&segment_path(&self.dir, *number), 0, &self.metrics)
                    {
                        state.unread.extend(samples);
                    }
                }
            }
            _ => state.read.1 = state.segments.back().map_or(0, |(_, size)| *size),
        }
        self.metrics
            .queued_batches
            .sub(before.saturating_sub(state.unread.len()) as i64);
        self.commit_locked(state);
    }

    /// Records that everything popped so far is delivered: it will not be replayed. Frees fully
    /// delivered segments.
    pub fn commit(&self) {
        let mut state = self.lock();
        self.commit_locked(&mut state);
    }

    fn commit_locked(&self, state: &mut State) {
        if let Err(e) = write_ack(&self.dir, state.read, self.fsync) {
            error!(dir = %self.dir.display(), "cannot record delivery in the disk queue (batches may be replayed): {e}");
        }
        while state.segments.len() > 1
            && state
                .segments
                .front()
                .is_some_and(|(n, _)| *n < state.read.0)
        {
            if let Some((number, size)) = state.segments.pop_front() {
                let _ = fs::remove_file(segment_path(&self.dir, number));
                state.bytes = state.bytes.saturating_sub(size);
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
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.seg"))
}

fn read_ack(dir: &Path) -> (u64, u64) {
    let Ok(bytes) = fs::read(dir.join("ack")) else {
        return (0, 0);
    };
    if bytes.len() != 16 {
        error!(dir = %dir.display(), "disk queue ack file is damaged; replaying from the oldest segment");
        return (0, 0);
    }
    let mut segment = [0u8; 8];
    let mut offset = [0u8; 8];
    segment.copy_from_slice(&bytes[..8]);
    offset.copy_from_slice(&bytes[8..]);
    (u64::from_le_bytes(segment), u64::from_le_bytes(offset))
}

fn write_ack(dir: &Path, (segment, offset): (u64, u64), fsync: DiskFsync) -> io::Result<()> {
    let tmp = dir.join("ack.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&segment.to_le_bytes())?;
    file.write_all(&offset.to_le_bytes())?;
    if fsync == DiskFsync::Always {
        file.sync_data()?;
    }
    fs::rename(&tmp, dir.join("ack"))
}

/// Checks the records of a segment from `start`; cuts the file after the last valid record. The
/// end of the valid part and the sample count of each record after `start`.
fn scan(path: &Path, start: u64, metrics: &ExporterMetrics) -> io::Result<(u64, Vec<u32>)> {
    let bytes = fs::read(path)?;
    let mut at = start.min(bytes.len() as u64) as usize;
    let mut samples = Vec::new();
    let end = loop {
        if at == bytes.len() {
            break at;
        }
        let valid = (|| {
            let header = bytes.get(at..at + HEADER as usize)?;
            let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
            let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
            let count = u32::from_le_bytes(header[8..12].try_into().ok()?);
            let payload = bytes.get(at + HEADER as usize..at + HEADER as usize + len)?;
            (crc32fast::hash(payload) == crc && Batch::decode(payload).is_ok())
                .then_some((len, count))
        })();
        match valid {
            Some((len, count)) => {
                samples.push(count);
                at += HEADER as usize + len;
            }
            None => {
                error!(
                    segment = %path.display(),
                    offset = at,
                    lost_bytes = bytes.len() - at,
                    "disk queue segment is torn or corrupt here; cutting it and going on"
                );
                metrics.queue_corrupt_records.inc();
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(at as u64)?;
                break at;
            }
        }
    };
    Ok((end as u64, samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::test_batches::{batch, batch_of, value};
    use crate::telemetry::Telemetry;
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
        let segment = segment_path(dir.path(), 0);
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
        let segment = segment_path(dir.path(), 0);
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
