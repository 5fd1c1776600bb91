//! The batch: a set of updates, each keyed by its source, laid out as an arena.
//!
//! A [`Batch`] crosses the plugin boundary by reference. All of its strings live in one buffer and
//! every record points into it by offset, so building a batch of 100k samples costs a handful of
//! allocations instead of one per label. A string written again soon after (a label name, an
//! object's namespace and name on each of its samples) usually points at its first copy. Plugin
//! authors never touch the raw records: they read a batch through borrowed views ([`Update`],
//! [`Source`], [`Sample`], [`Family`]). The host and tests build batches with [`BatchBuilder`].
//!
//! Semantics: [`Update::Replace`] carries the *complete* current set of samples of its source, so an
//! exporter replaces every series of that source at once; [`Update::Remove`] says the source is gone.

use std::collections::HashMap;
use std::fmt;

use abi_stable::StableAbi;
use abi_stable::std_types::{RString, RVec};

/// A span of the batch's string buffer.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

/// What a source is.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A Kubernetes object (a custom resource or a core kind).
    Object = 0,
    /// An HTTP endpoint target.
    Endpoint = 1,
    /// A value computed over many objects (a count or a sum by labels).
    Aggregate = 2,
}

impl SourceKind {
    /// The kind's name in lower case, as exporters write it out.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Object => "object",
            SourceKind::Endpoint => "endpoint",
            SourceKind::Aggregate => "aggregate",
        }
    }
}

/// The type of a metric family, following the OpenMetrics types.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FamilyKind {
    /// A value that goes up and down.
    Gauge = 0,
    /// A monotonically increasing value.
    Counter = 1,
    /// Constant `1` with informational labels.
    Info = 2,
    /// A set of boolean states, one sample per state, exactly one of them (usually) `1`.
    StateSet = 3,
    /// Histogram pieces (`_bucket`, `_sum`, `_count`).
    Histogram = 4,
    /// Summary pieces (quantiles, `_sum`, `_count`).
    Summary = 5,
    /// Gauge histogram pieces.
    GaugeHistogram = 6,
    /// A family whose type is not known (for example an untyped scraped line).
    Unknown = 7,
}

impl FamilyKind {
    /// The OpenMetrics name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyKind::Gauge => "gauge",
            FamilyKind::Counter => "counter",
            FamilyKind::Info => "info",
            FamilyKind::StateSet => "stateset",
            FamilyKind::Histogram => "histogram",
            FamilyKind::Summary => "summary",
            FamilyKind::GaugeHistogram => "gaugehistogram",
            FamilyKind::Unknown => "unknown",
        }
    }
}

/// The suffix a sample adds to its family's name (OpenMetrics sample names).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suffix {
    /// The sample's name is the family's name.
    None = 0,
    /// `_total` (counters).
    Total = 1,
    /// `_created` (counters, histograms, summaries).
    Created = 2,
    /// `_bucket` (histograms).
    Bucket = 3,
    /// `_count` (histograms, summaries).
    Count = 4,
    /// `_sum` (histograms, summaries).
    Sum = 5,
    /// `_info` (info families).
    Info = 6,
    /// `_gcount` (gauge histograms).
    GCount = 7,
    /// `_gsum` (gauge histograms).
    GSum = 8,
}

impl Suffix {
    /// The text appended to the family name, including the leading underscore.
    pub fn as_str(self) -> &'static str {
        match self {
            Suffix::None => "",
            Suffix::Total => "_total",
            Suffix::Created => "_created",
            Suffix::Bucket => "_bucket",
            Suffix::Count => "_count",
            Suffix::Sum => "_sum",
            Suffix::Info => "_info",
            Suffix::GCount => "_gcount",
            Suffix::GSum => "_gsum",
        }
    }
}

#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub(crate) struct FamilyRaw {
    pub(crate) name: Span,
    pub(crate) help: Span,
    pub(crate) unit: Span,
    pub(crate) kind: FamilyKind,
}

#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub(crate) struct SourceRaw {
    pub(crate) kind: SourceKind,
    pub(crate) id: Span,
    pub(crate) api_version: Span,
    pub(crate) object_kind: Span,
    pub(crate) namespace: Span,
    pub(crate) name: Span,
    pub(crate) uid: Span,
}

