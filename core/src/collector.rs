//! The collector: keeps the current state of every source, gathers changes into batches and fans
//! them out to every exporter; serves full snapshots (resyncs) on request.
//!
//! It is the single writer of the fan-out channel, so the sequence number it stamps on each batch
//! orders everything: a snapshot taken at sequence `n` holds exactly the effect of batches `1..=n`,
//! and an exporter that receives it skips any batch numbered `n` or less that arrives later.
//!
//! It remembers which input last replaced each source, so that an input the config no longer has
//! can be retired: every source it still holds is removed, in order with everything it sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use periscope_plugin_api::{Batch, BatchBuilder};
use periscope_scraper::SourceUpdate;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, error};

use crate::telemetry::Telemetry;

mod packed;

use packed::{Packed, Packer};

/// A batch on the fan-out channel, with its sequence number.
pub type Stamped = (u64, Arc<Batch>);

/// Fanned-out batches stop growing at this many samples…
const MAX_BATCH_SAMPLES: usize = 50_000;
/// …or this many bytes; snapshots are cut into batches of the same size.
const MAX_BATCH_BYTES: usize = 16 << 20;

/// A full copy of the current state, taken after fan-out batch `seq`.
#[derive(Debug)]
pub struct Snapshot {
    /// The last fanned-out batch the snapshot includes.
    pub seq: u64,
    /// `Replace` updates of every current source.
    pub batches: Vec<Arc<Batch>>,
}

/// Which input an update comes from: a number the host gives each input it starts.
pub type InputId = u64;

/// What the collector takes in, in order.
#[derive(Debug)]
pub enum Intake {
    /// An input's update.
    Update(InputId, SourceUpdate),
    /// The input is gone (its config entry was removed or changed): every source it last
    /// replaced is removed.
    Retire(InputId),
}

/// Subscribes exporters to the fan-out while the collector runs. The fan-out closes (which tells
/// exporters to drain and stop) once the collector has ended and every `Fanout` is dropped.
#[derive(Clone)]
pub struct Fanout(broadcast::Sender<Stamped>);

impl Fanout {
    /// A new receiver, getting every batch fanned out from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.0.subscribe()
    }
}

/// Asks the collector for a [`Snapshot`], sent to `reply`.
#[derive(Debug)]
pub struct ResyncRequest {
    /// Where the snapshot goes.
    pub reply: mpsc::UnboundedSender<Snapshot>,
}

/// The collector task's state.
pub struct Collector {
    /// Every current source: the input that last replaced it, and that update, packed.
    state: HashMap<String, (InputId, Packed)>,
    packer: Packer,
    pending: BatchBuilder,
    seq: u64,
    fanout: broadcast::Sender<Stamped>,
    flush_interval: Duration,
    telemetry: Telemetry,
}

impl Collector {
    /// A collector whose fan-out channel holds `capacity` batches.
    pub fn new(flush_interval: Duration, capacity: usize, telemetry: Telemetry) -> Self {
        let (fanout, _) = broadcast::channel(capacity.max(1));
        Collector {
            state: HashMap::new(),
            packer: Packer::default(),
            pending: BatchBuilder::new(),
            seq: 0,
            fanout,
            flush_interval,
            telemetry,
        }
    }

    /// The handle that subscribes exporters to the fan-out.
    pub fn fanout(&self) -> Fanout {
        Fanout(self.fanout.clone())
    }

