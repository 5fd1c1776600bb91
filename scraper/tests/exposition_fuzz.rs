//! Property tests of the exposition parsers: random bytes and mutated pages never make them panic,
//! and valid pages generated from a model read back exactly as written — every sample's family
//! name plus suffix is its written metric name, labels and values round-trip.
//!
//! A few hundred cases per property run in `cargo test`; for a long run:
//! `PROPTEST_CASES=100000 cargo test -p periscope-scraper --test exposition_fuzz --release`

use std::collections::BTreeSet;

use periscope_plugin_api::batch::{FamilyKind, Suffix};
use periscope_plugin_api::names::{is_label_name, is_metric_name};
use periscope_scraper::exposition::{Exposition, Format, parse};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

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

/// The family types a generated page may use.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
    /// `# TYPE x untyped`.
    Untyped,
    /// No metadata at all.
    Bare,
    Info,
    StateSet,
    GaugeHistogram,
}

#[derive(Debug, Clone)]
struct FamilyModel {
    kind: Kind,
    /// Unique on the page, and never another family's name plus a suffix: `f<index>_<word>`.
    name: String,
    help: Option<String>,
    /// OpenMetrics only: the name then ends with `_seconds`.
    unit: bool,
    series: Vec<SeriesModel>,
}

#[derive(Debug, Clone)]
struct SeriesModel {
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
    exemplar: bool,
}

/// One sample as it should read back.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    name: String,
    kind: FamilyKind,
    labels: Vec<(String, String)>,
    value: Value,
    timestamp_ms: Option<i64>,
}

/// A float compared by bits, so that NaN equals NaN and -0 differs from 0.
#[derive(Debug, Clone, Copy)]
struct Value(f64);

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        (self.0.is_nan() && other.0.is_nan()) || self.0.to_bits() == other.0.to_bits()
    }
}

fn text_with(extra: &'static [char]) -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        6 => any::<char>(),
        2 => proptest::sample::select(extra),
        2 => proptest::char::range('a', 'z'),
    ];
    proptest::collection::vec(chars, 0..10).prop_map(|chars| chars.into_iter().collect())
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        4 => (-100_000i32..100_000).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.0),
    ]
}

fn series(format: Format) -> impl Strategy<Value = SeriesModel> {
    let labels = (
        proptest::collection::btree_map("k_[a-z0-9_]{0,4}", text_with(&['\\', '"', '\n']), 0..4),
        any::<bool>(),
    )
        .prop_map(|(labels, reverse)| {
            let mut labels: Vec<(String, String)> = labels.into_iter().collect();
            if reverse {
                labels.reverse();
            }
            labels
        });
    let timestamp = match format {
        Format::Text => proptest::option::of(any::<i64>()).boxed(),
        Format::OpenMetrics => proptest::option::of(0i64..4_000_000_000_000).boxed(),
    };
    (labels, value(), timestamp, any::<bool>()).prop_map(
        |(labels, value, timestamp_ms, exemplar)| SeriesModel {
            labels,
            value,
            timestamp_ms,
            exemplar,
        },
    )
}

fn family(format: Format) -> impl Strategy<Value = FamilyModel> {
    let kinds = match format {
        Format::Text => vec![
            Kind::Gauge,
            Kind::Counter,
            Kind::Histogram,
            Kind::Summary,
            Kind::Untyped,
            Kind::Bare,
        ],
        Format::OpenMetrics => vec![
            Kind::Gauge,
            Kind::Counter,
            Kind::Histogram,
            Kind::Summary,
            Kind::Untyped,
            Kind::Bare,
            Kind::Info,
            Kind::StateSet,
            Kind::GaugeHistogram,
        ],
    };
    (
        proptest::sample::select(kinds),
        "[a-z][a-z0-9]{0,6}",
        proptest::option::of(text_with(&['\\', '"', '\n'])),
        any::<bool>(),
        proptest::collection::vec(series(format), 1..4),
    )
        .prop_map(move |(kind, word, help, unit, series)| FamilyModel {
            kind,
            name: word,
            help: if kind == Kind::Bare { None } else { help },
            unit: unit && format == Format::OpenMetrics && kind != Kind::Bare,
            series,
        })
}

