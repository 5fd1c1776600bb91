//! The families of a page as its lines declare and fill them: which family a sample belongs to,
//! what its type lets it be called, metadata rules, duplicate series.

use std::borrow::Cow;
use std::collections::HashMap;

use periscope_plugin_api::batch::{FamilyKind, Suffix};

use super::dedup::SeriesSet;
use super::error::{ErrorKind, ParseError};
use super::labels::Label;
use super::{Exposition, Format, ParsedFamily, ParsedSample, numbers};

/// Every suffix a sample name may end with, in the order they are tried.
const SUFFIXES: [Suffix; 8] = [
    Suffix::Total,
    Suffix::Created,
    Suffix::Bucket,
    Suffix::Count,
    Suffix::Sum,
    Suffix::Info,
    Suffix::GCount,
    Suffix::GSum,
];

/// The most metric families a page may declare or make, samples or not: HELP and TYPE lines
/// without samples are not bounded by the sample limit, and each family costs some 170 bytes
/// (16 MiB of them held 150 MB). Real pages have hundreds.
pub const MAX_FAMILIES: usize = 100_000;

/// The families read so far.
pub(super) struct Families<'a, 'f> {
    format: Format,
    families: Vec<ParsedFamily<'a>>,
    states: Vec<State>,
    /// Families by the name their HELP/TYPE/UNIT lines (or, for those without, their first
    /// sample) call them: `foo_total` for a text counter.
    by_metadata_name: HashMap<&'a str, usize>,
    /// Families by [`ParsedFamily::name`]: `foo` for that counter.
    by_name: HashMap<&'a str, usize>,
    /// The family of the last line, where the next sample most likely belongs.
    current: Option<usize>,
    series: SeriesSet,
    duplicates: usize,
    kept: usize,
    limit: usize,
    /// Which samples to keep, by metric name; `None` keeps all.
    keep: Option<&'f mut dyn FnMut(&str) -> bool>,
    /// Samples `keep` left out.
    filtered: usize,
}

/// A sample line as read, but for its labels.
pub(super) struct Sample<'a> {
    /// The metric name.
    pub(super) name: &'a str,
    pub(super) value: f64,
    pub(super) timestamp_ms: Option<i64>,
}

/// What a family has had so far, beyond its [`ParsedFamily`].
#[derive(Default)]
struct State {
    typed: bool,
    help: bool,
    unit: bool,
    /// Made by a sample that fit no declared family.
    implicit: bool,
    /// Has had a sample, kept or left out.
    sampled: bool,
}

impl<'a, 'f> Families<'a, 'f> {
    /// No families yet; at most `limit` samples to keep, those `keep` takes (all without it); a
    /// page of `page_bytes`.
    pub(super) fn new(
        format: Format,
        limit: usize,
        keep: Option<&'f mut dyn FnMut(&str) -> bool>,
        page_bytes: usize,
    ) -> Self {
        // Sample lines of real pages run from about 50 to 200 bytes.
        let expected_samples = (page_bytes / 128).min(limit);
        Families {
            format,
            families: Vec::new(),
            states: Vec::new(),
            by_metadata_name: HashMap::new(),
            by_name: HashMap::new(),
            current: None,
            series: SeriesSet::with_capacity(expected_samples),
            duplicates: 0,
            kept: 0,
            limit,
            keep,
            filtered: 0,
        }
    }

