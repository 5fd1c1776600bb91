//! The disk queue against a model: random pushes, pops, commits, drops, crashes (a reopen) and
//! torn last writes, run on the real queue in a temporary directory and on a plain in-memory
//! model of what the queue promises. After every step both must agree on what is queued, what a
//! pop returns and what was dropped, and the files must stay within the queue's size bound.
//!
//! Foreign state is part of the run: a record damaged on disk (lost alone, the rest of its
//! segment replayed), junk and a directory named like segments (ignored, never deleted), and an
//! `ack` file overwritten with 16 random bytes or `u64::MAX` (everything not delivered replayed,
//! nothing deleted).
//!
//! The queue decides when it is full (that depends on segment sizes); the model checks that the
//! decision was allowed and then follows it. `PROPTEST_CASES` sets the number of runs.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use periscope_plugin_api::{
    Batch, BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix, Update,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::segment::Record;
use super::{Append, DiskQueue, Limits};
use crate::config::{DiskFsync, WhenFull};
use crate::telemetry::{ExporterMetrics, Telemetry};

/// One step of a run.
#[derive(Debug, Clone)]
enum Action {
    /// The intake pushes a batch of `samples` samples, padded to about `padding` more bytes.
    Push { samples: u32, padding: usize },
    /// The delivery thread pops a batch (without waiting).
    Pop,
    /// The delivery thread delivered what it popped.
    Commit,
    /// The host crashes and starts again.
    Reopen,
    /// The host crashes in the middle of its last write (the last `bytes` of the newest segment
    /// never reach the disk), and starts again.
    TearLastWrite { bytes: u64 },
    /// While the host is down, one record not delivered (the `pick`th) is damaged on disk.
    CorruptRecord { pick: usize },
    /// While the host is down, `5.seg` (junk) and a directory named like a segment appear.
    ForeignEntries,
    /// While the host is down, the `ack` file is overwritten with these bytes.
    DamageAck { bytes: [u8; 16] },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (1u32..=3, 0usize..1500).prop_map(|(samples, padding)| Action::Push { samples, padding }),
        5 => Just(Action::Pop),
        3 => Just(Action::Commit),
        1 => Just(Action::Reopen),
        1 => (1u64..=12).prop_map(|bytes| Action::TearLastWrite { bytes }),
        1 => any::<usize>().prop_map(|pick| Action::CorruptRecord { pick }),
        1 => Just(Action::ForeignEntries),
        1 => prop_oneof![Just([0xff; 16]), any::<[u8; 16]>()].prop_map(|bytes| Action::DamageAck { bytes }),
    ]
}

/// The queue's settings for one run: small, so segments roll and the queue fills often.
#[derive(Debug, Clone, Copy)]
struct Setup {
    limits: Limits,
    when_full: WhenFull,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(16u64 << 10), Just(32 << 10)],
        prop_oneof![Just(2u64 << 10), Just(4 << 10), Just(8 << 10)],
        prop_oneof![Just(WhenFull::Block), Just(WhenFull::DropOldest)],
    )
        .prop_map(|(max_bytes, segment_bytes, when_full)| Setup {
            limits: Limits {
                max_bytes,
                segment_bytes,
            },
            when_full,
        })
}

/// A batch as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    id: u64,
    samples: u32,
    /// Its record's size on disk.
    size: u64,
    /// Whether it was in flight at a crash: replayed from wherever it is, it may keep a segment
    /// on disk that holds little else.
    replayed: bool,
}

/// What the queue promises, kept in memory: batches popped and not delivered, and batches not
/// popped yet, in order.
#[derive(Debug, Default)]
struct Model {
    in_flight: Vec<Entry>,
    unread: VecDeque<Entry>,
    /// Every record written and not torn off since, oldest first: the newest is what a torn
    /// write cuts.
    written: Vec<u64>,
    next_id: u64,
    /// Bytes of records damaged on disk, which may stay there until their segment goes.
    damaged_bytes: u64,
}

impl Model {
    /// The queue dropped `samples` samples for room: the oldest unread entries, exactly.
    fn drop_oldest(&mut self, samples: u64) {
        let mut left = samples;
        while left > 0 {
            let entry = self.unread.pop_front().unwrap_or_else(|| {
                panic!("the queue dropped {samples} samples, more than it held unread")
            });
            assert!(
                u64::from(entry.samples) <= left,
                "the queue dropped part of a batch ({samples} samples)"
            );
            left -= u64::from(entry.samples);
        }
    }

