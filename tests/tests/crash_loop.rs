//! The disk queue's promise, kept under crashes: a real host reads a ConfigMap whose value the
//! test keeps changing, queues every change on disk in front of the file exporter, and is killed
//! with SIGKILL at a random moment, 100 times; every fifth run its sink is down, so batches pile
//! up. After each kill the test reads what the queue left on disk; at the end one run drains the
//! queue and stops cleanly. Then it counts what arrived in the exporter's file:
//!
//! - nothing lost: every batch the queue held, not yet acknowledged, at any crash arrived;
//! - the ack never runs ahead: every batch before the ack at a crash had arrived by then;
//! - every duplicate within the documented bound: after a crash, the batches delivered and not
//!   yet acknowledged are the oldest in the queue, whole, and at most one export's (merged up to
//!   `max_samples`), and a value arrives more than once only if a crash caught it delivered and
//!   not acknowledged;
//! - in order: values arrive first in the order they were read;
//! - every drop counted: no run drops anything (the queue has room, `block`), and every torn
//!   record the test finds after a crash is logged as cut by the run that opens the queue.
//!
//! A value the host read but had not yet pushed into the queue when it was killed is not the
//! queue's to keep; the check starts at the queue. `CRASH_LOOP_SEED` replays a run's random kill
//! times (the seed is printed); `CRASH_LOOP_CYCLES` changes the count.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::write_configmap;
use periscope_plugin_api::{Batch, Update};
use periscope_tests::{Host, plugin_dir, wait_until};

/// Kills of the host: each lands at a random moment within [`MAX_LIFETIME`] of its start.
const CYCLES: usize = 100;
const MAX_LIFETIME: Duration = Duration::from_millis(1200);
/// The exporter's `batch.max_samples`: one export merges batches until it holds this many
/// samples, which bounds what a crash can deliver twice.
const MAX_SAMPLES: usize = 8;

const CONFIG: &str = r#"[host]
listen = "{listen}"
plugin_dirs = ["plugins"]
flush_interval = "20ms"
fanout_capacity = 10000
shutdown_timeout = "10s"

[[sources.files]]
path = "manifests"
interval = "10ms"

[[resources]]
version = "v1"
kind = "ConfigMap"
prefix = "demo"
labels = { name = "metadata.name" }

  [[resources.metrics]]
  name = "value"
  type = "gauge"
  path = "data.value"

[[exporters]]
name = "files"
plugin = "file"
queue = { type = "disk", path = "queue", max_bytes = "512KiB", fsync = "always" }
batch = { max_samples = 8, max_wait = "30ms" }
retry = { initial = "10ms", max = "100ms" }
config = { path = "out/samples.ndjson", max_bytes = "1GiB", fsync = "always" }
"#;