#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpdateKind {
    Replace = 0,
    Remove = 1,
}

#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub(crate) struct UpdateRaw {
    pub(crate) kind: UpdateKind,
    pub(crate) source: SourceRaw,
    pub(crate) first_sample: u32,
    pub(crate) sample_count: u32,
}

#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub(crate) struct SampleRaw {
    pub(crate) family: u32,
    pub(crate) suffix: Suffix,
    pub(crate) first_label: u32,
    pub(crate) label_count: u32,
    pub(crate) value: f64,
    pub(crate) timestamp_ms: i64,
}

#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub(crate) struct LabelRaw {
    pub(crate) name: Span,
    pub(crate) value: Span,
}

/// A set of updates with the table of the metric families they use.
///
/// Build one with [`BatchBuilder`]; read one with [`Batch::updates`]. A batch is immutable once
/// built, which is what lets the host share one batch between every exporter.
#[repr(C)]
#[derive(StableAbi, Clone, Default)]
pub struct Batch {
    pub(crate) text: RString,
    pub(crate) families: RVec<FamilyRaw>,
    pub(crate) updates: RVec<UpdateRaw>,
    pub(crate) samples: RVec<SampleRaw>,
    pub(crate) labels: RVec<LabelRaw>,
}

/// Where a set of samples came from. The same struct describes a source when building a batch and
/// when reading one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source<'a> {
    /// What the source is.
    pub kind: SourceKind,
    /// The key that identifies the source among all others; updates to the same `id` replace each other.
    pub id: &'a str,
    /// `group/version` of a Kubernetes object (`v1` for the core group); empty for other sources.
    pub api_version: &'a str,
    /// The object's kind (`VirtualMachineInstance`), or empty.
    pub object_kind: &'a str,
    /// The object's namespace; empty for cluster-scoped objects and other sources.
    pub namespace: &'a str,
    /// The object's name, or the endpoint's URL, or the aggregate's name.
    pub name: &'a str,
    /// The object's uid, when known.
    pub uid: &'a str,
}

impl<'a> Source<'a> {
    /// A source with only a kind and an id (every other field empty).
    pub fn new(kind: SourceKind, id: &'a str) -> Self {
        Source {
            kind,
            id,
            api_version: "",
            object_kind: "",
            namespace: "",
            name: "",
            uid: "",
        }
    }
}

/// A metric family: the name, help, unit and type shared by its samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Family<'a> {
    /// The family name, without any sample suffix (`kubevirt_vmi_phase_transitions`, not `…_total`).
    pub name: &'a str,
    /// One line of help text.
    pub help: &'a str,
    /// The unit (`seconds`, `bytes`), or empty.
    pub unit: &'a str,
    /// The type.
    pub kind: FamilyKind,
}

/// One update of a batch, read through [`Batch::updates`].
#[derive(Clone, Copy)]
pub enum Update<'a> {
    /// The complete current set of samples of a source.
    Replace {
        /// The source.
        source: Source<'a>,
        /// Every sample of the source.
        samples: Samples<'a>,
    },
    /// The source is gone: drop every series it had.
    Remove {
        /// The source.
        source: Source<'a>,
    },
}

impl<'a> Update<'a> {
    /// The source of the update, whichever kind it is.
    pub fn source(&self) -> Source<'a> {
        match self {
            Update::Replace { source, .. } | Update::Remove { source } => *source,
        }
    }
}

/// The samples of one `Replace` update.
#[derive(Clone, Copy)]
pub struct Samples<'a> {
    batch: &'a Batch,
    raw: &'a [SampleRaw],
}

impl<'a> Samples<'a> {
    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The samples in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Sample<'a>> + 'a {
        let batch = self.batch;
        self.raw.iter().map(move |raw| Sample { batch, raw })
    }
}

/// One sample: a family, labels, a value and a timestamp.
#[derive(Clone, Copy)]
pub struct Sample<'a> {
    batch: &'a Batch,
    raw: &'a SampleRaw,
}