    /// Runs until every intake sender is gone, then flushes what is pending and returns.
    pub async fn run(
        mut self,
        mut updates: mpsc::Receiver<Intake>,
        mut resyncs: mpsc::UnboundedReceiver<ResyncRequest>,
    ) {
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                intake = updates.recv() => match intake {
                    Some(Intake::Update(input, update)) => self.apply(input, update),
                    Some(Intake::Retire(input)) => self.retire(input),
                    None => break,
                },
                Some(request) = resyncs.recv() => {
                    self.flush();
                    // The requester may be gone (its exporter stopped); nothing to do then.
                    let _ = request.reply.send(self.snapshot());
                }
                _ = tick.tick() => self.flush(),
            }
        }
        self.flush();
    }

    /// Takes in one source's update from `input`, skipping it if it changes nothing.
    fn apply(&mut self, input: InputId, update: SourceUpdate) {
        let id = update.source_id().to_owned();
        let state_bytes = &self.telemetry.source_state_bytes;
        let changed = if update.is_remove() {
            let removed = self.state.remove(&id);
            if let Some((_, old)) = &removed {
                state_bytes.sub(old.len() as i64);
            }
            removed.is_some()
        } else {
            match self.state.get_mut(&id) {
                Some((owner, old)) if same_content(old, &update) => {
                    *owner = input;
                    false
                }
                _ => true,
            }
        };
        if !changed {
            self.telemetry.unchanged_updates.inc();
            return;
        }
        self.pending.append(update.batch());
        if !update.is_remove() {
            let packed = self.packer.pack(update.batch());
            state_bytes.add(packed.len() as i64);
            if let Some((_, old)) = self.state.insert(id, (input, packed)) {
                state_bytes.sub(old.len() as i64);
            }
        }
        self.telemetry.sources.set(self.state.len() as i64);
        self.flush_if_full();
    }

    /// Removes every source `input` last replaced.
    fn retire(&mut self, input: InputId) {
        let held: Vec<SourceUpdate> = self
            .state
            .iter()
            .filter(|(_, (owner, _))| *owner == input)
            .filter_map(|(id, (_, packed))| unpacked(id, packed))
            .filter_map(|batch| {
                batch
                    .updates()
                    .next()
                    .map(|u| SourceUpdate::remove(u.source()))
            })
            .collect();
        for remove in held {
            self.apply(input, remove);
        }
    }

    fn flush_if_full(&mut self) {
        if self.pending.sample_count() >= MAX_BATCH_SAMPLES
            || self.pending.byte_size() >= MAX_BATCH_BYTES
        {
            self.flush();
        }
    }

    /// Fans out what is pending, if anything.
    fn flush(&mut self) {
        if self.pending.update_count() == 0 {
            return;
        }
        let batch = std::mem::take(&mut self.pending).build();
        self.seq += 1;
        self.telemetry.batches.inc();
        debug!(
            seq = self.seq,
            updates = batch.update_count(),
            samples = batch.sample_count(),
            "fan-out"
        );
        // No receiver (no exporter configured) is fine: the state is kept for later snapshots.
        let _ = self.fanout.send((self.seq, Arc::new(batch)));
    }

    /// The current state as `Replace` updates, cut into batches of bounded size.
    fn snapshot(&self) -> Snapshot {
        let mut batches = Vec::new();
        let mut builder = BatchBuilder::new();
        for (id, (_, packed)) in &self.state {
            let Some(batch) = unpacked(id, packed) else {
                continue;
            };
            builder.append(&batch);
            if builder.sample_count() >= MAX_BATCH_SAMPLES || builder.byte_size() >= MAX_BATCH_BYTES
            {
                batches.push(Arc::new(std::mem::take(&mut builder).build()));
            }
        }
        if builder.update_count() > 0 {
            batches.push(Arc::new(builder.build()));
        }
        Snapshot {
            seq: self.seq,
            batches,
        }
    }
}

/// Whether `update` says what the packed `old` says (ignoring timestamps).
fn same_content(old: &Packed, update: &SourceUpdate) -> bool {
    old.unpack()
        .is_ok_and(|old| old.same_content(update.batch()))
}

