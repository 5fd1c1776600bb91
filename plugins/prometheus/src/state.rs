//! The exporter's state: every source's rendered [`Block`] and the table of families, held in
//! persistent (structurally shared) collections.
//!
//! Both exporters hold one: the page renders it, and remote write keeps it to know which series
//! of a source to mark stale when the source shrinks or goes. Cloning a [`State`] is O(1), which
//! gives both guarantees they need:
//! - *transactions*: remote write applies a batch to a clone and keeps it only once the receiver
//!   answered for every request, so a retried batch never applies twice;
//! - *snapshots*: a scrape takes the current `Arc<State>` under a lock held only to clone that one
//!   pointer ([`Published`]); it never sees half a batch and never blocks ingestion while it renders.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use periscope_plugin_api::batch::Samples;
use periscope_plugin_api::{Batch, Family, FamilyKind, Sample as BatchSample, Update, lz4};

use crate::block::{Block, LineOptions, Segment, group_of, series_of, write_line};
use crate::gzip_pages::GzipPages;
use crate::names;
use crate::remote_write::{Label, Sample, TimeSeries};
use crate::stats::StatsDelta;

/// The special NaN Prometheus reads as "this series ended" (a stale marker).
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A metric family as exposed: its final (prefixed, sanitized) name and what the page needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyInfo {
    /// The exposed family name, without sample suffix.
    pub base: Arc<str>,
    /// Help text, unescaped.
    pub help: Arc<str>,
    /// Unit, or empty.
    pub unit: Arc<str>,
    /// Type.
    pub kind: FamilyKind,
    /// Live series over all sources; a family without series is left off the page.
    pub series: u64,
    /// Live samples that break a rule of the OpenMetrics type (see [`Segment::om_violations`]).
    pub om_violations: u64,
}

/// The heap bytes of the blocks' contents, by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Sample lines, compressed.
    pub text: usize,
    /// Segment tables.
    pub segments: usize,
}

/// Every source's block and the family table.
#[derive(Debug, Clone, Default)]
pub struct State {
    sources: imbl::OrdMap<Arc<str>, Arc<Block>>,
    families: imbl::Vector<FamilyInfo>,
    family_index: imbl::HashMap<Arc<str>, u32>,
    series: u64,
}

/// How samples become series: what the config says about names, labels and limits.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Put in front of every family name.
    pub metric_prefix: String,
    /// Label limits and constant labels.
    pub line: LineOptions,
    /// Series kept per family over all sources.
    pub max_series_per_family: Option<u64>,
}

/// The item of a batch a pushed series stands for, so a refused request can name what it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// Sample `sample` of the `Replace` at position `update` in the batch.
    Sample {
        /// The update's position in the batch.
        update: usize,
        /// The sample's position in the update.
        sample: usize,
    },
    /// A stale marker of the `Remove` at position `update`.
    Removal {
        /// The update's position in the batch.
        update: usize,
    },
    /// A stale marker of a series that a `Replace` no longer has: no item of the batch.
    Vanished,
}

/// A series to push, with the batch item it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    /// The series with its one sample.
    pub series: TimeSeries,
    /// What it stands for.
    pub item: Item,
}

/// One batch's work in progress: a family cache, the counts, and (with remote write) the series
/// to push. An `Ingest` serves one batch: its cache is indexed by the batch's family positions.
pub struct Ingest<'o> {
    options: &'o Options,
    /// Families by their position in the batch ([`BatchSample::family_index`]).
    cache: Vec<Option<FamilyRef>>,
    delta: StatsDelta,
    push: Option<Vec<Pushed>>,
    now_ms: i64,
    compressor: lz4::Compressor,
}

#[derive(Clone)]
struct FamilyRef {
    id: u32,
    base: Arc<str>,
    kind: FamilyKind,
}

impl<'o> Ingest<'o> {
    /// Starts an export; `push` collects the series to push (stale markers stamped `now_ms`).
    pub fn new(options: &'o Options, push: bool, now_ms: i64) -> Self {
        Ingest {
            options,
            cache: Vec::new(),
            delta: StatsDelta::default(),
            push: push.then(Vec::new),
            now_ms,
            compressor: lz4::Compressor::default(),
        }
    }

    /// The counts and the series to push.
    pub fn finish(self) -> (StatsDelta, Vec<Pushed>) {
        (self.delta, self.push.unwrap_or_default())
    }

    fn family(&mut self, state: &mut State, sample: &BatchSample<'_>) -> FamilyRef {
        let index = sample.family_index();
        if let Some(Some(found)) = self.cache.get(index) {
            return found.clone();
        }
        let family = sample.family();
        let full = format!("{}{}", self.options.metric_prefix, family.name);
        let base = names::sanitize_metric_name(&full);
        if matches!(base, Cow::Owned(_)) {
            self.delta.invalid_metric_names += 1;
        }
        let found = state.register(&base, family);
        if self.cache.len() <= index {
            self.cache.resize(index + 1, None);
        }
        self.cache[index] = Some(found.clone());
        found
    }
}