    /// The page as read.
    pub(super) fn finish(mut self) -> Exposition<'a> {
        self.families.retain(|family| !family.samples.is_empty());
        Exposition {
            families: self.families,
            duplicates: self.duplicates,
            filtered: self.filtered,
        }
    }

    /// A `# HELP name text` line (text already unescaped).
    pub(super) fn help(
        &mut self,
        name: &'a str,
        help: Cow<'a, str>,
        line: usize,
    ) -> Result<(), ParseError> {
        let index = self.metadata_family(name, name, line)?;
        self.check_metadata(index, name, "HELP", |state| state.help, line)?;
        self.states[index].help = true;
        self.families[index].help = help;
        Ok(())
    }

    /// An OpenMetrics `# UNIT name unit` line.
    pub(super) fn unit(
        &mut self,
        name: &'a str,
        unit: &'a str,
        line: usize,
    ) -> Result<(), ParseError> {
        let fits = unit.is_empty()
            || name
                .strip_suffix(unit)
                .is_some_and(|rest| rest.ends_with('_'));
        if !fits {
            return Err(ParseError::new(
                line,
                ErrorKind::InvalidMetadata,
                format!("unit {unit:?} is not a suffix of the metric name {name:?}"),
            ));
        }
        let index = self.metadata_family(name, name, line)?;
        self.check_metadata(index, name, "UNIT", |state| state.unit, line)?;
        self.states[index].unit = true;
        self.families[index].unit = unit;
        Ok(())
    }

    /// A `# TYPE name type` line.
    pub(super) fn declare_type(
        &mut self,
        metadata_name: &'a str,
        type_name: &str,
        line: usize,
    ) -> Result<(), ParseError> {
        let error = |kind, message: String| ParseError::new(line, kind, message);
        let kind = kind_from_name(type_name, self.format).ok_or_else(|| {
            error(
                ErrorKind::InvalidMetadata,
                format!("unknown metric type {type_name:?}"),
            )
        })?;
        let name = family_name(metadata_name, kind);
        let index = self.metadata_family(metadata_name, name, line)?;
        self.check_metadata(index, metadata_name, "TYPE", |state| state.typed, line)?;
        let family = &mut self.families[index];
        if family.name != name {
            match self.by_name.get(name) {
                Some(&other) if other != index => {
                    return Err(error(
                        ErrorKind::InvalidMetadata,
                        format!("TYPE line for {metadata_name}: family {name} is declared already"),
                    ));
                }
                _ => {}
            }
            if self.by_name.get(family.name) == Some(&index) {
                self.by_name.remove(family.name);
            }
            family.name = name;
            self.by_name.insert(name, index);
        }
        family.kind = kind;
        self.states[index].typed = true;
        // Samples read before this line as a family of their own, but named like samples of this
        // one: the TYPE line came too late for them.
        for suffix in allowed_suffixes(self.format, kind) {
            let sample_name = format!("{name}{}", suffix.as_str());
            if let Some(&other) = self.by_name.get(sample_name.as_str())
                && other != index
                && self.states[other].implicit
            {
                return Err(error(
                    ErrorKind::MetadataAfterSamples,
                    format!("TYPE line for {metadata_name} after samples of {sample_name}"),
                ));
            }
        }
        Ok(())
    }

    /// A sample line, with its labels (taken out of `labels`).
    pub(super) fn sample(
        &mut self,
        sample: Sample<'a>,
        labels: &mut Vec<Label<'a>>,
        line: usize,
    ) -> Result<(), ParseError> {
        let Sample {
            name,
            value,
            timestamp_ms,
        } = sample;
        let (index, suffix) = self.resolve(name, line)?;
        let hash = self.series.hash(name, labels).map_err(|label| {
            ParseError::new(
                line,
                ErrorKind::DuplicateLabelName,
                format!("label {label:?} appears twice"),
            )
        })?;
        check_type_labels(self.families[index].kind, suffix, labels, line)?;
        self.states[index].sampled = true;
        self.current = Some(index);
        if let Some(keep) = &mut self.keep
            && !keep(name)
        {
            self.filtered += 1;
            labels.clear();
            return Ok(());
        }
        let position = (index, self.families[index].samples.len());
        if !self
            .series
            .insert(hash, name, labels, position, &self.families)
        {
            self.duplicates += 1;
            labels.clear();
            return Ok(());
        }
        if self.kept >= self.limit {
            return Err(ParseError::new(
                line,
                ErrorKind::TooManySamples,
                format!("more than {} samples", self.limit),
            ));
        }
        self.kept += 1;
        self.families[index].samples.push(ParsedSample {
            suffix,
            // The sample takes the buffer, the next sample gets one of this one's size.
            labels: std::mem::replace(labels, Vec::with_capacity(labels.len())),
            value,
            timestamp_ms,
        });
        Ok(())
    }

    /// The family a sample named `name` belongs to, and the suffix it adds; made if need be.
    fn resolve(&mut self, name: &'a str, line: usize) -> Result<(usize, Suffix), ParseError> {
        let format = self.format;
        // Nearly always: the family of the line before.
        if let Some(current) = self.current {
            let family = &self.families[current];
            if let Some(suffix) = name.strip_prefix(family.name).and_then(suffix_from_str)
                && allows(format, family.kind, suffix)
            {
                return Ok((current, suffix));
            }
        }
        let exact = self.by_name.get(name).copied();
        if let Some(index) = exact
            && allows(format, self.families[index].kind, Suffix::None)
        {
            return Ok((index, Suffix::None));
        }
        for suffix in SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix.as_str())
                && let Some(&index) = self.by_name.get(base)
                && allows(format, self.families[index].kind, suffix)
            {
                return Ok((index, suffix));
            }
        }
        if let Some(index) = exact {
            return Err(self.mismatch(index, name, line));
        }
        if format == Format::OpenMetrics
            && let Some(current) = self.current
            && has_suffixes(self.families[current].kind)
            && name
                .strip_prefix(self.families[current].name)
                .and_then(suffix_from_str)
                .is_some()
        {
            return Err(self.mismatch(current, name, line));
        }
        let index = self.new_family(name, true, line)?;
        self.by_name.insert(name, index);
        self.by_metadata_name.entry(name).or_insert(index);
        Ok((index, Suffix::None))
    }

    /// The error for a sample named `name` that does not fit family `index`'s type.
    fn mismatch(&self, index: usize, name: &str, line: usize) -> ParseError {
        let family = &self.families[index];
        let expected: Vec<String> = allowed_suffixes(self.format, family.kind)
            .map(|suffix| format!("{}{}", family.name, suffix.as_str()))
            .collect();
        ParseError::new(
            line,
            ErrorKind::TypeMismatch,
            format!(
                "sample {name} does not fit {} family {}: expected {}",
                family.kind.as_str(),
                family.name,
                expected.join(", ")
            ),
        )
    }

    /// The family that a metadata line for `metadata_name` (whose family would be called `name`)
    /// is about: the one declared under that name, else the one called `name`, else a new one.
    fn metadata_family(
        &mut self,
        metadata_name: &'a str,
        name: &'a str,
        line: usize,
    ) -> Result<usize, ParseError> {
        let found = self
            .by_metadata_name
            .get(metadata_name)
            .or_else(|| self.by_name.get(name))
            .copied();
        let index = match found {
            Some(index) => index,
            None => {
                let index = self.new_family(metadata_name, false, line)?;
                self.by_name.entry(metadata_name).or_insert(index);
                index
            }
        };
        self.by_metadata_name.entry(metadata_name).or_insert(index);
        self.current = Some(index);
        Ok(index)
    }

    /// A new family called `name`, without metadata or samples yet; `implicit` when a sample
    /// that fit no declared family makes it. At most [`MAX_FAMILIES`].
    fn new_family(
        &mut self,
        name: &'a str,
        implicit: bool,
        line: usize,
    ) -> Result<usize, ParseError> {
        if self.families.len() >= MAX_FAMILIES {
            return Err(ParseError::new(
                line,
                ErrorKind::TooManyFamilies,
                format!("more than {MAX_FAMILIES} metric families"),
            ));
        }
        self.families.push(ParsedFamily {
            name,
            help: Cow::Borrowed(""),
            unit: "",
            kind: FamilyKind::Unknown,
            samples: Vec::new(),
        });
        self.states.push(State {
            implicit,
            ..State::default()
        });
        Ok(self.families.len() - 1)
    }

    /// Refuses a second `what` line for family `index`, and one after its samples (always for TYPE;
    /// for HELP and UNIT in OpenMetrics only, as Prometheus reads text pages).
    fn check_metadata(
        &self,
        index: usize,
        metadata_name: &str,
        what: &str,
        seen: impl Fn(&State) -> bool,
        line: usize,
    ) -> Result<(), ParseError> {
        if seen(&self.states[index]) {
            return Err(ParseError::new(
                line,
                ErrorKind::InvalidMetadata,
                format!("second {what} line for {metadata_name}"),
            ));
        }
        let strict = what == "TYPE" || self.format == Format::OpenMetrics;
        if strict && self.states[index].sampled {
            return Err(ParseError::new(
                line,
                ErrorKind::MetadataAfterSamples,
                format!("{what} line for {metadata_name} after its samples"),
            ));
        }
        Ok(())
    }
}

