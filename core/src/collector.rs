//! The collector: keeps what it needs of every source, gathers changes into batches and fans
//! them out to every exporter; serves full snapshots (resyncs) on request.
//!
//! It is the single writer of the fan-out channel, so the sequence number it stamps on each batch
//! orders everything: a snapshot taken at sequence `n` holds exactly the effect of batches `1..=n`,
//! and an exporter that receives it skips any batch numbered `n` or less that arrives later.
//!
//! Of each source it keeps a fingerprint of its last update ([`fingerprint`]), to skip an update
//! that changes nothing, and the input that last replaced it, so that an input the config no
//! longer has can be retired: every source it still holds is removed, in order with everything
//! it sent. It keeps a copy of the last update (packed, [`packed`]) only of the sources no input
//! can send again; of the others, only what their `Remove` needs.
//!
//! # Resyncs
//!
//! A watch holds every object it was sent, so a resync asks the watches to send their sources
//! again ([`PipelinePublisher::resend`]) instead of reading a copy. While they do, the collector
//! goes on taking in and fanning out live updates, and gathers ([`Gather`]) for each source the
//! latest of what was sent again and what came live since the request: an input sends in order,
//! so what it sends again of a source is newer than anything it sent before. Once every input
//! asked has answered (or was retired), the snapshot is every current source — gathered, or from
//! its copy — stamped with the current sequence. The sources sent again are not fanned out, not
//! counted as updates, and leave the fingerprints as they were.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use periscope_plugin_api::{Batch, BatchBuilder};
use periscope_scraper::SourceUpdate;
use periscope_scraper::objects::PipelinePublisher;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, error};

use crate::telemetry::Telemetry;

mod fingerprint;
mod packed;

use packed::{Packed, Packer};

/// A batch on the fan-out channel, with its sequence number.
pub type Stamped = (u64, Arc<Batch>);

/// How long a resync waits for the inputs asked to send their sources again. An input that does
/// not answer has stopped (its replacement's handover takes at most 30 s, then it is retired) or
/// ended abnormally (a panic, which fails readiness); past this, the snapshot goes without its
/// sources, logged, rather than never.
const RESEND_PATIENCE: Duration = Duration::from_secs(60);

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
    /// An input's update, of a source the collector keeps a copy of.
    Update(InputId, SourceUpdate),
    /// An input's update, of a source the input sends again when asked (the collector keeps no
    /// copy of it).
    Resendable(InputId, SourceUpdate),
    /// A source an input sent again for a resync: gathered for the snapshot, nothing else.
    Resent(InputId, SourceUpdate),
    /// The input sent every source again for resync round `u64`.
    ResendDone(InputId, u64),
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

/// What the collector keeps of a source.
struct Kept {
    /// The input that last replaced it.
    input: InputId,
    /// The fingerprint of its last update.
    fingerprint: u64,
    /// Its last update, packed, when `whole`; otherwise only its `Remove` (its input sends the
    /// update again when asked).
    copy: Packed,
    whole: bool,
}

/// A resync being gathered: which inputs have still to send their sources again, and what was
/// sent again or live since it was asked.
struct Gather {
    round: u64,
    asked_at: Instant,
    waiting: HashSet<InputId>,
    replies: Vec<mpsc::UnboundedSender<Snapshot>>,
    /// The latest update of each source kept without a copy, by source id.
    sources: HashMap<String, SourceUpdate>,
}

/// The collector task's state.
pub struct Collector {
    /// Every current source, by id.
    state: HashMap<String, Kept>,
    packer: Packer,
    pending: BatchBuilder,
    seq: u64,
    fanout: broadcast::Sender<Stamped>,
    /// Where resends are asked of the inputs.
    inputs: Arc<PipelinePublisher>,
    /// The last resync round asked.
    round: u64,
    gather: Option<Gather>,
    flush_interval: Duration,
    telemetry: Telemetry,
}

impl Collector {
    /// A collector whose fan-out channel holds `capacity` batches, asking `inputs` to send
    /// their sources again for resyncs.
    pub fn new(
        flush_interval: Duration,
        capacity: usize,
        telemetry: Telemetry,
        inputs: Arc<PipelinePublisher>,
    ) -> Self {
        let (fanout, _) = broadcast::channel(capacity.max(1));
        Collector {
            state: HashMap::new(),
            packer: Packer::default(),
            pending: BatchBuilder::new(),
            seq: 0,
            fanout,
            inputs,
            round: 0,
            gather: None,
            flush_interval,
            telemetry,
        }
    }