/// One rendered line on its way into a block.
struct Line {
    /// The sample's position in its update.
    sample: usize,
    family: u32,
    group: u8,
    range: std::ops::Range<usize>,
    om_violation: bool,
    value: f64,
    timestamp_ms: i64,
}

impl State {
    /// Applies every update of `batch`, in order; `ingest` must be new for this batch.
    pub fn apply(&mut self, batch: &Batch, ingest: &mut Ingest<'_>) {
        for (position, update) in batch.updates().enumerate() {
            match update {
                Update::Replace { source, samples } => {
                    self.replace(position, source.id, samples, ingest);
                }
                Update::Remove { source } => self.remove(position, source.id, ingest),
            }
        }
    }

    /// The table of families, by id.
    pub fn families(&self) -> &imbl::Vector<FamilyInfo> {
        &self.families
    }

    /// Every source's block, in source id order.
    pub fn blocks(&self) -> impl Iterator<Item = &Arc<Block>> {
        self.sources.values()
    }

    /// Every source's id and block, in source id order.
    pub fn sources(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Block>)> {
        self.sources.iter()
    }

    /// The block of source `id`.
    pub fn block(&self, id: &str) -> Option<&Arc<Block>> {
        self.sources.get(id)
    }

    /// How many sources are held.
    pub fn source_count(&self) -> u64 {
        self.sources.len() as u64
    }

    /// How many series are held.
    pub fn series_count(&self) -> u64 {
        self.series
    }

    /// The heap bytes of the blocks' contents (see `benches/page.rs`).
    pub fn memory(&self) -> Memory {
        self.blocks().fold(Memory::default(), |m, block| Memory {
            text: m.text + block.packed_len(),
            segments: m.segments + std::mem::size_of_val::<[Segment]>(&block.segments),
        })
    }

    fn register(&mut self, base: &str, family: Family<'_>) -> FamilyRef {
        if let Some(&id) = self.family_index.get(base)
            && let Some(info) = self.families.get_mut(id as usize)
        {
            // The latest definition wins (a config reload may change help or type).
            if *info.help != *family.help || *info.unit != *family.unit || info.kind != family.kind
            {
                info.help = family.help.into();
                info.unit = family.unit.into();
                info.kind = family.kind;
            }
            return FamilyRef {
                id,
                base: info.base.clone(),
                kind: info.kind,
            };
        }
        let id = u32::try_from(self.families.len()).unwrap_or(u32::MAX);
        let base: Arc<str> = base.into();
        self.families.push_back(FamilyInfo {
            base: base.clone(),
            help: family.help.into(),
            unit: family.unit.into(),
            kind: family.kind,
            series: 0,
            om_violations: 0,
        });
        self.family_index.insert(base.clone(), id);
        FamilyRef {
            id,
            base,
            kind: family.kind,
        }
    }

    fn live_series(&self, family: u32) -> u64 {
        self.families.get(family as usize).map_or(0, |f| f.series)
    }

    /// Adds (`sign = 1`) or takes away (`-1`) the counts of a block.
    fn count(&mut self, block: &Block, add: bool) {
        for segment in block.segments.iter() {
            if let Some(info) = self.families.get_mut(segment.family as usize) {
                if add {
                    info.series += u64::from(segment.series);
                    info.om_violations += u64::from(segment.om_violations);
                } else {
                    info.series = info.series.saturating_sub(u64::from(segment.series));
                    info.om_violations = info
                        .om_violations
                        .saturating_sub(u64::from(segment.om_violations));
                }
            }
        }
        let series = block.series_count();
        self.series = if add {
            self.series + series
        } else {
            self.series.saturating_sub(series)
        };
    }

