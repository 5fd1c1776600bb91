//! A source's pre-rendered block: the sample lines of every series of one source, grouped by
//! family, rendered once when the source is replaced and copied verbatim into every page.
//!
//! This is kube-state-metrics' trick: a scrape concatenates blocks instead of formatting numbers
//! and escaping labels again. A sample line is the same text in both formats (no timestamps,
//! same names, same escaping), so one block serves text 0.0.4 and OpenMetrics alike; only the
//! `# HELP`/`# TYPE` headers differ, and the page writes those (see [`crate::render`]).

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use periscope_plugin_api::{FamilyKind, Sample, Suffix, lz4};

use crate::names::{self, push_label_value, push_value};
use crate::stats::StatsDelta;

/// How many groups a family's samples can fall into: the main group and one per suffix.
pub const GROUPS: usize = 10;

/// The suffixes by their `repr(u8)` value, to turn a group back into its suffix.
pub const SUFFIXES: [Suffix; 9] = [
    Suffix::None,
    Suffix::Total,
    Suffix::Created,
    Suffix::Bucket,
    Suffix::Count,
    Suffix::Sum,
    Suffix::Info,
    Suffix::GCount,
    Suffix::GSum,
];

/// The group of a sample within its family: `0` for the samples that make up the family's main
/// exposed family (`_total` of a counter, `_bucket`/`_count`/`_sum` of a histogram, …), otherwise
/// `1 +` the suffix (a counter's `_created`, or a suffix the type does not have). The text format
/// exposes each non-main group as a family of its own.
pub fn group_of(kind: FamilyKind, suffix: Suffix) -> u8 {
    let main = match kind {
        FamilyKind::Gauge | FamilyKind::StateSet | FamilyKind::Unknown => suffix == Suffix::None,
        FamilyKind::Counter => suffix == Suffix::Total,
        FamilyKind::Info => suffix == Suffix::Info,
        FamilyKind::Histogram => matches!(suffix, Suffix::Bucket | Suffix::Count | Suffix::Sum),
        FamilyKind::Summary => matches!(suffix, Suffix::None | Suffix::Count | Suffix::Sum),
        FamilyKind::GaugeHistogram => {
            matches!(suffix, Suffix::Bucket | Suffix::GCount | Suffix::GSum)
        }
    };
    if main { 0 } else { 1 + suffix as u8 }
}

/// The lines of one family group inside a [`Block`]. 24 bytes (40 with `usize` ranges and `u64`
/// counts): every block holds one per family group it has, so 10k sources of five families hold
/// 50k of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The family's id in [`crate::state::State`].
    pub family: u32,
    /// Where the lines start in [`Block::text`].
    pub start: u32,
    /// Where they end.
    pub end: u32,
    /// How many lines (series).
    pub series: u32,
    /// How many lines break a rule of the family's OpenMetrics type (an info whose value is not 1,
    /// a state set sample without the label named after the family or not 0/1); the family is then
    /// exposed as a gauge in OpenMetrics.
    pub om_violations: u32,
    /// See [`group_of`].
    pub group: u8,
}

impl Segment {
    /// Where the lines are in [`Block::text`].
    pub fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Every series of one source, rendered. The lines are kept LZ4-compressed, a fifth of their
/// size (`benches/page.rs`: 27.1 MB of lines for 10k VMIs held as 5.5 MB), and a render
/// decompresses each block once.
#[derive(Debug, Default)]
pub struct Block {
    /// Sample lines (`name{labels} value\n`), segment after segment, as an [`lz4`] block.
    packed: Box<[u8]>,
    /// Sorted by `(family, group)`.
    pub segments: Box<[Segment]>,
    /// Unique to this block within the process: what the gzip pages know a block by
    /// ([`crate::gzip_pages`]), since a block never changes once made.
    serial: u64,
}

/// The serial of the next block made.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

impl Block {
    /// The block of `text` cut into `segments`, compressed with `compressor`.
    pub fn new(text: &[u8], segments: Vec<Segment>, compressor: &mut lz4::Compressor) -> Self {
        Block {
            packed: compressor.compress(text),
            segments: segments.into_boxed_slice(),
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A number no other block of this process has.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Writes the block's lines over `out`. A block this exporter made always decompresses; were
    /// one damaged, it would read as no lines.
    pub fn text_into(&self, out: &mut Vec<u8>) {
        if lz4::decompress_into(&self.packed, out).is_err() {
            out.clear();
        }
    }

    /// The block's lines.
    pub fn text(&self) -> Vec<u8> {
        let mut text = Vec::new();
        self.text_into(&mut text);
        text
    }

    /// The bytes the compressed lines take.
    pub fn packed_len(&self) -> usize {
        self.packed.len()
    }

    /// How many series the block holds.
    pub fn series_count(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.series)).sum()
    }
}

/// The series of rendered lines `text`, without the value (`name{labels}`), one per line.
pub fn series_of(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let end = line.iter().rposition(|b| *b == b' ').unwrap_or(line.len());
            &line[..end]
        })
}