impl<'a> Sample<'a> {
    /// The sample's family.
    pub fn family(&self) -> Family<'a> {
        self.batch.family_at(self.raw.family as usize)
    }

    /// The position of the sample's family in [`Batch::families`]: samples of one family share
    /// it, so an exporter can keep what it derives from a family (a sanitized name, a table
    /// entry) in a `Vec` indexed by it for the length of one batch. Positions are the batch's
    /// own: another batch may number the same family differently.
    pub fn family_index(&self) -> usize {
        self.raw.family as usize
    }

    /// The suffix that, appended to the family name, gives the sample's metric name.
    pub fn suffix(&self) -> Suffix {
        self.raw.suffix
    }

    /// The metric name: the family name followed by the suffix.
    pub fn metric_name(&self) -> String {
        let family = self.family();
        let mut name = String::with_capacity(family.name.len() + 8);
        name.push_str(family.name);
        name.push_str(self.raw.suffix.as_str());
        name
    }

    /// The label pairs, in the order they were added.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'a {
        let batch = self.batch;
        let start = self.raw.first_label as usize;
        let end = start + self.raw.label_count as usize;
        batch.labels[start..end]
            .iter()
            .map(move |l| (batch.str(l.name), batch.str(l.value)))
    }

    /// The value of the label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&'a str> {
        self.labels().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value.
    pub fn value(&self) -> f64 {
        self.raw.value
    }

    /// When the value was observed, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> i64 {
        self.raw.timestamp_ms
    }
}

impl fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("name", &self.metric_name())
            .field("labels", &self.labels().collect::<Vec<_>>())
            .field("value", &self.value())
            .field("timestamp_ms", &self.timestamp_ms())
            .finish()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// The updates in the order they were added.
    pub fn updates(&self) -> impl ExactSizeIterator<Item = Update<'_>> + '_ {
        self.updates.iter().map(move |raw| self.update_view(raw))
    }

    /// The families used by the samples of this batch.
    pub fn families(&self) -> impl ExactSizeIterator<Item = Family<'_>> + '_ {
        (0..self.families.len()).map(move |i| self.family_at(i))
    }

    /// How many updates the batch holds.
    pub fn update_count(&self) -> usize {
        self.updates.len()
    }

    /// How many samples the batch holds, over all its updates.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Whether the batch holds no update at all.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// The approximate size of the batch in memory, in bytes: what queue limits count.
    pub fn byte_size(&self) -> usize {
        byte_size(
            self.text.len(),
            self.families.len(),
            self.updates.len(),
            self.samples.len(),
            self.labels.len(),
        )
    }

    /// Whether two batches say the same thing, ignoring sample timestamps: same updates of the same
    /// sources, with the same samples in the same order. The host uses it to skip updates that
    /// change nothing.
    pub fn same_content(&self, other: &Batch) -> bool {
        if self.updates.len() != other.updates.len() || self.samples.len() != other.samples.len() {
            return false;
        }
        self.updates().zip(other.updates()).all(|pair| match pair {
            (Update::Remove { source: a }, Update::Remove { source: b }) => a == b,
            (
                Update::Replace {
                    source: a,
                    samples: sa,
                },
                Update::Replace {
                    source: b,
                    samples: sb,
                },
            ) => {
                a == b
                    && sa.len() == sb.len()
                    && sa.iter().zip(sb.iter()).all(|(x, y)| {
                        x.family() == y.family()
                            && x.suffix() == y.suffix()
                            && x.value().to_bits() == y.value().to_bits()
                            && x.labels().eq(y.labels())
                    })
            }
            _ => false,
        })
    }

    fn str(&self, span: Span) -> &str {
        let start = span.start as usize;
        &self.text[start..start + span.len as usize]
    }

    fn family_at(&self, index: usize) -> Family<'_> {
        let raw = &self.families[index];
        Family {
            name: self.str(raw.name),
            help: self.str(raw.help),
            unit: self.str(raw.unit),
            kind: raw.kind,
        }
    }

    fn source_view(&self, raw: &SourceRaw) -> Source<'_> {
        Source {
            kind: raw.kind,
            id: self.str(raw.id),
            api_version: self.str(raw.api_version),
            object_kind: self.str(raw.object_kind),
            namespace: self.str(raw.namespace),
            name: self.str(raw.name),
            uid: self.str(raw.uid),
        }
    }

    fn update_view<'a>(&'a self, raw: &'a UpdateRaw) -> Update<'a> {
        let source = self.source_view(&raw.source);
        match raw.kind {
            UpdateKind::Remove => Update::Remove { source },
            UpdateKind::Replace => {
                let start = raw.first_sample as usize;
                let end = start + raw.sample_count as usize;
                Update::Replace {
                    source,
                    samples: Samples {
                        batch: self,
                        raw: &self.samples[start..end],
                    },
                }
            }
        }
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for update in self.updates() {
            match update {
                Update::Replace { source, samples } => {
                    list.entry(&("replace", source.id, samples.iter().collect::<Vec<_>>()))
                }
                Update::Remove { source } => list.entry(&("remove", source.id)),
            };
        }
        list.finish()
    }
}

