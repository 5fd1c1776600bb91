//! Parsers for the pages that scraped HTTP endpoints serve: the Prometheus text format 0.0.4 and
//! OpenMetrics 1.0.
//!
//! [`parse`] reads a whole page into an [`Exposition`]: its metric families in the order of the
//! page, each with its samples in the order of the page. Every sample names its family and the
//! [`Suffix`] it adds, so that `family.name + suffix.as_str()` is always exactly the metric name
//! written on the page (`http_requests_total` is family `http_requests`, kind counter, suffix
//! `_total`). Strings are borrowed from the page; only HELP texts and label values that contain
//! escapes are copied.
//!
//! ```
//! use periscope_plugin_api::batch::{FamilyKind, Suffix};
//! use periscope_scraper::exposition::{Format, parse};
//!
//! let page = concat!(
//!     "# HELP http_requests_total Requests served.\n",
//!     "# TYPE http_requests_total counter\n",
//!     "http_requests_total{code=\"200\",method=\"get\"} 1027 1395066363000\n",
//! );
//! let exposition = parse(page.as_bytes(), Format::Text)?;
//! let family = &exposition.families[0];
//! assert_eq!((family.name, family.kind), ("http_requests", FamilyKind::Counter));
//! let sample = &family.samples[0];
//! assert_eq!(sample.suffix, Suffix::Total);
//! assert_eq!(sample.label("code"), Some("200"));
//! assert_eq!((sample.value, sample.timestamp_ms), (1027.0, Some(1395066363000)));
//! # Ok::<(), periscope_scraper::exposition::ParseError>(())
//! ```
//!
//! # How samples find their family
//!
//! A family is declared by its `# TYPE` line (and `# HELP`, and in OpenMetrics `# UNIT`). A sample
//! belongs to the declared family whose name plus one of the suffixes its type allows is the
//! sample's name:
//!
//! | type | suffixes (OpenMetrics) | suffixes (text 0.0.4) |
//! |---|---|---|
//! | counter | `_total`, `_created` | none, `_total`, `_created` |
//! | gauge, stateset, unknown | none | none |
//! | histogram | `_bucket` (needs `le`), `_count`, `_sum`, `_created` | the same |
//! | gaugehistogram | `_bucket` (needs `le`), `_gcount`, `_gsum` | not a text type |
//! | summary | none (needs `quantile`), `_count`, `_sum`, `_created` | the same |
//! | info | `_info` | not a text type |
//!
//! A counter declared with its sample's name (`# TYPE foo_total counter`, as text pages do) is
//! family `foo`; likewise an info declared as `foo_info`. `untyped` and `unknown` are both read as
//! [`FamilyKind::Unknown`]. A sample that fits no declared family is a family of its own, of kind
//! unknown, named after the sample. A sample named exactly like a family whose type needs a suffix
//! (`foo` in histogram `foo`) is an error, and so, in OpenMetrics, is a sample that adds a suffix its
//! family's type does not allow (`foo_bucket` right after summary `foo`); the text format reads the
//! latter as a family of its own, as Prometheus does. Families that end up with no sample (a TYPE
//! line alone) are left out.
//!
//! # What is refused
//!
//! As in Prometheus, one malformed line fails the whole page: the [`ParseError`] carries its 1-based
//! line number, a [`ErrorKind`] to count by, and a short reason. Refused: invalid UTF-8; bad metric or
//! label names; unterminated label values; unknown escapes (label values know `\\`, `\"`, `\n`; HELP
//! knows `\\`, `\n`, and `\"` in OpenMetrics); unparsable values (floats, with `NaN`, `+Inf`, `-Inf`
//! and `Inf`) and timestamps (integer milliseconds in text, float seconds in OpenMetrics, turned
//! into milliseconds); a label name twice in one sample; a second HELP/TYPE/UNIT for a family; a TYPE
//! after samples of its family (also HELP and UNIT in OpenMetrics); a sample that does not fit its
//! family's type, a bucket without `le`, a quantile without `quantile`; and in OpenMetrics a missing
//! `# EOF`, anything after it, a last line cut without its newline, blank lines, other comments,
//! and a UNIT that does not end the family name.
//!
//! Not errors: a series (metric name and label set, in any label order) written again is dropped —
//! the first one is kept — and counted in [`Exposition::duplicates`]. OpenMetrics exemplars
//! (`# {trace_id="…"} 1 1520879607.789`) are checked and ignored.
//!
//! # Limits
//!
//! [`parse_with_limits`] applies [`Limits`] to each sample as it is read: a filter on metric names
//! (the samples it leaves out are checked, counted in [`Exposition::filtered`], and not kept), a cap
//! on the samples kept, on the labels of a sample and on the length of a label name and value. The parse
//! stops at the first sample past a limit, so a page far too big is never built whole, and memory
//! grows with what is kept, not with the page. A page may hold at most [`MAX_FAMILIES`] families,
//! with samples or not.
//!
//! # Fuzzing
//!
//! `scraper/tests/exposition_fuzz.rs` feeds random bytes and mutated valid pages to both parsers.
//! It runs a few hundred cases in `cargo test`; for a long run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test -p periscope-scraper --test exposition_fuzz --release
//! ```

use std::borrow::Cow;

use periscope_plugin_api::batch::{FamilyKind, Suffix};

mod dedup;
mod error;
mod escapes;
mod families;
mod labels;
mod lexer;
mod lines;
mod numbers;
#[cfg(test)]
mod tests;

pub use error::{ErrorKind, ParseError};
pub use families::MAX_FAMILIES;