#[test]
fn a_host_killed_100_times_loses_nothing_from_its_disk_queue() {
    let started = Instant::now();
    let cycles = std::env::var("CRASH_LOOP_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CYCLES);
    let seed = std::env::var("CRASH_LOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("crash loop: {cycles} cycles, CRASH_LOOP_SEED={seed}");
    let mut random = Random(seed | 1);

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    plugin_dir(&dir.join("plugins"), &["file"]);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let writer = Writer::start(dir);
    let sink = dir.join("out/samples.ndjson");
    let queue = dir.join("queue");

    let mut crashes = Vec::new();
    let mut logs = Vec::new();
    for cycle in 0..cycles {
        // The first state a run reads must be new, or its snapshot would repeat a queued value.
        writer.wait_for_a_new_value();
        let sink_down = cycle % 5 == 4;
        if sink_down {
            take_the_sink_down(dir);
        }
        let mut host = Host::start(dir, CONFIG);
        std::thread::sleep(random.duration_below(MAX_LIFETIME));
        host.kill();
        logs.push(host.log());
        if sink_down {
            bring_the_sink_back(dir);
        }
        let arrived = arrived(&sink);
        let on_disk = QueueOnDisk::read(&queue);
        crashes.push(Crash::check(cycle, &on_disk, &arrived));
    }

    // A last run: the sink is up, the queue drains, the host stops cleanly.
    writer.wait_for_a_new_value();
    let mut host = Host::start(dir, CONFIG);
    host.wait_ready(Duration::from_secs(30));
    let owed: BTreeSet<u64> = crashes
        .iter()
        .flat_map(|c| c.unacknowledged.clone())
        .collect();
    let drained = wait_until(Duration::from_secs(60), || {
        let arrived = arrived(&sink);
        owed.iter().all(|v| arrived.counts.contains_key(v))
            && host.metric("periscope_exporter_queued_batches{exporter=\"files\"}") == 0.0
    });
    assert!(
        drained,
        "the last run did not deliver what the queue held:\n{}",
        host.log()
    );
    let page = host.metrics();
    drop(writer);
    assert!(host.stop().success(), "{}", host.log());
    logs.push(host.log());

    let arrived = arrived(&sink);
    // Nothing lost.
    let lost: Vec<u64> = owed
        .iter()
        .filter(|v| !arrived.counts.contains_key(v))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "queued at a crash and never delivered: {lost:?}"
    );
    // Every duplicate explained by a crash that caught it delivered and not acknowledged.
    let mut allowed: BTreeMap<u64, usize> = BTreeMap::new();
    for crash in &crashes {
        for v in &crash.delivered_unacknowledged {
            *allowed.entry(*v).or_default() += 1;
        }
    }
    let duplicates: usize = arrived.counts.values().map(|n| n - 1).sum();
    for (value, count) in &arrived.counts {
        let bound = 1 + allowed.get(value).copied().unwrap_or(0);
        assert!(
            *count <= bound,
            "{value} arrived {count} times; crashes account for {bound}"
        );
    }
    // In order: first arrivals only ever grow.
    assert!(
        arrived.first_arrivals.windows(2).all(|w| w[0] < w[1]),
        "values arrived out of order: {:?}",
        arrived.first_arrivals
    );
    // Every drop counted: none happened, and every torn record was logged as cut.
    let dropped: f64 = [
        "queue_full",
        "write_failed",
        "shutdown",
        "dead_letter_failed",
    ]
    .iter()
    .map(|reason| {
        periscope_tests::metric_value(
            &page,
            &format!(
                "periscope_exporter_dropped_samples_total{{exporter=\"files\",reason=\"{reason}\"}}"
            ),
        )
        .unwrap_or(0.0)
    })
    .sum();
    assert_eq!(dropped, 0.0, "{page}");
    for (run, log) in logs.iter().enumerate() {
        assert!(
            !log.contains("dropped"),
            "run {run} dropped batches:\n{log}"
        );
        assert!(
            !log.contains("resync"),
            "run {run} resynced (its snapshot repeats values):\n{log}"
        );
    }
    let torn: BTreeSet<(u64, u64)> = crashes.iter().flat_map(|c| c.torn.clone()).collect();
    let cut = logs
        .iter()
        .map(|log| log.matches("torn or corrupt").count())
        .sum::<usize>();
    assert_eq!(
        cut,
        torn.len(),
        "torn records found {torn:?}, cut and logged {cut}"
    );

    let replayed = crashes
        .iter()
        .map(|c| c.unacknowledged.len())
        .sum::<usize>();
    let deepest = crashes
        .iter()
        .map(|c| c.unacknowledged.len())
        .max()
        .unwrap_or(0);
    println!(
        "crash loop: {cycles} kills in {:.0?}; {} values arrived, {duplicates} duplicates; \
         {replayed} values owed across crashes (at most {deepest} at one), {} torn records, \
         {} unreadable sink lines",
        started.elapsed(),
        arrived.counts.len(),
        torn.len(),
        arrived.unreadable_lines,
    );
}

/// What one crash left, checked against what had arrived by then.
struct Crash {
    /// Values after the ack: the queue owes them.
    unacknowledged: Vec<u64>,
    /// Those of them that had arrived already (what the next run delivers again).
    delivered_unacknowledged: Vec<u64>,
    /// Records cut short by the kill, by segment and offset.
    torn: Vec<(u64, u64)>,
}

impl Crash {
    fn check(cycle: usize, on_disk: &QueueOnDisk, arrived: &Arrived) -> Crash {
        let unarrived_acknowledged: Vec<u64> = on_disk
            .acknowledged
            .iter()
            .flatten()
            .filter(|v| !arrived.counts.contains_key(v))
            .copied()
            .collect();
        assert!(
            unarrived_acknowledged.is_empty(),
            "crash {cycle}: acknowledged before they arrived: {unarrived_acknowledged:?}"
        );
        // A record arrives whole (one export, one write) or not at all; those that arrived must
        // be the oldest, and one export's worth: fewer than `max_samples` before the last one.
        let delivered: Vec<&Vec<u64>> = on_disk
            .unacknowledged
            .iter()
            .take_while(|values| values.iter().all(|v| arrived.counts.contains_key(v)))
            .collect();
        let rest = &on_disk.unacknowledged[delivered.len()..];
        assert!(
            rest.iter()
                .flatten()
                .all(|v| !arrived.counts.contains_key(v)),
            "crash {cycle}: delivered and not acknowledged must be the oldest queued, whole: {:?}",
            on_disk.unacknowledged
        );
        let before_last: usize = delivered
            .iter()
            .rev()
            .skip(1)
            .map(|values| values.len())
            .sum();
        assert!(
            before_last < MAX_SAMPLES,
            "crash {cycle}: delivered and not acknowledged, more than one export: {delivered:?}"
        );
        Crash {
            unacknowledged: on_disk.unacknowledged.iter().flatten().copied().collect(),
            delivered_unacknowledged: delivered.into_iter().flatten().copied().collect(),
            torn: on_disk.torn.clone(),
        }
    }
}

/// The queue's directory as a crash left it, read with the formats documented in
/// `core/src/delivery/disk_queue/segment.rs` (records) and `cursor.rs` (the `ack` file).
struct QueueOnDisk {
    /// The values of each record before the ack (and not pending), in order.
    acknowledged: Vec<Vec<u64>>,
    /// The values of each record the queue still owes, in order.
    unacknowledged: Vec<Vec<u64>>,
    torn: Vec<(u64, u64)>,
}

impl QueueOnDisk {
    fn read(dir: &Path) -> QueueOnDisk {
        // The ack: a position, then the records before it still pending (24 bytes each).
        let ack_file = std::fs::read(dir.join("ack")).unwrap_or_default();
        let ack = ack_file
            .get(..16)
            .map_or((0, 0), |b| (le_u64(&b[..8]), le_u64(&b[8..16])));
        let pending: BTreeSet<(u64, u64)> = ack_file
            .get(16..)
            .unwrap_or_default()
            .chunks_exact(24)
            .map(|p| (le_u64(&p[..8]), le_u64(&p[8..16])))
            .collect();
        let mut segments: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| {
                        let path = e.ok()?.path();
                        let number = path
                            .file_name()?
                            .to_str()?
                            .strip_suffix(".seg")?
                            .parse()
                            .ok()?;
                        Some((number, path))
                    })
                    .collect()
            })
            .unwrap_or_default();
        segments.sort();
        let mut found = QueueOnDisk {
            acknowledged: Vec::new(),
            unacknowledged: Vec::new(),
            torn: Vec::new(),
        };
        for (number, path) in segments {
            let bytes = std::fs::read(&path).unwrap();
            let mut at = 0;
            while at < bytes.len() {
                let len = bytes
                    .get(at..at + 4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
                let Some(payload) = len.and_then(|len| bytes.get(at + 12..at + 12 + len)) else {
                    found.torn.push((number, at as u64));
                    break;
                };
                let batch = Batch::decode(payload).unwrap_or_else(|e| {
                    panic!("{} at {at}: a whole record is a batch: {e}", path.display())
                });
                let value = values_of(&batch);
                if (number, at as u64) < ack && !pending.contains(&(number, at as u64)) {
                    found.acknowledged.push(value);
                } else {
                    found.unacknowledged.push(value);
                }
                at += 12 + payload.len();
            }
        }
        found
    }
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap())
}