/// Index of a family in the batch being built, returned by [`BatchBuilder::family`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FamilyId(u32);

/// Builds a [`Batch`].
///
/// ```
/// use periscope_plugin_api::batch::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};
///
/// let mut builder = BatchBuilder::new();
/// let phase = builder.family(Family {
///     name: "kubevirt_vmi_phase",
///     help: "Phase of the VMI.",
///     unit: "",
///     kind: FamilyKind::Gauge,
/// });
/// let mut update = builder.replace(Source::new(SourceKind::Object, "default/vm1"));
/// update.sample(phase, Suffix::None, 1.0, 0).label("phase", "Running");
/// let batch = builder.build();
/// assert_eq!(batch.sample_count(), 1);
/// ```
#[derive(Default)]
pub struct BatchBuilder {
    parts: Parts,
    family_ids: HashMap<String, FamilyId>,
    written: Written,
}

/// Where recently written strings are in the buffer, by a hash of their text: direct-mapped, so a
/// lookup is one hash and one comparison, and a collision only costs a copy.
///
/// Every sample of an object repeats the same label names and, most often, the object's
/// namespace and name: written once, a source's batch was a third smaller in the heap profile of
/// `bench/results/2026-11-25-10k.md`, where the host keeps every source's last batch.
struct Written {
    slots: [Span; Written::SLOTS],
}

impl Written {
    const SLOTS: usize = 64;

    /// The slot of `s`: FNV-1a, cheap for the short strings labels are.
    fn slot(s: &str) -> usize {
        (crate::hash::fnv1a_64(s.as_bytes()) >> 32) as usize % Written::SLOTS
    }
}

impl Default for Written {
    fn default() -> Self {
        Written {
            slots: [Span::default(); Written::SLOTS],
        }
    }
}

/// A batch under construction, in std collections (whose growth is cheaper than the ABI types'),
/// handed over to the ABI types without copying by [`BatchBuilder::build`].
#[derive(Default)]
struct Parts {
    text: String,
    families: Vec<FamilyRaw>,
    updates: Vec<UpdateRaw>,
    samples: Vec<SampleRaw>,
    labels: Vec<LabelRaw>,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a family to the batch's table, or returns the id of the family of the same name already
    /// there (the first definition wins).
    pub fn family(&mut self, family: Family<'_>) -> FamilyId {
        if let Some(id) = self.family_ids.get(family.name) {
            return *id;
        }
        let raw = FamilyRaw {
            name: self.push_str(family.name),
            help: self.push_str(family.help),
            unit: self.push_str(family.unit),
            kind: family.kind,
        };
        let id = FamilyId(to_u32(self.parts.families.len()));
        self.parts.families.push(raw);
        self.family_ids.insert(family.name.to_owned(), id);
        id
    }