/// The two formats an endpoint may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl Format {
    /// The `Accept` header a scraper sends: OpenMetrics first, the text format next, anything
    /// else last (the answer's `Content-Type` then says which one came back).
    pub const ACCEPT: &'static str = "application/openmetrics-text;version=1.0.0;q=0.9,\
                                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    /// The format a `Content-Type` header names, or `None` for anything this module cannot read.
    ///
    /// `text/plain` is the text format (whatever its `version`); `application/openmetrics-text` is
    /// OpenMetrics with no `version` or with `1.0.0` or `0.0.1`. Case and spaces do not matter.
    ///
    /// ```
    /// use periscope_scraper::exposition::Format;
    ///
    /// assert_eq!(Format::from_content_type("text/plain; version=0.0.4; charset=utf-8"), Some(Format::Text));
    /// assert_eq!(
    ///     Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    ///     Some(Format::OpenMetrics),
    /// );
    /// assert_eq!(Format::from_content_type("application/json"), None);
    /// ```
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let mut parts = content_type.split(';').map(str::trim);
        let media = parts.next()?;
        if media.eq_ignore_ascii_case("text/plain") {
            return Some(Format::Text);
        }
        if !media.eq_ignore_ascii_case("application/openmetrics-text") {
            return None;
        }
        for parameter in parts {
            let Some((key, value)) = parameter.split_once('=') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("version") {
                let value = value.trim().trim_matches('"');
                if value != "1.0.0" && value != "0.0.1" {
                    return None;
                }
            }
        }
        Some(Format::OpenMetrics)
    }
}

/// A parsed page: its metric families, in the order of the page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition<'a> {
    /// The families that have at least one sample, in the order in which each first appeared.
    pub families: Vec<ParsedFamily<'a>>,
    /// How many samples were dropped because their series (metric name and label set) had
    /// already been read.
    pub duplicates: usize,
    /// How many samples [`Limits::keep`] left out (duplicates among them are not looked for).
    pub filtered: usize,
}

impl<'a> Exposition<'a> {
    /// The number of samples kept, over all families.
    pub fn sample_count(&self) -> usize {
        self.families
            .iter()
            .map(|family| family.samples.len())
            .sum()
    }

    /// Every sample with its family, in the order of the page within each family.
    pub fn samples(&self) -> impl Iterator<Item = (&ParsedFamily<'a>, &ParsedSample<'a>)> {
        self.families
            .iter()
            .flat_map(|family| family.samples.iter().map(move |sample| (family, sample)))
    }
}

/// One metric family: its metadata and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFamily<'a> {
    /// The family name, without the suffix of any sample (`http_requests` for the counter whose
    /// samples are `http_requests_total`).
    pub name: &'a str,
    /// The HELP text, unescaped; empty when there was none.
    pub help: Cow<'a, str>,
    /// The OpenMetrics UNIT; empty when there was none (always, in the text format).
    pub unit: &'a str,
    /// The type from the TYPE line; [`FamilyKind::Unknown`] without one.
    pub kind: FamilyKind,
    /// The samples, in the order of the page.
    pub samples: Vec<ParsedSample<'a>>,
}

impl ParsedFamily<'_> {
    /// The metric name of a sample of this family with `suffix`: the family name plus the suffix.
    pub fn metric_name(&self, suffix: Suffix) -> String {
        let mut name = String::with_capacity(self.name.len() + suffix.as_str().len());
        name.push_str(self.name);
        name.push_str(suffix.as_str());
        name
    }
}

/// One sample: a value of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample<'a> {
    /// What the sample's name adds to its family's name.
    pub suffix: Suffix,
    /// The labels, in the order of the page, values unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The value.
    pub value: f64,
    /// The timestamp in milliseconds since the Unix epoch, when the page gave one.
    pub timestamp_ms: Option<i64>,
}

impl ParsedSample<'_> {
    /// The value of the label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| value.as_ref())
    }
}

/// Parses a whole page in `format`.
///
/// Fails on the first malformed line; see the [module documentation](self) for what is read and
/// what is refused.
pub fn parse(input: &[u8], format: Format) -> Result<Exposition<'_>, ParseError> {
    lines::parse(input, format, Limits::none())
}

/// What a parse keeps, and how much of it; `usize::MAX` is no limit ([`Limits::none`]).
pub struct Limits<'f> {
    /// Samples kept at most (duplicates and samples left out by `keep` not counted); the parse
    /// fails with [`ErrorKind::TooManySamples`] at the first sample over it.
    pub max_samples: usize,
    /// Labels of one sample at most ([`ErrorKind::TooManyLabels`], at the first label over it).
    pub max_labels: usize,
    /// Bytes of one label value at most ([`ErrorKind::LabelValueTooLong`]).
    pub max_label_value_bytes: usize,
    /// Bytes of one label name at most ([`ErrorKind::LabelNameTooLong`]).
    pub max_label_name_bytes: usize,
    /// Which samples to keep, by metric name (`http_requests_total`); the others are checked and
    /// counted in [`Exposition::filtered`] but not kept. `None` keeps every sample.
    pub keep: Option<&'f mut dyn FnMut(&str) -> bool>,
}

impl Limits<'_> {
    /// No limit, every sample kept.
    pub fn none() -> Self {
        Limits {
            max_samples: usize::MAX,
            max_labels: usize::MAX,
            max_label_value_bytes: usize::MAX,
            max_label_name_bytes: usize::MAX,
            keep: None,
        }
    }
}

/// Parses a whole page in `format` within `limits`, failing at the first sample past one of them.
pub fn parse_with_limits<'a>(
    input: &'a [u8],
    format: Format,
    limits: Limits<'_>,
) -> Result<Exposition<'a>, ParseError> {
    lines::parse(input, format, limits)
}