fn page_model(format: Format) -> impl Strategy<Value = Vec<FamilyModel>> {
    proptest::collection::vec(family(format), 1..6).prop_map(|mut families| {
        for (index, family) in families.iter_mut().enumerate() {
            let unit = if family.unit { "_seconds" } else { "" };
            family.name = format!("f{index}_{}{unit}", family.name);
        }
        families
    })
}

fn render_value(value: f64, format: Format) -> String {
    match value {
        v if v.is_nan() => "NaN".to_owned(),
        v if v == f64::INFINITY => "+Inf".to_owned(),
        v if v == f64::NEG_INFINITY && format == Format::Text => "-Inf".to_owned(),
        v if v == f64::NEG_INFINITY => "-inf".to_owned(),
        v => format!("{v:?}"),
    }
}

fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str, format: Format) -> String {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    match format {
        Format::Text => help,
        Format::OpenMetrics => help.replace('"', "\\\""),
    }
}

/// The label a type adds to some samples: `le`, `quantile`, a stateset's own.
type ExtraLabel = Option<(String, String)>;

/// Writes the page, and what each sample should read back as.
fn render(families: &[FamilyModel], format: Format) -> (String, Vec<Expected>) {
    let om = format == Format::OpenMetrics;
    let mut page = String::new();
    let mut expected = Vec::new();
    for family in families {
        let name = &family.name;
        let (type_name, declared, kind) = match family.kind {
            Kind::Gauge => ("gauge", name.clone(), FamilyKind::Gauge),
            Kind::Counter if om => ("counter", name.clone(), FamilyKind::Counter),
            Kind::Counter => ("counter", format!("{name}_total"), FamilyKind::Counter),
            Kind::Histogram => ("histogram", name.clone(), FamilyKind::Histogram),
            Kind::Summary => ("summary", name.clone(), FamilyKind::Summary),
            Kind::Untyped | Kind::Bare => ("untyped", name.clone(), FamilyKind::Unknown),
            Kind::Info => ("info", name.clone(), FamilyKind::Info),
            Kind::StateSet => ("stateset", name.clone(), FamilyKind::StateSet),
            Kind::GaugeHistogram => ("gaugehistogram", name.clone(), FamilyKind::GaugeHistogram),
        };
        if let Some(help) = &family.help {
            page.push_str(&format!(
                "# HELP {declared} {}\n",
                escape_help(help, format)
            ));
        }
        if family.kind != Kind::Bare {
            page.push_str(&format!("# TYPE {declared} {type_name}\n"));
        }
        if family.unit {
            page.push_str(&format!("# UNIT {declared} seconds\n"));
        }
        let mut seen = BTreeSet::new();
        for series in &family.series {
            let mut sorted = series.labels.clone();
            sorted.sort();
            if !seen.insert(sorted) {
                continue;
            }
            let v = series.value;
            let samples: Vec<(&str, ExtraLabel, f64)> = match family.kind {
                Kind::Gauge | Kind::Untyped | Kind::Bare => vec![("", None, v)],
                Kind::Counter => vec![("_total", None, v), ("_created", None, 1.5e9)],
                Kind::Histogram | Kind::GaugeHistogram => {
                    let (count, sum) = if family.kind == Kind::Histogram {
                        ("_count", "_sum")
                    } else {
                        ("_gcount", "_gsum")
                    };
                    let le = |bound: &str| Some(("le".to_owned(), bound.to_owned()));
                    vec![
                        ("_bucket", le("0.1"), v),
                        ("_bucket", le("1e3"), v),
                        ("_bucket", le("+Inf"), v),
                        (count, None, 3.0),
                        (sum, None, v),
                    ]
                }
                Kind::Summary => {
                    let quantile = |q: &str| Some(("quantile".to_owned(), q.to_owned()));
                    vec![
                        ("", quantile("0.5"), v),
                        ("", quantile("0.99"), v),
                        ("_sum", None, v),
                        ("_count", None, 7.0),
                    ]
                }
                Kind::Info => vec![("_info", None, 1.0)],
                Kind::StateSet => vec![
                    ("", Some((name.clone(), "on".to_owned())), 1.0),
                    ("", Some((name.clone(), "off".to_owned())), 0.0),
                ],
            };
            for (suffix, extra, value) in samples {
                let mut labels = series.labels.clone();
                labels.extend(extra);
                let metric = format!("{name}{suffix}");
                page.push_str(&metric);
                if !labels.is_empty() || (om && series.exemplar) {
                    let written: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                        .collect();
                    page.push_str(&format!("{{{}}}", written.join(",")));
                }
                page.push(' ');
                page.push_str(&render_value(value, format));
                if let Some(ms) = series.timestamp_ms {
                    if om {
                        page.push_str(&format!(" {}.{:03}", ms / 1000, ms % 1000));
                    } else {
                        page.push_str(&format!(" {ms}"));
                    }
                }
                if om && series.exemplar && matches!(suffix, "_total" | "_bucket") {
                    page.push_str(" # {trace_id=\"4bf92f3577b34da6\"} 0.5 1520879607.789");
                }
                page.push('\n');
                expected.push(Expected {
                    name: metric,
                    kind,
                    labels,
                    value: Value(value),
                    timestamp_ms: series.timestamp_ms,
                });
            }
        }
    }
    if om {
        page.push_str("# EOF\n");
    }
    (page, expected)
}