    /// Starts a `Replace` update of `source`; add its samples through the returned writer.
    pub fn replace(&mut self, source: Source<'_>) -> ReplaceWriter<'_> {
        self.push_update(UpdateKind::Replace, source);
        ReplaceWriter { builder: self }
    }

    /// Adds a `Remove` update of `source`.
    pub fn remove(&mut self, source: Source<'_>) {
        self.push_update(UpdateKind::Remove, source);
    }

    /// Appends every update of `other`, mapping its families onto this batch's table by name.
    pub fn append(&mut self, other: &Batch) {
        let shift = to_u32(self.parts.text.len());
        self.parts.text.push_str(&other.text);
        let family_map: Vec<u32> = other.families().map(|f| self.family(f).0).collect();
        let sample_shift = to_u32(self.parts.samples.len());
        let label_shift = to_u32(self.parts.labels.len());
        let moved = |s: Span| Span {
            start: s.start + shift,
            len: s.len,
        };
        self.parts
            .updates
            .extend(other.updates.iter().map(|u| UpdateRaw {
                kind: u.kind,
                source: SourceRaw {
                    kind: u.source.kind,
                    id: moved(u.source.id),
                    api_version: moved(u.source.api_version),
                    object_kind: moved(u.source.object_kind),
                    namespace: moved(u.source.namespace),
                    name: moved(u.source.name),
                    uid: moved(u.source.uid),
                },
                first_sample: u.first_sample + sample_shift,
                sample_count: u.sample_count,
            }));
        self.parts
            .samples
            .extend(other.samples.iter().map(|s| SampleRaw {
                family: family_map[s.family as usize],
                first_label: s.first_label + label_shift,
                ..*s
            }));
        self.parts
            .labels
            .extend(other.labels.iter().map(|l| LabelRaw {
                name: moved(l.name),
                value: moved(l.value),
            }));
    }

    /// How many samples have been added so far.
    pub fn sample_count(&self) -> usize {
        self.parts.samples.len()
    }

    /// How many updates have been added so far.
    pub fn update_count(&self) -> usize {
        self.parts.updates.len()
    }

    /// The size in bytes of what has been added so far (see [`Batch::byte_size`]).
    pub fn byte_size(&self) -> usize {
        let p = &self.parts;
        byte_size(
            p.text.len(),
            p.families.len(),
            p.updates.len(),
            p.samples.len(),
            p.labels.len(),
        )
    }

    /// Finishes the batch. Its buffers are cut to their length: the host keeps every source's last
    /// batch for as long as the source lives, and the slack left by amortized growth showed in the
    /// heap profile of `bench/results/2026-11-25-10k.md`.
    pub fn build(self) -> Batch {
        let mut p = self.parts;
        p.text.shrink_to_fit();
        p.families.shrink_to_fit();
        p.updates.shrink_to_fit();
        p.samples.shrink_to_fit();
        p.labels.shrink_to_fit();
        Batch {
            text: p.text.into(),
            families: p.families.into(),
            updates: p.updates.into(),
            samples: p.samples.into(),
            labels: p.labels.into(),
        }
    }

    fn push_update(&mut self, kind: UpdateKind, source: Source<'_>) {
        let raw = SourceRaw {
            kind: source.kind,
            id: self.push_str(source.id),
            api_version: self.push_str(source.api_version),
            object_kind: self.push_str(source.object_kind),
            namespace: self.push_str(source.namespace),
            name: self.push_str(source.name),
            uid: self.push_str(source.uid),
        };
        let first_sample = to_u32(self.parts.samples.len());
        self.parts.updates.push(UpdateRaw {
            kind,
            source: raw,
            first_sample,
            sample_count: 0,
        });
    }

    /// Writes `s` to the buffer, or finds it there if it was written recently.
    fn push_str(&mut self, s: &str) -> Span {
        if s.is_empty() {
            return Span::default();
        }
        let slot = Written::slot(s);
        let seen = self.written.slots[slot];
        let start = seen.start as usize;
        if seen.len as usize == s.len() && self.parts.text.get(start..start + s.len()) == Some(s) {
            return seen;
        }
        let span = Span {
            start: to_u32(self.parts.text.len()),
            len: to_u32(s.len()),
        };
        self.parts.text.push_str(s);
        self.written.slots[slot] = span;
        span
    }
}

/// Adds samples to the `Replace` update started by [`BatchBuilder::replace`].
pub struct ReplaceWriter<'b> {
    builder: &'b mut BatchBuilder,
}