    fn replace(&mut self, update: usize, id: &str, samples: Samples<'_>, ingest: &mut Ingest<'_>) {
        let old = self.sources.get(id).cloned();
        if let Some(old) = &old {
            self.count(old, false);
        }
        let mut text = Vec::new();
        let mut lines: Vec<Line> = Vec::with_capacity(samples.len());
        // Series admitted so far in this block, per family.
        let mut admitted: Vec<(u32, u64)> = Vec::new();
        for (position, sample) in samples.iter().enumerate() {
            let family = ingest.family(self, &sample);
            let slot = match admitted.iter().position(|(f, _)| *f == family.id) {
                Some(slot) => slot,
                None => {
                    admitted.push((family.id, 0));
                    admitted.len() - 1
                }
            };
            if let Some(max) = ingest.options.max_series_per_family
                && self.live_series(family.id) + admitted[slot].1 >= max
            {
                ingest.delta.series_over_limit += 1;
                continue;
            }
            admitted[slot].1 += 1;
            let start = text.len();
            let om_violation = write_line(
                &mut text,
                &family.base,
                family.kind,
                &sample,
                &ingest.options.line,
                &mut ingest.delta,
            );
            lines.push(Line {
                sample: position,
                family: family.id,
                group: group_of(family.kind, sample.suffix()),
                range: start..text.len(),
                om_violation,
                value: sample.value(),
                timestamp_ms: sample.timestamp_ms(),
            });
        }
        if !lines.is_sorted_by_key(|l| (l.family, l.group)) {
            lines.sort_by_key(|l| (l.family, l.group));
            let mut sorted = Vec::with_capacity(text.len());
            for line in &mut lines {
                let start = sorted.len();
                sorted.extend_from_slice(&text[line.range.clone()]);
                line.range = start..sorted.len();
            }
            text = sorted;
        }
        // A block's text is far below 4 GiB (it is one source's lines); should one not be, its
        // segments end at 4 GiB rather than wrap.
        let offset = |at: usize| u32::try_from(at).unwrap_or(u32::MAX);
        let mut segments: Vec<Segment> = Vec::new();
        for line in &lines {
            match segments.last_mut() {
                Some(s) if s.family == line.family && s.group == line.group => {
                    s.end = offset(line.range.end);
                    s.series = s.series.saturating_add(1);
                    s.om_violations = s.om_violations.saturating_add(u32::from(line.om_violation));
                }
                _ => segments.push(Segment {
                    family: line.family,
                    start: offset(line.range.start),
                    end: offset(line.range.end),
                    series: 1,
                    om_violations: u32::from(line.om_violation),
                    group: line.group,
                }),
            }
        }
        let block = Arc::new(Block::new(&text, segments, &mut ingest.compressor));
        if let Some(push) = &mut ingest.push {
            for line in &lines {
                let rendered = &text[line.range.clone()];
                let key = rendered
                    .iter()
                    .rposition(|b| *b == b' ')
                    .map_or(rendered, |end| &rendered[..end]);
                if let Some(series) = time_series(key, line.value, line.timestamp_ms) {
                    push.push(Pushed {
                        series,
                        item: Item::Sample {
                            update,
                            sample: line.sample,
                        },
                    });
                }
            }
            if let Some(old) = &old {
                let current: std::collections::HashSet<&[u8]> = series_of(&text).collect();
                let old = old.text();
                let gone = series_of(&old).filter(|s| !current.contains(s));
                push.extend(gone.filter_map(|s| stale(s, ingest.now_ms, Item::Vanished)));
            }
        }
        self.count(&block, true);
        self.sources.insert(Arc::from(id), block);
    }

    fn remove(&mut self, update: usize, id: &str, ingest: &mut Ingest<'_>) {
        let Some(old) = self.sources.remove(id) else {
            return;
        };
        self.count(&old, false);
        if let Some(push) = &mut ingest.push {
            let item = Item::Removal { update };
            let old = old.text();
            push.extend(series_of(&old).filter_map(|s| stale(s, ingest.now_ms, item)));
        }
    }
}

/// The remote-write series of a rendered series key with one sample.
fn time_series(key: &[u8], value: f64, timestamp: i64) -> Option<TimeSeries> {
    let (name, pairs) = names::parse_series(std::str::from_utf8(key).ok()?)?;
    let mut labels: Vec<Label> = std::iter::once(("__name__".to_owned(), name))
        .chain(pairs)
        .map(|(name, value)| Label { name, value })
        .collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    Some(TimeSeries {
        labels,
        samples: vec![Sample { value, timestamp }],
    })
}

fn stale(key: &[u8], now_ms: i64, item: Item) -> Option<Pushed> {
    let series = time_series(key, f64::from_bits(STALE_NAN), now_ms)?;
    Some(Pushed { series, item })
}

/// The state scrapes read: replaced whole after every successful export.
#[derive(Debug, Default)]
pub struct Published {
    current: Mutex<Arc<State>>,
    gzip: GzipPages,
}

impl Published {
    /// The current state (the lock is held only to clone the pointer).
    pub fn get(&self) -> Arc<State> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The gzipped series of the current state (forgotten at each [`Published::set`]).
    pub fn gzip(&self) -> &GzipPages {
        &self.gzip
    }

    /// Makes `state` the one scrapes see.
    pub fn set(&self, state: Arc<State>) {
        let old = std::mem::replace(
            &mut *self.current.lock().unwrap_or_else(PoisonError::into_inner),
            state,
        );
        self.gzip.forget();
        // The previous state may be the last reference to many blocks: free them unlocked.
        drop(old);
    }
}
