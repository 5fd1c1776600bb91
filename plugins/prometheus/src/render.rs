//! A metrics page from a [`State`]: headers once per family, then every source's pre-rendered
//! lines of that family, then the exporter's own metrics (and `# EOF` in OpenMetrics).
//!
//! Why by hand and not with the `prometheus` crate: its registry re-encodes every sample (names,
//! escaping, number formatting) on every scrape and holds each series as a boxed metric (2.9–4.9 s
//! and 766 MB for 1M series when measured for this exporter's design). Here a scrape only lays
//! the page out from the block segments' sizes, decompresses each block once and copies bytes; see
//! `benches/render.rs` and `benches/page.rs` for the figures. The crate's types are not needed for anything else.

use std::collections::HashSet;

use periscope_plugin_api::{FamilyKind, Suffix};

use crate::block::{GROUPS, SUFFIXES, Segment};
use crate::format::Format;
use crate::names::push_help;
use crate::state::{FamilyInfo, State};
use crate::stats::Stats;

/// The `# TYPE` line of an exposed family: its name (the family's base plus `suffix`) and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Appended to the family's base name.
    pub suffix: &'static str,
    /// The type as the format spells it.
    pub kind: &'static str,
}

impl Header {
    /// Every metric name this exposed family can use (its name and its sample names).
    fn names(self, base: &str) -> impl Iterator<Item = String> + '_ {
        let derived: &[&str] = match self.kind {
            "counter" if self.suffix.is_empty() => &["_total", "_created"],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            "summary" => &["_count", "_sum", "_created"],
            "gaugehistogram" => &["_bucket", "_gcount", "_gsum"],
            "info" => &["_info"],
            _ => &[],
        };
        std::iter::once("")
            .chain(derived.iter().copied())
            .map(move |d| format!("{base}{}{d}", self.suffix))
    }
}

/// The header of group `group` (see [`crate::block::group_of`]) of a family in `format`.
///
/// The text format has no info, state set or gauge histogram: those become gauges (untyped for
/// gauge histograms); a counter's family is named with `_total`. OpenMetrics keeps its types,
/// except an info or state set family with samples that break the type's rules (`om_ok` false),
/// which is exposed as a gauge.
pub fn header(kind: FamilyKind, om_ok: bool, group: u8, format: Format) -> Header {
    let om = format.is_openmetrics();
    let h = |suffix, kind| Header { suffix, kind };
    if group == 0 {
        return match (kind, om) {
            (FamilyKind::Gauge, _) => h("", "gauge"),
            (FamilyKind::Counter, false) => h("_total", "counter"),
            (FamilyKind::Counter, true) => h("", "counter"),
            (FamilyKind::Info, true) if om_ok => h("", "info"),
            (FamilyKind::Info, _) => h("_info", "gauge"),
            (FamilyKind::StateSet, true) if om_ok => h("", "stateset"),
            (FamilyKind::StateSet, _) => h("", "gauge"),
            (FamilyKind::Unknown, false) => h("", "untyped"),
            (FamilyKind::Unknown, true) => h("", "unknown"),
            (FamilyKind::Histogram, _) => h("", "histogram"),
            (FamilyKind::Summary, _) => h("", "summary"),
            (FamilyKind::GaugeHistogram, false) => h("", "untyped"),
            (FamilyKind::GaugeHistogram, true) => h("", "gaugehistogram"),
        };
    }
    let suffix = SUFFIXES
        .get(usize::from(group) - 1)
        .copied()
        .unwrap_or(Suffix::None);
    let created = suffix == Suffix::Created;
    if om
        && created
        && matches!(
            kind,
            FamilyKind::Counter | FamilyKind::Histogram | FamilyKind::Summary
        )
    {
        return header(kind, om_ok, 0, format);
    }
    let kind = match (created, om) {
        (true, _) => "gauge",
        (false, true) => "unknown",
        (false, false) => "untyped",
    };
    h(suffix.as_str(), kind)
}

fn write_header(out: &mut Vec<u8>, info: &FamilyInfo, header: Header, format: Format) {
    let name = format!("{}{}", info.base, header.suffix);
    let help = |out: &mut Vec<u8>| {
        if !info.help.is_empty() {
            out.extend_from_slice(b"# HELP ");
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            push_help(out, &info.help, format.is_openmetrics());
            out.push(b'\n');
        }
    };
    let kind = format!("# TYPE {name} {}\n", header.kind);
    if format.is_openmetrics() {
        out.extend_from_slice(kind.as_bytes());
        // OpenMetrics requires the unit to be the name's suffix; otherwise it is left out.
        if !info.unit.is_empty() && name.ends_with(&format!("_{}", info.unit)) {
            out.extend_from_slice(format!("# UNIT {name} {}\n", info.unit).as_bytes());
        }
        help(out);
    } else {
        help(out);
        out.extend_from_slice(kind.as_bytes());
    }
}

/// What a render did besides writing the page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Families left out because one of their names is another family's (or a self-metric's).
    pub conflicts: u64,
}