impl ReplaceWriter<'_> {
    /// Adds a sample without labels; add them through the returned writer.
    pub fn sample(
        &mut self,
        family: FamilyId,
        suffix: Suffix,
        value: f64,
        timestamp_ms: i64,
    ) -> SampleWriter<'_> {
        let parts = &mut self.builder.parts;
        let first_label = to_u32(parts.labels.len());
        parts.samples.push(SampleRaw {
            family: family.0,
            suffix,
            first_label,
            label_count: 0,
            value,
            timestamp_ms,
        });
        if let Some(update) = parts.updates.last_mut() {
            update.sample_count += 1;
        }
        SampleWriter {
            builder: self.builder,
        }
    }

    /// Adds a family to the batch (see [`BatchBuilder::family`]) while writing samples.
    pub fn family(&mut self, family: Family<'_>) -> FamilyId {
        self.builder.family(family)
    }
}

/// Adds labels to the sample just added by [`ReplaceWriter::sample`].
pub struct SampleWriter<'b> {
    builder: &'b mut BatchBuilder,
}

impl SampleWriter<'_> {
    /// Adds the label `name="value"`.
    pub fn label(&mut self, name: &str, value: &str) -> &mut Self {
        let label = LabelRaw {
            name: self.builder.push_str(name),
            value: self.builder.push_str(value),
        };
        let parts = &mut self.builder.parts;
        parts.labels.push(label);
        if let Some(sample) = parts.samples.last_mut() {
            sample.label_count += 1;
        }
        self
    }

    /// Adds every pair of `labels`.
    pub fn labels<'l>(
        &mut self,
        labels: impl IntoIterator<Item = (&'l str, &'l str)>,
    ) -> &mut Self {
        for (name, value) in labels {
            self.label(name, value);
        }
        self
    }
}

/// The current time in milliseconds since the Unix epoch: the timestamp samples carry.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn byte_size(text: usize, families: usize, updates: usize, samples: usize, labels: usize) -> usize {
    text + families * size_of::<FamilyRaw>()
        + updates * size_of::<UpdateRaw>()
        + samples * size_of::<SampleRaw>()
        + labels * size_of::<LabelRaw>()
}