/// The values of the ConfigMap in a queued batch, in order.
fn values_of(batch: &Batch) -> Vec<u64> {
    let values: Vec<u64> = batch
        .updates()
        .flat_map(|u| match u {
            Update::Replace { samples, .. } => samples.iter().map(|s| s.value() as u64).collect(),
            Update::Remove { .. } => Vec::new(),
        })
        .collect();
    assert!(!values.is_empty(), "a queued batch holds a value");
    values
}

/// What the exporter's file holds.
struct Arrived {
    /// How many times each value arrived.
    counts: BTreeMap<u64, usize>,
    /// Values in the order they first arrived.
    first_arrivals: Vec<u64>,
    /// Lines that are not JSON (a write cut by a kill; its batch is delivered again).
    unreadable_lines: usize,
}

fn arrived(sink: &Path) -> Arrived {
    let text = std::fs::read_to_string(sink).unwrap_or_default();
    let mut arrived = Arrived {
        counts: BTreeMap::new(),
        first_arrivals: Vec::new(),
        unreadable_lines: 0,
    };
    for line in text.lines() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            arrived.unreadable_lines += 1;
            continue;
        };
        if record["metric"] != "demo_value" {
            continue;
        }
        let value = record["value"].as_f64().unwrap() as u64;
        let count = arrived.counts.entry(value).or_default();
        if *count == 0 {
            arrived.first_arrivals.push(value);
        }
        *count += 1;
    }
    arrived
}

/// The sink's directory replaced by a file: the file exporter cannot start, batches pile up.
fn take_the_sink_down(dir: &Path) {
    std::fs::rename(dir.join("out"), dir.join("out.up")).unwrap();
    std::fs::write(dir.join("out"), "not a directory").unwrap();
}

fn bring_the_sink_back(dir: &Path) {
    std::fs::remove_file(dir.join("out")).unwrap();
    std::fs::rename(dir.join("out.up"), dir.join("out")).unwrap();
}

/// A thread setting ConfigMap `a` to 1, 2, 3, … every few milliseconds.
struct Writer {
    latest: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(dir: &Path) -> Writer {
        let latest = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (dir, latest, stop) = (dir.to_owned(), latest.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut value = 0;
                while !stop.load(Ordering::Relaxed) {
                    value += 1;
                    write_configmap(&dir, "a", value as f64);
                    latest.store(value, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Writer {
            latest,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until a value is written after this call began.
    fn wait_for_a_new_value(&self) {
        let seen = self.latest.load(Ordering::Acquire);
        assert!(
            wait_until(Duration::from_secs(5), || self
                .latest
                .load(Ordering::Acquire)
                > seen + 1),
            "the writer stopped"
        );
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A small xorshift generator: reproducible kill times from a printed seed.
struct Random(u64);

impl Random {
    fn duration_below(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(self.0 % max.as_millis() as u64)
    }
}