/// The packed update of source `id` again; a packed update that does not read back is a bug,
/// logged, and the source is left out of what needs it.
fn unpacked(id: &str, packed: &Packed) -> Option<Batch> {
    packed
        .unpack()
        .inspect_err(|e| {
            error!(
                source = id,
                "the collector's copy of a source does not read back: {e}"
            )
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::{Family, FamilyKind, Source, SourceKind, Suffix, Update};

    fn replace(id: &str, value: f64) -> SourceUpdate {
        SourceUpdate::replace(Source::new(SourceKind::Object, id), |w| {
            let f = w.family(Family {
                name: "x",
                help: "",
                unit: "",
                kind: FamilyKind::Gauge,
            });
            w.sample(f, Suffix::None, value, 0);
        })
    }

    fn ids(batch: &Batch) -> Vec<String> {
        batch
            .updates()
            .map(|u| match u {
                Update::Replace { source, .. } => format!("+{}", source.id),
                Update::Remove { source } => format!("-{}", source.id),
            })
            .collect()
    }

    #[tokio::test]
    async fn unchanged_updates_are_skipped_removes_of_unknown_sources_ignored_and_state_counted() {
        let telemetry = Telemetry::new();
        let collector = Collector::new(Duration::from_secs(60), 16, telemetry.clone());
        let mut out = collector.fanout().subscribe();
        let (tx, rx) = mpsc::channel(16);
        let (_resync_tx, resync_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(collector.run(rx, resync_rx));
        for update in [
            replace("a", 1.0),
            replace("a", 1.0),
            replace("b", 1.0),
            SourceUpdate::remove(Source::new(SourceKind::Object, "zzz")),
            SourceUpdate::remove(Source::new(SourceKind::Object, "b")),
            replace("a", 2.0),
        ] {
            tx.send(Intake::Update(0, update)).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        let (seq, batch) = out.recv().await.unwrap();
        assert_eq!(seq, 1);
        assert_eq!(ids(&batch), ["+a", "+b", "-b", "+a"]);
        assert_eq!(telemetry.unchanged_updates.get(), 2);
        assert_eq!(telemetry.sources.get(), 1);
        let a = replace("a", 2.0);
        assert_eq!(
            telemetry.source_state_bytes.get(),
            Packer::default().pack(a.batch()).len() as i64,
            "only a's last batch is kept: its first was replaced, b's added and taken away"
        );
    }

    #[tokio::test]
    async fn snapshot_holds_every_current_source_and_the_last_batch_it_covers() {
        let collector = Collector::new(Duration::from_millis(10), 16, Telemetry::new());
        let mut out = collector.fanout().subscribe();
        let (tx, rx) = mpsc::channel(16);
        let (resync_tx, resync_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(collector.run(rx, resync_rx));
        for update in [
            replace("a", 1.0),
            replace("b", 2.0),
            SourceUpdate::remove(Source::new(SourceKind::Object, "a")),
        ] {
            tx.send(Intake::Update(0, update)).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut last_seq = 0;
        while seen.len() < 3 {
            let (seq, batch) = out.recv().await.unwrap();
            last_seq = seq;
            seen.extend(ids(&batch));
        }
        let (reply, mut replies) = mpsc::unbounded_channel();
        resync_tx.send(ResyncRequest { reply }).unwrap();
        let snapshot = replies.recv().await.unwrap();
        assert_eq!(snapshot.seq, last_seq);
        let all: Vec<_> = snapshot.batches.iter().flat_map(|b| ids(b)).collect();
        assert_eq!(all, ["+b"]);
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_retired_input_loses_the_sources_it_last_replaced_and_no_other() {
        let collector = Collector::new(Duration::from_secs(60), 16, Telemetry::new());
        let mut out = collector.fanout().subscribe();
        let (tx, rx) = mpsc::channel(16);
        let (_resync_tx, resync_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(collector.run(rx, resync_rx));
        for intake in [
            Intake::Update(1, replace("a", 1.0)),
            Intake::Update(1, replace("b", 1.0)),
            Intake::Update(1, replace("c", 1.0)),
            // Input 2 takes over `b` (same content) and `c` (new content).
            Intake::Update(2, replace("b", 1.0)),
            Intake::Update(2, replace("c", 2.0)),
            Intake::Retire(1),
        ] {
            tx.send(intake).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        let (_, batch) = out.recv().await.unwrap();
        assert_eq!(ids(&batch), ["+a", "+b", "+c", "+c", "-a"]);
    }
}