/// The family kind a TYPE line names. Both formats take `untyped` and `unknown`; the text format
/// knows only the four types of Prometheus besides.
fn kind_from_name(name: &str, format: Format) -> Option<FamilyKind> {
    let kind = match name {
        "counter" => FamilyKind::Counter,
        "gauge" => FamilyKind::Gauge,
        "histogram" => FamilyKind::Histogram,
        "summary" => FamilyKind::Summary,
        "untyped" | "unknown" => FamilyKind::Unknown,
        "gaugehistogram" if format == Format::OpenMetrics => FamilyKind::GaugeHistogram,
        "stateset" if format == Format::OpenMetrics => FamilyKind::StateSet,
        "info" if format == Format::OpenMetrics => FamilyKind::Info,
        _ => return None,
    };
    Some(kind)
}

/// The family name of a TYPE line's name: a counter declared as `foo_total` is family `foo`, an
/// info declared as `foo_info` is family `foo`.
fn family_name(metadata_name: &str, kind: FamilyKind) -> &str {
    let suffix = match kind {
        FamilyKind::Counter => Suffix::Total,
        FamilyKind::Info => Suffix::Info,
        _ => return metadata_name,
    };
    match metadata_name.strip_suffix(suffix.as_str()) {
        Some(base) if !base.is_empty() => base,
        _ => metadata_name,
    }
}