/// Appends the page of `state` in `format` to `out`, the exporter's own metrics included.
pub fn render(state: &State, format: Format, stats: &Stats, out: &mut Vec<u8>) -> Rendered {
    let rendered = render_series(state, format, out);
    render_tail(format, stats, out);
    rendered
}

/// What a page holds, in order: header lines, and the lines of family groups.
#[derive(Debug, Default)]
pub struct Layout {
    /// The parts of the page, in order.
    pub parts: Vec<Part>,
    /// What the layout left out.
    pub rendered: Rendered,
}

/// One part of a [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// `# HELP`/`# TYPE` (and `# UNIT`) lines.
    Header(Vec<u8>),
    /// Every block's lines of one family group, in block order: group `bucket % GROUPS` of
    /// family `bucket / GROUPS` (see [`bucket`]), `bytes` long.
    Lines {
        /// The family group.
        bucket: usize,
        /// How long its lines are, over all blocks.
        bytes: usize,
    },
}

/// The number of a family group: `family * GROUPS + group`.
pub fn bucket(segment: &Segment) -> usize {
    segment.family as usize * GROUPS + usize::from(segment.group)
}

/// Lays out the page of `state` in `format`, but for its end ([`render_tail`]): which families
/// are shown, in name order, their headers and the size of each group's lines, taken from the
/// block segments alone (no block is decompressed).
pub fn layout(state: &State, format: Format) -> Layout {
    let families = state.families();
    let mut sizes = vec![0usize; families.len() * GROUPS];
    for block in state.blocks() {
        for segment in block.segments.iter() {
            if let Some(size) = sizes.get_mut(bucket(segment)) {
                *size += segment.range().len();
            }
        }
    }
    let mut order: Vec<usize> = (0..families.len())
        .filter(|&id| families[id].series > 0)
        .collect();
    order.sort_by(|a, b| families[*a].base.cmp(&families[*b].base));
    let mut taken: HashSet<String> = Stats::reserved_names().collect();
    let mut layout = Layout::default();
    for id in order {
        let info = &families[id];
        let om_ok = info.om_violations == 0;
        let groups: Vec<(u8, Header)> = (0..GROUPS as u8)
            .filter(|g| sizes[id * GROUPS + usize::from(*g)] > 0)
            .map(|g| (g, header(info.kind, om_ok, g, format)))
            .collect();
        let mut names: Vec<String> = groups
            .iter()
            .flat_map(|(_, h)| h.names(&info.base).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        if names.iter().any(|n| taken.contains(n)) {
            layout.rendered.conflicts += 1;
            continue;
        }
        taken.extend(names);
        let mut last: Option<Header> = None;
        for (group, h) in groups {
            if last != Some(h) {
                let mut lines = Vec::new();
                write_header(&mut lines, info, h, format);
                layout.parts.push(Part::Header(lines));
                last = Some(h);
            }
            let bucket = id * GROUPS + usize::from(group);
            layout.parts.push(Part::Lines {
                bucket,
                bytes: sizes[bucket],
            });
        }
    }
    layout
}

/// Appends every family of `state` in `format` to `out`: the page but for its end
/// ([`render_tail`]), the same for every scrape of one state.
///
/// The [`layout`] gives each group its room in `out`; then each block is decompressed once and
/// each of its segments copied to the next free place of its group, so the lines of a group
/// follow the blocks' order (source id).
pub fn render_series(state: &State, format: Format, out: &mut Vec<u8>) -> Rendered {
    let layout = layout(state, format);
    let total: usize = layout
        .parts
        .iter()
        .map(|part| match part {
            Part::Header(lines) => lines.len(),
            Part::Lines { bytes, .. } => *bytes,
        })
        .sum();
    out.reserve(total);
    // Where the next lines of each group go in `out`; `None` for a group left off the page.
    let mut next: Vec<Option<usize>> = vec![None; state.families().len() * GROUPS];
    for part in &layout.parts {
        match part {
            Part::Header(lines) => out.extend_from_slice(lines),
            Part::Lines { bucket, bytes } => {
                next[*bucket] = Some(out.len());
                out.resize(out.len() + bytes, 0);
            }
        }
    }
    let mut text = Vec::new();
    for block in state.blocks() {
        block.text_into(&mut text);
        for segment in block.segments.iter() {
            let (Some(Some(at)), Some(lines)) =
                (next.get_mut(bucket(segment)), text.get(segment.range()))
            else {
                continue;
            };
            if let Some(place) = out.get_mut(*at..*at + lines.len()) {
                place.copy_from_slice(lines);
                *at += lines.len();
            }
        }
    }
    layout.rendered
}

/// Appends the end of a page: the exporter's own metrics (current at each scrape), and `# EOF` in
/// OpenMetrics.
pub fn render_tail(format: Format, stats: &Stats, out: &mut Vec<u8>) {
    stats.render(format, out);
    if format.is_openmetrics() {
        out.extend_from_slice(b"# EOF\n");
    }
}