    /// A crash: what was in flight comes back first.
    fn crash(&mut self) {
        let mut unread: VecDeque<Entry> = self
            .in_flight
            .drain(..)
            .map(|e| Entry {
                replayed: true,
                ..e
            })
            .collect();
        unread.extend(self.unread.drain(..));
        self.unread = unread;
    }

    /// Removes entry `id` wherever it is; whether it was there.
    fn remove(&mut self, id: u64) -> bool {
        let before = self.in_flight.len() + self.unread.len();
        self.in_flight.retain(|e| e.id != id);
        self.unread.retain(|e| e.id != id);
        before != self.in_flight.len() + self.unread.len()
    }

    fn not_delivered(&self) -> impl Iterator<Item = &Entry> {
        self.in_flight.iter().chain(self.unread.iter())
    }
}

/// The queue under test and what it needs to be reopened.
struct Subject {
    dir: tempfile::TempDir,
    setup: Setup,
    metrics: ExporterMetrics,
    queue: Option<DiskQueue>,
}

impl Subject {
    fn new(setup: Setup) -> Subject {
        let mut subject = Subject {
            dir: tempfile::tempdir().expect("temp dir"),
            setup,
            metrics: Telemetry::new().exporter("model"),
            queue: None,
        };
        subject.reopen();
        subject
    }

    fn queue(&self) -> &DiskQueue {
        self.queue.as_ref().expect("the queue is open")
    }

    /// Drops the queue as a crash would (nothing flushed, nothing committed) and opens it again.
    fn reopen(&mut self) {
        self.queue = None;
        self.queue = Some(
            DiskQueue::open_with(
                self.dir.path(),
                self.setup.limits,
                self.setup.when_full,
                DiskFsync::Never,
                self.metrics.clone(),
            )
            .expect("the queue opens"),
        );
    }

    /// The segment files, by name (foreign entries left out).
    fn segments(&self) -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = fs::read_dir(self.dir.path())
            .expect("read the queue dir")
            .map(|e| e.expect("dir entry"))
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(".seg") && !FOREIGN.contains(&name.as_str())
            })
            .map(|e| {
                let len = e.metadata().expect("segment metadata").len();
                (e.file_name().to_string_lossy().into_owned(), len)
            })
            .collect();
        files.sort();
        files
    }

    fn disk_bytes(&self) -> u64 {
        self.segments().iter().map(|(_, len)| len).sum()
    }

    /// Cuts the last `bytes` off the newest segment; whether there was anything to cut.
    fn tear_newest_segment(&self, bytes: u64) -> bool {
        let Some((name, len)) = self.segments().pop() else {
            return false;
        };
        if len == 0 {
            return false;
        }
        fs::OpenOptions::new()
            .write(true)
            .open(self.dir.path().join(name))
            .and_then(|f| f.set_len(len.saturating_sub(bytes)))
            .expect("tear the segment");
        true
    }
}

/// The foreign entries [`Action::ForeignEntries`] puts in the queue's directory.
const FOREIGN: [&str; 2] = ["5.seg", "10000000000000000099.seg"];

impl Subject {
    /// Damages the record of batch `id` on disk (its checksum); whether it was found.
    fn corrupt(&self, id: u64) -> bool {
        for (name, _) in self.segments() {
            let path = self.dir.path().join(&name);
            let mut bytes = fs::read(&path).expect("read a segment");
            let mut at = 0;
            while at < bytes.len() {
                let Some(meta) = super::segment::check(&bytes[at..]) else {
                    at += 1;
                    continue;
                };
                let payload = &bytes[at + super::segment::HEADER..at + meta.size() as usize];
                let batch = Batch::decode(payload).expect("a checked record decodes");
                if identify(&batch).0 == id {
                    bytes[at + 4] ^= 0xff;
                    fs::write(&path, &bytes).expect("write the segment back");
                    return true;
                }
                at += meta.size() as usize;
            }
        }
        false
    }

    /// Puts the [`FOREIGN`] entries in the queue's directory.
    fn add_foreign_entries(&self) {
        fs::write(self.dir.path().join(FOREIGN[0]), b"junk").expect("write junk");
        let _ = fs::create_dir(self.dir.path().join(FOREIGN[1]));
    }
}

/// A batch of `samples` samples all valued `id`, its source id padded with `padding` bytes.
fn batch(id: u64, samples: u32, padding: usize) -> Arc<Batch> {
    let mut b = BatchBuilder::new();
    let f = b.family(Family {
        name: "x",
        help: "",
        unit: "",
        kind: FamilyKind::Gauge,
    });
    let source = format!("s{}", "p".repeat(padding));
    let mut update = b.replace(Source::new(SourceKind::Object, &source));
    for _ in 0..samples {
        update.sample(f, Suffix::None, id as f64, 0);
    }
    Arc::new(b.build())
}