/// The suffix `text` is (`""` is [`Suffix::None`]).
fn suffix_from_str(text: &str) -> Option<Suffix> {
    let suffix = match text {
        "" => Suffix::None,
        "_total" => Suffix::Total,
        "_created" => Suffix::Created,
        "_bucket" => Suffix::Bucket,
        "_count" => Suffix::Count,
        "_sum" => Suffix::Sum,
        "_info" => Suffix::Info,
        "_gcount" => Suffix::GCount,
        "_gsum" => Suffix::GSum,
        _ => return None,
    };
    Some(suffix)
}

/// The suffixes the samples of a family of `kind` may have, as a bit set over `Suffix as u8`.
fn allowed(format: Format, kind: FamilyKind) -> u16 {
    let bits = |suffixes: &[Suffix]| {
        suffixes
            .iter()
            .fold(0u16, |bits, &suffix| bits | (1 << suffix as u8))
    };
    match kind {
        FamilyKind::Counter if format == Format::Text => {
            bits(&[Suffix::None, Suffix::Total, Suffix::Created])
        }
        FamilyKind::Counter => bits(&[Suffix::Total, Suffix::Created]),
        FamilyKind::Gauge | FamilyKind::StateSet | FamilyKind::Unknown => bits(&[Suffix::None]),
        FamilyKind::Histogram => {
            bits(&[Suffix::Bucket, Suffix::Count, Suffix::Sum, Suffix::Created])
        }
        FamilyKind::GaugeHistogram => bits(&[Suffix::Bucket, Suffix::GCount, Suffix::GSum]),
        FamilyKind::Summary => bits(&[Suffix::None, Suffix::Count, Suffix::Sum, Suffix::Created]),
        FamilyKind::Info => bits(&[Suffix::Info]),
    }
}

/// Whether a family of `kind` may have samples with `suffix`.
fn allows(format: Format, kind: FamilyKind, suffix: Suffix) -> bool {
    allowed(format, kind) & (1 << suffix as u8) != 0
}

/// The suffixes a family of `kind` allows, in the order its samples usually come.
fn allowed_suffixes(format: Format, kind: FamilyKind) -> impl Iterator<Item = Suffix> {
    [
        Suffix::None,
        Suffix::Total,
        Suffix::Info,
        Suffix::Bucket,
        Suffix::Count,
        Suffix::Sum,
        Suffix::GCount,
        Suffix::GSum,
        Suffix::Created,
    ]
    .into_iter()
    .filter(move |&suffix| allows(format, kind, suffix))
}

/// Whether samples of `kind` are told apart by suffixes, so that an unexpected suffix is a mistake
/// rather than another family.
fn has_suffixes(kind: FamilyKind) -> bool {
    matches!(
        kind,
        FamilyKind::Counter
            | FamilyKind::Histogram
            | FamilyKind::GaugeHistogram
            | FamilyKind::Summary
            | FamilyKind::Info
    )
}

/// The labels a type needs on some samples: `le` (a number) on buckets, `quantile` (a number) on a
/// summary's unsuffixed samples.
fn check_type_labels(
    kind: FamilyKind,
    suffix: Suffix,
    labels: &[Label<'_>],
    line: usize,
) -> Result<(), ParseError> {
    let (label, what) = match (kind, suffix) {
        (FamilyKind::Histogram | FamilyKind::GaugeHistogram, Suffix::Bucket) => ("le", "bucket"),
        (FamilyKind::Summary, Suffix::None) => ("quantile", "summary quantile"),
        _ => return Ok(()),
    };
    let value = labels
        .iter()
        .rev()
        .find(|(name, _)| *name == label)
        .map(|(_, value)| value.as_ref());
    match value {
        Some(value) if numbers::parse_value(value).is_some() => Ok(()),
        Some(value) => Err(ParseError::new(
            line,
            ErrorKind::TypeMismatch,
            format!("{what} with {label}={value:?}, which is not a number"),
        )),
        None => Err(ParseError::new(
            line,
            ErrorKind::TypeMismatch,
            format!("{what} without a {label:?} label"),
        )),
    }
}