fn read_back(exposition: &Exposition<'_>) -> Vec<Expected> {
    exposition
        .samples()
        .map(|(family, sample)| Expected {
            name: family.metric_name(sample.suffix),
            kind: family.kind,
            labels: sample
                .labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_string()))
                .collect(),
            value: Value(sample.value),
            timestamp_ms: sample.timestamp_ms,
        })
        .collect()
}

/// Whether a family of `kind` may hold samples with `suffix` in either format.
fn kind_allows(kind: FamilyKind, suffix: Suffix) -> bool {
    use Suffix::*;
    match kind {
        FamilyKind::Counter => matches!(suffix, None | Total | Created),
        FamilyKind::Gauge | FamilyKind::StateSet | FamilyKind::Unknown => suffix == None,
        FamilyKind::Histogram => matches!(suffix, Bucket | Count | Sum | Created),
        FamilyKind::GaugeHistogram => matches!(suffix, Bucket | GCount | GSum),
        FamilyKind::Summary => matches!(suffix, None | Count | Sum | Created),
        FamilyKind::Info => suffix == Info,
    }
}

/// What must hold of any page either parser accepted, however odd: every sample is named by its
/// family and suffix as a metric name written on the page, with valid, unique label names.
fn check_accepted(input: &[u8], exposition: &Exposition<'_>) -> Result<(), TestCaseError> {
    let page = String::from_utf8_lossy(input);
    let lines = input.iter().filter(|&&b| b == b'\n').count() + 1;
    prop_assert!(exposition.sample_count() + exposition.duplicates <= lines);
    for (family, sample) in exposition.samples() {
        let name = family.metric_name(sample.suffix);
        prop_assert!(is_metric_name(&name), "{name:?}");
        prop_assert!(page.contains(&name), "{name:?} is not on the page");
        prop_assert!(
            kind_allows(family.kind, sample.suffix),
            "{name}: {:?}",
            family.kind
        );
        let mut names = BTreeSet::new();
        for (label, _) in &sample.labels {
            prop_assert!(is_label_name(label), "{label:?}");
            prop_assert!(names.insert(*label), "{label:?} twice");
        }
    }
    Ok(())
}

fn parse_anything(input: &[u8]) -> Result<(), TestCaseError> {
    for format in [Format::Text, Format::OpenMetrics] {
        match parse(input, format) {
            Ok(exposition) => check_accepted(input, &exposition)?,
            Err(error) => {
                prop_assert!(error.line >= 1);
                prop_assert!(!error.message.is_empty());
            }
        }
    }
    Ok(())
}

/// A change to a page.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    DuplicateLine(Index),
}

/// The bytes mutations write: the grammar's own, a few letters and digits, and invalid UTF-8.
const SPECIAL: &[u8] = b"\"\\\n{}=, #\t_:.+-eE0129aHELPTYPEUNITOFInfNa\xff\xc3";

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = proptest::sample::select(SPECIAL);
    prop_oneof![
        (any::<Index>(), byte.clone()).prop_map(|(at, b)| Mutation::Replace(at, b)),
        (any::<Index>(), byte).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        any::<Index>().prop_map(Mutation::DuplicateLine),
    ]
}