/// The id (value of the first sample) and sample count of a popped batch.
fn identify(batch: &Batch) -> (u64, usize) {
    let id = match batch.updates().next() {
        Some(Update::Replace { samples, .. }) => samples.iter().next().map(|s| s.value()),
        _ => None,
    };
    (
        id.expect("a popped batch has a sample") as u64,
        batch.sample_count(),
    )
}

fn run(setup: Setup, actions: &[Action]) {
    let mut subject = Subject::new(setup);
    let mut model = Model::default();
    let max_record = actions
        .iter()
        .map(|a| match a {
            Action::Push { samples, padding } => frame(&batch(0, *samples, *padding)).size(),
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    for (step, action) in actions.iter().enumerate() {
        let metrics = &subject.metrics;
        let dropped_before = metrics.dropped_queue_full.get();
        let corrupt_before = metrics.queue_corrupt_records.get();
        let corrupt_samples_before = metrics.dropped_corrupt.get();
        match *action {
            Action::Push { samples, padding } => {
                let id = model.next_id;
                model.next_id += 1;
                let record = Record::frame(&batch(id, samples, padding)).expect("frame");
                let size = record.meta().size();
                let disk_before = subject.disk_bytes();
                let full = disk_before + size > setup.limits.max_bytes;
                let has_unread = !model.unread.is_empty();
                match subject.queue().try_append(record) {
                    Append::Full(_) => {
                        assert_eq!(
                            setup.when_full,
                            WhenFull::Block,
                            "step {step}: only `block` waits"
                        );
                        assert!(
                            full && has_unread,
                            "step {step}: waited for room with {disk_before} of {} bytes used",
                            setup.limits.max_bytes
                        );
                    }
                    Append::Done => {
                        assert!(
                            !(setup.when_full == WhenFull::Block && full && has_unread),
                            "step {step}: `block` wrote past max_bytes"
                        );
                        let dropped = metrics.dropped_queue_full.get() - dropped_before;
                        assert!(
                            dropped == 0 || full,
                            "step {step}: dropped {dropped} samples with room to spare"
                        );
                        model.drop_oldest(dropped);
                        model.unread.push_back(Entry {
                            id,
                            samples,
                            size,
                            replayed: false,
                        });
                        model.written.push(id);
                        if setup.when_full == WhenFull::DropOldest {
                            let unread: u64 = model.unread.iter().map(|e| e.size).sum();
                            assert!(
                                unread <= setup.limits.max_bytes,
                                "step {step}: {unread} bytes unread after making room"
                            );
                        }
                    }
                }
                assert_eq!(
                    metrics.dropped_write_failed.get(),
                    0,
                    "step {step}: a write failed (is the disk full?)"
                );
            }
            Action::Pop => {
                let popped = subject.queue().pop(Some(Instant::now()));
                let expected = model.unread.pop_front();
                match (popped, expected) {
                    (Some(batch), Some(entry)) => {
                        assert_eq!(
                            identify(&batch),
                            (entry.id, entry.samples as usize),
                            "step {step}"
                        );
                        model.in_flight.push(entry);
                    }
                    (None, None) => {}
                    (popped, expected) => panic!(
                        "step {step}: popped {:?}, the model expected {expected:?}",
                        popped.map(|b| identify(&b))
                    ),
                }
            }
            Action::Commit => {
                subject.queue().commit();
                model.in_flight.clear();
            }
            Action::Reopen => {
                subject.reopen();
                model.crash();
            }
            Action::TearLastWrite { bytes } => {
                let torn = subject.tear_newest_segment(bytes);
                subject.reopen();
                model.crash();
                if torn && let Some(id) = model.written.pop() {
                    let lost = u64::from(model.remove(id));
                    assert_eq!(
                        subject.metrics.queue_corrupt_records.get() - corrupt_before,
                        lost,
                        "step {step}: a torn record not yet delivered is cut and counted"
                    );
                }
            }
            Action::CorruptRecord { pick } => {
                model.crash();
                // Not the newest record, which is what a later torn write would cut.
                let last = model.written.last().copied();
                let candidates: Vec<Entry> = model
                    .unread
                    .iter()
                    .filter(|e| Some(e.id) != last)
                    .copied()
                    .collect();
                let target = (!candidates.is_empty()).then(|| candidates[pick % candidates.len()]);
                if let Some(entry) = target {
                    assert!(
                        subject.corrupt(entry.id),
                        "step {step}: record {entry:?} is on disk"
                    );
                    // It stays in `written`: its place on disk (a hole now) is what a torn write
                    // cuts when it is the newest.
                    model.remove(entry.id);
                    model.damaged_bytes += entry.size;
                }
                subject.reopen();
                let lost = target.map_or(0, |e| u64::from(e.samples));
                assert_eq!(
                    subject.metrics.queue_corrupt_records.get() - corrupt_before,
                    u64::from(target.is_some()),
                    "step {step}: a damaged record is counted once"
                );
                assert_eq!(
                    subject.metrics.dropped_corrupt.get() - corrupt_samples_before,
                    lost,
                    "step {step}: its samples are counted as dropped (corrupt)"
                );
            }
            Action::ForeignEntries => {
                subject.add_foreign_entries();
                subject.reopen();
                model.crash();
            }
            Action::DamageAck { bytes } => {
                fs::write(subject.dir.path().join("ack"), bytes).expect("write the ack");
                subject.reopen();
                model.crash();
                // Nothing tells what was delivered any more: all that is on disk comes back, in
                // order; it must hold everything not delivered.
                let mut replayed = Vec::new();
                while let Some(batch) = subject.queue().pop(Some(Instant::now())) {
                    replayed.push(identify(&batch).0);
                }
                subject.queue().commit();
                assert!(
                    replayed.windows(2).all(|w| w[0] < w[1]),
                    "step {step}: replayed in order: {replayed:?}"
                );
                let mut left = replayed.iter();
                for entry in &model.unread {
                    assert!(
                        left.any(|id| *id == entry.id),
                        "step {step}: batch {} not delivered was lost: {replayed:?}",
                        entry.id
                    );
                }
                model.unread.clear();
            }
        }
        let metrics = &subject.metrics;
        if !matches!(
            action,
            // A damaged ack replays delivered records too, torn ones among them.
            Action::TearLastWrite { .. } | Action::CorruptRecord { .. } | Action::DamageAck { .. }
        ) {
            assert_eq!(
                metrics.queue_corrupt_records.get(),
                corrupt_before,
                "step {step}"
            );
        }
        assert_eq!(
            metrics.queued_batches.get(),
            model.unread.len() as i64,
            "step {step}: queued batches"
        );
        assert_eq!(
            metrics.queued_samples.get(),
            model
                .unread
                .iter()
                .map(|e| i64::from(e.samples))
                .sum::<i64>(),
            "step {step}: queued samples"
        );
        // On disk: every record not delivered, and little else — what shares a segment with
        // them: the two segments around the cursors, and one for each record in flight or
        // replayed from out of order.
        let not_delivered: u64 = model.not_delivered().map(|e| e.size).sum();
        let scattered = model.in_flight.len() + model.unread.iter().filter(|e| e.replayed).count();
        let slack = (2 + scattered as u64) * (setup.limits.segment_bytes + max_record)
            + model.damaged_bytes;
        let disk = subject.disk_bytes();
        assert!(
            disk >= not_delivered && disk - not_delivered <= slack,
            "step {step}: {disk} bytes on disk for {not_delivered} not delivered: {:?}",
            subject.segments()
        );
    }
    // A last crash: everything not acknowledged comes back, in order.
    subject.reopen();
    let mut replayed = Vec::new();
    while let Some(batch) = subject.queue().pop(Some(Instant::now())) {
        replayed.push(identify(&batch).0);
    }
    model.crash();
    let expected: Vec<u64> = model.unread.iter().map(|e| e.id).collect();
    assert_eq!(replayed, expected, "what a restart replays");
    assert_no_stray_files(subject.dir.path());
    let added = actions.iter().any(|a| matches!(a, Action::ForeignEntries));
    assert_foreign_entries_kept(subject.dir.path(), added);
}

/// The record of `batch`, to know its size.
fn frame(batch: &Batch) -> super::segment::RecordMeta {
    Record::frame(batch).expect("frame").meta()
}

/// The queue's directory holds segments and the `ack` file, nothing else.
fn assert_no_stray_files(dir: &Path) {
    for entry in fs::read_dir(dir).expect("read the queue dir") {
        let name = entry.expect("dir entry").file_name();
        let name = name.to_string_lossy();
        assert!(name.ends_with(".seg") || name == "ack", "stray file {name}");
    }
}

/// The foreign entries, if they were put there, are still there: never deleted.
fn assert_foreign_entries_kept(dir: &Path, added: bool) {
    for name in FOREIGN {
        assert_eq!(dir.join(name).exists(), added, "{name}");
    }
}

/// `PROPTEST_CASES` when set, else a count that keeps `cargo test` to a few seconds.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_disk_queue_behaves_like_its_model(
        setup in setup(),
        actions in proptest::collection::vec(action(), 1..300),
    ) {
        run(setup, &actions);
    }
}