/// What rendering a sample needs besides the sample: limits and constant labels.
#[derive(Debug, Clone, Default)]
pub struct LineOptions {
    /// Label values longer than this are cut.
    pub max_label_value_length: Option<usize>,
    /// Added to every sample that has no label of the same name.
    pub const_labels: Vec<(String, String)>,
}

/// Appends the line of `sample` (`<base><suffix>{labels} value\n`) to `out`, counting what had
/// to be fixed into `delta`. Returns whether the sample breaks a rule of its family's OpenMetrics
/// type (see [`Segment::om_violations`]).
///
/// A label whose (sanitized) name an earlier label of the sample already has is dropped; a
/// constant label is added only when the sample has no label of that name.
pub fn write_line(
    out: &mut Vec<u8>,
    base: &str,
    kind: FamilyKind,
    sample: &Sample<'_>,
    options: &LineOptions,
    delta: &mut StatsDelta,
) -> bool {
    out.extend_from_slice(base.as_bytes());
    out.extend_from_slice(sample.suffix().as_str().as_bytes());
    let mut first = true;
    let mut has_state_label = false;
    for (i, (name, value)) in sample.labels().enumerate() {
        let name = names::sanitize_label_name(name);
        if matches!(name, Cow::Owned(_)) {
            delta.invalid_label_names += 1;
        }
        if sample
            .labels()
            .take(i)
            .any(|(n, _)| names::sanitize_label_name(n) == name)
        {
            delta.duplicate_labels += 1;
            continue;
        }
        let value = match options
            .max_label_value_length
            .and_then(|max| names::truncate(value, max))
        {
            Some(cut) => {
                delta.truncated_label_values += 1;
                cut
            }
            None => value,
        };
        if name == base {
            has_state_label = true;
        }
        out.push(if first { b'{' } else { b',' });
        first = false;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        push_label_value(out, value);
        out.push(b'"');
    }
    for (name, value) in &options.const_labels {
        if sample
            .labels()
            .any(|(n, _)| names::sanitize_label_name(n) == name.as_str())
        {
            continue;
        }
        out.push(if first { b'{' } else { b',' });
        first = false;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        push_label_value(out, value);
        out.push(b'"');
    }
    if !first {
        out.push(b'}');
    }
    out.push(b' ');
    let value = sample.value();
    push_value(out, value);
    out.push(b'\n');
    match kind {
        FamilyKind::Info => value != 1.0,
        FamilyKind::StateSet => !has_state_label || !(value == 0.0 || value == 1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_24_bytes_and_a_block_gives_back_its_lines() {
        assert_eq!(std::mem::size_of::<Segment>(), 24);
        let text = b"a 1\nb{x=\"y\"} 2\nb{x=\"z\"} 3\n";
        let segment = |family, start, end, series| Segment {
            family,
            start,
            end,
            series,
            om_violations: 0,
            group: 0,
        };
        let block = Block::new(
            text,
            vec![segment(0, 0, 4, 1), segment(1, 4, 26, 2)],
            &mut lz4::Compressor::default(),
        );
        let lines = block.text();
        assert_eq!(lines, text);
        assert_eq!(
            &lines[block.segments[1].range()],
            b"b{x=\"y\"} 2\nb{x=\"z\"} 3\n"
        );
        assert_eq!(block.series_count(), 3);
        let series: Vec<&[u8]> = series_of(&lines).collect();
        assert_eq!(series, [&b"a"[..], b"b{x=\"y\"}", b"b{x=\"z\"}"]);
        // A damaged block reads as no lines.
        let damaged = Block {
            packed: Box::from(&b"\xff\xff"[..]),
            ..Block::default()
        };
        assert!(damaged.text().is_empty());
    }
}