fn mutate(page: &mut Vec<u8>, mutation: &Mutation) {
    if page.is_empty() {
        return;
    }
    match mutation {
        Mutation::Replace(at, b) => {
            let at = at.index(page.len());
            page[at] = *b;
        }
        Mutation::Insert(at, b) => page.insert(at.index(page.len() + 1), *b),
        Mutation::Delete(at) => {
            page.remove(at.index(page.len()));
        }
        Mutation::Truncate(at) => page.truncate(at.index(page.len())),
        Mutation::DuplicateLine(at) => {
            let at = at.index(page.len());
            let start = page[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let end = page[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(page.len(), |i| at + i + 1);
            let line = page[start..end].to_vec();
            page.splice(end..end, line);
        }
    }
}

fn any_format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Text), Just(Format::OpenMetrics)]
}

fn model_and_format() -> impl Strategy<Value = (Vec<FamilyModel>, Format)> {
    any_format().prop_flat_map(|format| (page_model(format), Just(format)))
}

/// Tokens of both grammars, for soups that get past the first byte more often than noise does.
const TOKENS: &[&str] = &[
    "# ",
    "HELP ",
    "TYPE ",
    "UNIT ",
    "# EOF",
    "\n",
    " ",
    "\t",
    "{",
    "}",
    "=",
    ",",
    "\"",
    "\\",
    "\\n",
    "\\\"",
    "foo",
    "foo_total",
    "foo_bucket",
    "foo_count",
    "foo_sum",
    "foo_created",
    "foo_info",
    "le",
    "quantile",
    "counter",
    "gauge",
    "histogram",
    "summary",
    "info",
    "stateset",
    "gaugehistogram",
    "untyped",
    "unknown",
    "1",
    "-1.5e3",
    "+Inf",
    "NaN",
    "1520879607.789",
    "#",
    "\u{e9}",
    "\u{1F600}",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        parse_anything(&input)?;
    }

    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..60)) {
        parse_anything(tokens.concat().as_bytes())?;
    }

    #[test]
    fn generated_pages_read_back_exactly((model, format) in model_and_format()) {
        let (page, expected) = render(&model, format);
        let exposition = parse(page.as_bytes(), format)
            .map_err(|error| TestCaseError::fail(format!("{error}\n{page}")))?;
        prop_assert_eq!(exposition.duplicates, 0);
        prop_assert_eq!(read_back(&exposition), expected, "{}", page);
        for (family, model) in exposition.families.iter().zip(&model) {
            let help = model.help.as_deref().unwrap_or("");
            // The text format's blanks before the HELP text are a separator, as in Prometheus.
            let help = match format {
                Format::Text => help.trim_start_matches([' ', '\t']),
                Format::OpenMetrics => help,
            };
            prop_assert_eq!(family.help.as_ref(), help);
            prop_assert_eq!(family.unit, if model.unit { "seconds" } else { "" });
        }
        check_accepted(page.as_bytes(), &exposition)?;
    }

    #[test]
    fn duplicated_lines_are_dropped_and_counted((model, format) in model_and_format(), at in any::<Index>()) {
        let (page, expected) = render(&model, format);
        let lines: Vec<&str> = page.lines().collect();
        let at = at.index(lines.len());
        let mut doubled: Vec<&str> = lines.clone();
        doubled.insert(at, lines[at]);
        let doubled = doubled.join("\n") + "\n";
        let Ok(exposition) = parse(doubled.as_bytes(), format) else {
            // A metadata line or `# EOF` twice is an error; that is covered elsewhere.
            prop_assert!(lines[at].starts_with('#'));
            return Ok(());
        };
        prop_assert_eq!(read_back(&exposition), expected);
        let sample_line = !lines[at].starts_with('#');
        prop_assert_eq!(exposition.duplicates, usize::from(sample_line));
    }

    #[test]
    fn mutated_pages_never_panic(
        (model, format) in model_and_format(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let (page, _) = render(&model, format);
        let mut page = page.into_bytes();
        for mutation in &mutations {
            mutate(&mut page, mutation);
        }
        parse_anything(&page)?;
    }
}