    /// The handle that subscribes exporters to the fan-out.
    pub fn fanout(&self) -> Fanout {
        Fanout(self.fanout.clone())
    }

    /// Runs until every intake sender is gone, then flushes what is pending and returns. A
    /// resync still being gathered then is dropped: the inputs that were to answer it stopped.
    pub async fn run(
        mut self,
        mut updates: mpsc::Receiver<Intake>,
        mut resyncs: mpsc::UnboundedReceiver<ResyncRequest>,
    ) {
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Resync requests first: they are rare, and one that arrives while a resync is being
            // gathered joins it instead of waiting behind the answers. Then the flush tick, which
            // a steady stream of updates must not starve.
            tokio::select! {
                biased;
                Some(request) = resyncs.recv() => self.resync(request.reply),
                _ = tick.tick() => {
                    self.flush();
                    self.give_up_waiting();
                }
                intake = updates.recv() => match intake {
                    Some(Intake::Update(input, update)) => self.apply(input, update, false),
                    Some(Intake::Resendable(input, update)) => self.apply(input, update, true),
                    Some(Intake::Resent(input, update)) => self.resent(input, update),
                    Some(Intake::ResendDone(input, round)) => self.answered(input, round),
                    Some(Intake::Retire(input)) => self.retire(input),
                    None => break,
                },
            }
        }
        self.flush();
    }

    /// Takes in one source's update from `input`, skipping it if it changes nothing; `resends`
    /// says whether the input can send it again (then no copy is kept).
    fn apply(&mut self, input: InputId, update: SourceUpdate, resends: bool) {
        let id = update.source_id().to_owned();
        let fingerprint = fingerprint::of(update.batch());
        let state_bytes = &self.telemetry.source_state_bytes;
        let changed = if update.is_remove() {
            let removed = self.state.remove(&id);
            if let Some(old) = &removed {
                state_bytes.sub(old.copy.len() as i64);
            }
            removed.is_some()
        } else {
            match self.state.get_mut(&id) {
                Some(kept) if kept.fingerprint == fingerprint => {
                    kept.input = input;
                    if kept.whole == resends {
                        // Kept the other way now (a reload changed what its input can resend).
                        let copy = self.packer.pack(&update, !resends);
                        state_bytes.add(copy.len() as i64 - kept.copy.len() as i64);
                        kept.copy = copy;
                        kept.whole = !resends;
                    }
                    false
                }
                _ => {
                    let copy = self.packer.pack(&update, !resends);
                    state_bytes.add(copy.len() as i64);
                    let kept = Kept {
                        input,
                        fingerprint,
                        copy,
                        whole: !resends,
                    };
                    if let Some(old) = self.state.insert(id, kept) {
                        state_bytes.sub(old.copy.len() as i64);
                    }
                    true
                }
            }
        };
        if changed {
            self.pending.append(update.batch());
            self.telemetry.sources.set(self.state.len() as i64);
        } else {
            self.telemetry.unchanged_updates.inc();
        }
        if let Some(gather) = &mut self.gather {
            // The latest of a source kept without a copy; one with a copy is read from it.
            let id = update.source_id();
            if resends && !update.is_remove() {
                gather.sources.insert(id.to_owned(), update);
            } else {
                gather.sources.remove(id);
            }
        }
        if changed {
            self.flush_if_full();
        }
    }

    /// Removes every source `input` last replaced; a resync no longer waits for it.
    fn retire(&mut self, input: InputId) {
        let held: Vec<SourceUpdate> = self
            .state
            .iter()
            .filter(|(_, kept)| kept.input == input)
            .filter_map(|(id, kept)| unpacked(id, &kept.copy))
            .filter_map(|batch| {
                batch
                    .updates()
                    .next()
                    .map(|u| SourceUpdate::remove(u.source()))
            })
            .collect();
        for remove in held {
            self.apply(input, remove, false);
        }
        if let Some(gather) = &mut self.gather {
            gather.waiting.remove(&input);
        }
        self.complete_if_answered();
    }

    /// Asks for a snapshot to `reply`: it joins the resync being gathered, if any (what that one
    /// sends is the state when it is sent, later than this request), or starts one, asking every
    /// input that holds sources without a copy to send them again.
    fn resync(&mut self, reply: mpsc::UnboundedSender<Snapshot>) {
        if let Some(gather) = &mut self.gather {
            gather.replies.push(reply);
            return;
        }
        self.round += 1;
        let waiting: HashSet<InputId> = self
            .state
            .values()
            .filter(|kept| !kept.whole)
            .map(|kept| kept.input)
            .collect();
        debug!(round = self.round, inputs = waiting.len(), "resync asked");
        if !waiting.is_empty() {
            self.inputs.resend(self.round);
        }
        self.gather = Some(Gather {
            round: self.round,
            asked_at: Instant::now(),
            waiting,
            replies: vec![reply],
            sources: HashMap::new(),
        });
        self.complete_if_answered();
    }

    /// Gathers a source `input` sent again, if it is still the input that last replaced it (an
    /// update of the source from another input since is newer).
    fn resent(&mut self, input: InputId, update: SourceUpdate) {
        let Some(gather) = &mut self.gather else {
            return;
        };
        let id = update.source_id();
        if self
            .state
            .get(id)
            .is_some_and(|kept| kept.input == input && !kept.whole)
        {
            gather.sources.insert(id.to_owned(), update);
        }
    }

    /// Records that `input` sent every source again for `round`.
    fn answered(&mut self, input: InputId, round: u64) {
        if let Some(gather) = &mut self.gather
            && gather.round == round
        {
            gather.waiting.remove(&input);
        }
        self.complete_if_answered();
    }

    /// Stops waiting for the inputs that have not answered the resync within
    /// [`RESEND_PATIENCE`]: their sources are left out of the snapshot.
    fn give_up_waiting(&mut self) {
        if let Some(gather) = &mut self.gather
            && !gather.waiting.is_empty()
            && gather.asked_at.elapsed() >= RESEND_PATIENCE
        {
            error!(
                inputs = ?gather.waiting,
                "inputs did not send their sources again for a resync within {}s; the snapshot goes without them",
                RESEND_PATIENCE.as_secs()
            );
            gather.waiting.clear();
            self.complete_if_answered();
        }
    }

    /// Sends the snapshot of the resync being gathered once no input is awaited: everything
    /// pending is fanned out first, so that the snapshot's sequence covers every update in it.
    fn complete_if_answered(&mut self) {
        let Some(gather) = self.gather.take_if(|gather| gather.waiting.is_empty()) else {
            return;
        };
        self.flush();
        let batches = self.snapshot(gather.sources);
        for reply in gather.replies {
            // The requester may be gone (its exporter stopped); nothing to do then.
            let _ = reply.send(Snapshot {
                seq: self.seq,
                batches: batches.clone(),
            });
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

    /// Every current source as a `Replace`, from its copy or from `gathered`, cut into batches
    /// of bounded size.
    fn snapshot(&self, mut gathered: HashMap<String, SourceUpdate>) -> Vec<Arc<Batch>> {
        let mut batches = Vec::new();
        let mut builder = BatchBuilder::new();
        let mut missing = 0usize;
        for (id, kept) in &self.state {
            if kept.whole {
                let Some(batch) = unpacked(id, &kept.copy) else {
                    continue;
                };
                builder.append(&batch);
            } else if let Some(update) = gathered.remove(id) {
                builder.append(update.batch());
            } else {
                missing += 1;
                continue;
            }
            if builder.sample_count() >= MAX_BATCH_SAMPLES || builder.byte_size() >= MAX_BATCH_BYTES
            {
                batches.push(Arc::new(std::mem::take(&mut builder).build()));
            }
        }
        if builder.update_count() > 0 {
            batches.push(Arc::new(builder.build()));
        }
        if missing > 0 {
            error!(
                missing,
                "sources were not sent again for a resync; the snapshot leaves them out"
            );
        }
        batches
    }
}

/// The packed copy of source `id` again; one that does not read back is a bug, logged, and the
/// source is left out of what needs it.
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
    use periscope_scraper::objects::{Change, ObjectPipeline, Secrets, SharedPipeline};

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

    /// A collector running on a task of its own, with what a test talks to it through.
    struct Running {
        /// What it fans out.
        out: broadcast::Receiver<Stamped>,
        /// Its intake; dropping it stops the collector.
        intake: mpsc::Sender<Intake>,
        /// Where resyncs are asked for.
        resync: mpsc::UnboundedSender<ResyncRequest>,
        /// The inputs' view of its pipeline (resend rounds show here).
        inputs: SharedPipeline,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(flush_interval: Duration, telemetry: Telemetry) -> Running {
        let pipeline = ObjectPipeline::compile(&[], Secrets::Refused).expect("compiles");
        let publisher = Arc::new(PipelinePublisher::new(Arc::new(pipeline)));
        let inputs = publisher.subscribe();
        let collector = Collector::new(flush_interval, 16, telemetry, publisher);
        let out = collector.fanout().subscribe();
        let (intake, rx) = mpsc::channel(64);
        let (resync, resync_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(collector.run(rx, resync_rx));
        Running {
            out,
            intake,
            resync,
            inputs,
            task,
        }
    }

    /// Every `Replace` of the snapshot: source and first value, by source.
    fn contents(snapshot: &Snapshot) -> Vec<(String, f64)> {
        let mut all: Vec<(String, f64)> = snapshot
            .batches
            .iter()
            .flat_map(|batch| {
                batch
                    .updates()
                    .map(|update| match update {
                        Update::Replace { source, samples } => (
                            source.id.to_owned(),
                            samples.iter().next().map_or(f64::NAN, |s| s.value()),
                        ),
                        Update::Remove { source } => panic!("a snapshot removes {}", source.id),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
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
        let Running {
            mut out,
            intake: tx,
            resync: _resync,
            task,
            ..
        } = start(Duration::from_secs(60), telemetry.clone());
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
            Packer::default().pack(&a, true).len() as i64,
            "only a's last batch is kept: its first was replaced, b's added and taken away"
        );
    }

    #[tokio::test]
    async fn snapshot_holds_every_current_source_and_the_last_batch_it_covers() {
        let Running {
            mut out,
            intake: tx,
            resync: resync_tx,
            task,
            ..
        } = start(Duration::from_millis(10), Telemetry::new());
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
        let Running {
            mut out,
            intake: tx,
            resync: _resync,
            task,
            ..
        } = start(Duration::from_secs(60), Telemetry::new());
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

    #[tokio::test]
    async fn a_resync_asks_for_the_resendable_sources_and_takes_the_others_from_their_copies() {
        let telemetry = Telemetry::new();
        let Running {
            mut out,
            intake: tx,
            resync: resync_tx,
            inputs: mut watch,
            task,
        } = start(Duration::from_millis(10), telemetry.clone());
        for intake in [
            Intake::Resendable(1, replace("a", 1.0)),
            Intake::Resendable(1, replace("b", 2.0)),
            Intake::Update(2, replace("c", 3.0)),
        ] {
            tx.send(intake).await.unwrap();
        }
        let mut last_seq = 0;
        let mut seen = 0;
        while seen < 3 {
            let (seq, batch) = out.recv().await.unwrap();
            last_seq = seq;
            seen += batch.update_count();
        }
        let a = replace("a", 1.0);
        let kept = Packer::default().pack(&a, false).len() * 2
            + Packer::default().pack(&replace("c", 3.0), true).len();
        assert_eq!(telemetry.source_state_bytes.get(), kept as i64);
        let (reply, mut replies) = mpsc::unbounded_channel();
        resync_tx.send(ResyncRequest { reply }).unwrap();
        assert!(matches!(watch.next().await, Change::Resend(1)));
        // A second request while the first is gathered is answered with it.
        let (second, mut second_replies) = mpsc::unbounded_channel();
        resync_tx.send(ResyncRequest { reply: second }).unwrap();
        for intake in [
            Intake::Resent(1, replace("a", 1.0)),
            Intake::Resent(1, replace("b", 2.0)),
            // Input 2 keeps a copy: what it might send again is not asked for.
            Intake::Resent(2, replace("c", 99.0)),
            Intake::ResendDone(1, 1),
        ] {
            tx.send(intake).await.unwrap();
        }
        let snapshot = replies.recv().await.unwrap();
        assert_eq!(snapshot.seq, last_seq);
        let expected = [("a", 1.0), ("b", 2.0), ("c", 3.0)].map(|(id, v)| (id.to_owned(), v));
        assert_eq!(contents(&snapshot), expected);
        assert_eq!(contents(&second_replies.recv().await.unwrap()), expected);
        drop(tx);
        task.await.unwrap();
        assert!(
            out.try_recv().is_err(),
            "what was sent again is not fanned out"
        );
        assert_eq!(telemetry.unchanged_updates.get(), 0, "nor counted");
    }

    #[tokio::test]
    async fn a_live_update_after_a_resend_wins_and_a_source_removed_meanwhile_is_left_out() {
        let telemetry = Telemetry::new();
        let Running {
            mut out,
            intake: tx,
            resync: resync_tx,
            inputs: mut watch,
            task,
        } = start(Duration::from_secs(60), telemetry.clone());
        for intake in [
            Intake::Resendable(1, replace("a", 1.0)),
            Intake::Resendable(1, replace("b", 1.0)),
            Intake::Resendable(2, replace("c", 1.0)),
        ] {
            tx.send(intake).await.unwrap();
        }
        // Asked once the three are taken in, so that both inputs are asked.
        while telemetry.sources.get() < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (reply, mut replies) = mpsc::unbounded_channel();
        resync_tx.send(ResyncRequest { reply }).unwrap();
        assert!(matches!(watch.next().await, Change::Resend(1)));
        for intake in [
            Intake::Resent(1, replace("a", 1.0)),
            Intake::Resent(1, replace("b", 1.0)),
            Intake::Resendable(1, replace("a", 2.0)),
            Intake::Resendable(
                1,
                SourceUpdate::remove(Source::new(SourceKind::Object, "b")),
            ),
            Intake::ResendDone(1, 1),
            // A round that is not the one asked does not count.
            Intake::ResendDone(2, 7),
        ] {
            tx.send(intake).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(replies.try_recv().is_err(), "input 2 has not answered");
        // Input 2 is retired instead: its source goes, and nothing is awaited any more.
        tx.send(Intake::Retire(2)).await.unwrap();
        let snapshot = replies.recv().await.unwrap();
        assert_eq!(contents(&snapshot), [("a".to_owned(), 2.0)]);
        let mut fanned_out = Vec::new();
        let mut last_seq = 0;
        while let Ok((seq, batch)) = out.try_recv() {
            last_seq = seq;
            fanned_out.extend(ids(&batch));
        }
        assert_eq!(fanned_out, ["+a", "+b", "+c", "+a", "-b", "-c"]);
        assert_eq!(
            snapshot.seq, last_seq,
            "the snapshot covers every update in it"
        );
        drop(tx);
        task.await.unwrap();
    }

    /// A VMI-like source: eleven series of seven labels, as in the 10k benchmark.
    fn vmi(i: usize) -> SourceUpdate {
        let name = format!("vmi-{i:05}");
        let namespace = format!("ns-{}", i % 10);
        let id = format!("kubevirt.io/v1/VirtualMachineInstance/{namespace}/{name}");
        let uid = format!("{i:08x}-7c1d-4a5e-9f3b-0242ac120002");
        let source = Source {
            kind: SourceKind::Object,
            id: &id,
            api_version: "kubevirt.io/v1",
            object_kind: "VirtualMachineInstance",
            namespace: &namespace,
            name: &name,
            uid: &uid,
        };
        SourceUpdate::replace(source, |w| {
            for metric in 0..11 {
                let f = w.family(Family {
                    name: &format!("kubevirt_vmi_metric_{metric}"),
                    help: "A figure of the VMI.",
                    unit: "",
                    kind: FamilyKind::Gauge,
                });
                w.sample(f, Suffix::None, (i * metric) as f64, 0)
                    .label("namespace", &namespace)
                    .label("name", &name)
                    .label("node", &format!("node-{}", i % 50))
                    .label("phase", "Running")
                    .label("os", "fedora")
                    .label("flavor", "small")
                    .label("interface", &format!("eth{metric}"));
            }
        })
    }

    #[tokio::test]
    async fn sources_an_input_sends_again_cost_a_fraction_of_a_copy() {
        const SOURCES: usize = 1_000;
        let mut kept = Vec::new();
        for resends in [false, true] {
            let telemetry = Telemetry::new();
            let Running {
                intake: tx,
                resync: _resync,
                task,
                ..
            } = start(Duration::from_secs(60), telemetry.clone());
            for i in 0..SOURCES {
                let intake = if resends {
                    Intake::Resendable(1, vmi(i))
                } else {
                    Intake::Update(1, vmi(i))
                };
                tx.send(intake).await.unwrap();
            }
            drop(tx);
            task.await.unwrap();
            kept.push(telemetry.source_state_bytes.get() as usize / SOURCES);
        }
        let size = vmi(0).batch().byte_size();
        eprintln!(
            "bytes kept per source: {} as a copy, {} sent again by its input ({size} as a batch)",
            kept[0], kept[1]
        );
        assert!(kept[1] * 4 < kept[0], "{kept:?}");
    }
}