/// Offsets are 32-bit: a batch holds at most 4 GiB of text and 4G records. The host bounds every
/// batch far below that (per-source sizes are capped and merged batches stop at `max_bytes`), so
/// crossing it is a bug in the host, not bad input.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a batch holds at most 4 GiB of text and 4G records")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(name: &str) -> Family<'_> {
        Family {
            name,
            help: "help",
            unit: "",
            kind: FamilyKind::Gauge,
        }
    }

    fn object(id: &str) -> Source<'_> {
        Source {
            kind: SourceKind::Object,
            id,
            api_version: "kubevirt.io/v1",
            object_kind: "VirtualMachineInstance",
            namespace: "default",
            name: id,
            uid: "uid-1",
        }
    }

    fn one_vm(value: f64, timestamp_ms: i64) -> Batch {
        let mut b = BatchBuilder::new();
        let f = b.family(gauge("vm_memory_bytes"));
        let mut r = b.replace(object("vm1"));
        r.sample(f, Suffix::None, value, timestamp_ms)
            .label("name", "vm1")
            .label("node", "n1");
        b.build()
    }

    #[test]
    fn views_read_back_what_was_built() {
        let batch = one_vm(2.5, 7);
        let updates: Vec<_> = batch.updates().collect();
        assert_eq!(updates.len(), 1);
        let Update::Replace { source, samples } = updates[0] else {
            panic!("expected a replace");
        };
        assert_eq!(source, object("vm1"));
        let sample = samples.iter().next().expect("one sample");
        assert_eq!(sample.metric_name(), "vm_memory_bytes");
        assert_eq!(
            sample.labels().collect::<Vec<_>>(),
            [("name", "vm1"), ("node", "n1")]
        );
        assert_eq!(sample.label("node"), Some("n1"));
        assert_eq!(sample.value(), 2.5);
        assert_eq!(sample.timestamp_ms(), 7);
    }

    #[test]
    fn repeated_strings_are_written_once_and_read_back_everywhere() {
        let mut b = BatchBuilder::new();
        let f = b.family(gauge("vm_info"));
        let mut r = b.replace(object("vm1"));
        for i in 0..100 {
            r.sample(f, Suffix::None, f64::from(i), 0)
                .label("namespace", "default")
                .label("name", "vm1")
                .label("index", &i.to_string());
        }
        let batch = b.build();
        let Some(Update::Replace { source, samples }) = batch.updates().next() else {
            panic!("expected a replace");
        };
        assert_eq!(source, object("vm1"));
        for (i, sample) in samples.iter().enumerate() {
            assert_eq!(
                sample.labels().collect::<Vec<_>>(),
                [
                    ("namespace", "default"),
                    ("name", "vm1"),
                    ("index", i.to_string().as_str())
                ]
            );
        }
        // Once each: the source's fields, the family, "namespace", "name" and every index
        // (the indexes are distinct; a collision with a label may copy one string again).
        let source_and_family =
            "vm1 kubevirt.io/v1 VirtualMachineInstance default uid-1 vm_info help";
        let once = source_and_family.replace(' ', "").len()
            + "namespacename".len()
            + (0..100).map(|i: i32| i.to_string().len()).sum::<usize>();
        assert!(
            batch.text.len() <= once + 100,
            "{} bytes of text, {once} if every string were written once",
            batch.text.len()
        );
    }

    #[test]
    fn families_are_deduplicated_by_name() {
        let mut b = BatchBuilder::new();
        let a = b.family(gauge("x"));
        let again = b.family(gauge("x"));
        let other = b.family(gauge("y"));
        assert_eq!(a, again);
        assert_ne!(a, other);
        assert_eq!(b.build().families().count(), 2);
    }

    #[test]
    fn a_samples_family_index_is_its_familys_position_in_the_batch() {
        let mut first = BatchBuilder::new();
        let y = first.family(gauge("y"));
        first.replace(object("a")).sample(y, Suffix::None, 1.0, 0);
        let mut merged = BatchBuilder::new();
        merged.append(&one_vm(1.0, 0));
        merged.append(&first.build());
        let batch = merged.build();
        let families: Vec<_> = batch.families().collect();
        let mut seen = Vec::new();
        for update in batch.updates() {
            let Update::Replace { samples, .. } = update else {
                panic!("expected a replace");
            };
            for sample in samples.iter() {
                assert_eq!(families[sample.family_index()], sample.family());
                seen.push(sample.family_index());
            }
        }
        assert_eq!(seen, [0, 1]);
    }

    #[test]
    fn append_merges_batches_and_remaps_families() {
        let mut first = BatchBuilder::new();
        let other_family = first.family(gauge("other"));
        first
            .replace(object("vm0"))
            .sample(other_family, Suffix::None, 1.0, 0);
        first.remove(object("gone"));
        let mut merged = BatchBuilder::new();
        merged.append(&first.build());
        merged.append(&one_vm(3.0, 9));
        let batch = merged.build();

        assert_eq!(batch.update_count(), 3);
        assert_eq!(batch.sample_count(), 2);
        let ids: Vec<_> = batch.updates().map(|u| u.source().id).collect();
        assert_eq!(ids, ["vm0", "gone", "vm1"]);
        let Some(Update::Replace { samples, .. }) = batch.updates().nth(2) else {
            panic!("expected a replace");
        };
        let sample = samples.iter().next().expect("one sample");
        assert_eq!(sample.family().name, "vm_memory_bytes");
        assert_eq!(sample.label("name"), Some("vm1"));
        assert_eq!(sample.value(), 3.0);
    }

    #[test]
    fn same_content_ignores_timestamps_but_not_values() {
        assert!(one_vm(1.0, 1).same_content(&one_vm(1.0, 2)));
        assert!(!one_vm(1.0, 1).same_content(&one_vm(2.0, 1)));
        assert!(one_vm(f64::NAN, 1).same_content(&one_vm(f64::NAN, 1)));
    }

    #[test]
    fn byte_size_grows_with_content() {
        let small = one_vm(1.0, 1);
        let mut b = BatchBuilder::new();
        b.append(&small);
        b.append(&small);
        assert!(b.build().byte_size() > small.byte_size());
    }
}
