//! Reading a metrics page (Prometheus text format 0.0.4) back into series, to check that both
//! tools serve the same thing.
//!
//! A series is its name and label set. Labels with an empty value are dropped when reading: to
//! Prometheus an empty label is the same as a missing one, and the two tools differ only there
//! (kube-state-metrics leaves out a label whose path reaches nothing; Periscope writes it empty).

use std::collections::{BTreeMap, BTreeSet};

/// One series: the metric name and its non-empty labels in name order.
pub type SeriesKey = (String, BTreeMap<String, String>);

/// The samples of a page whose names start with a prefix.
#[derive(Debug, Default)]
pub struct Page {
    /// Series → value.
    pub samples: BTreeMap<SeriesKey, f64>,
}

/// How many sample lines of `text` start with `prefix` (a cheap completeness probe).
pub fn count_samples(text: &[u8], prefix: &str) -> usize {
    text.split(|&b| b == b'\n')
        .filter(|line| line.starts_with(prefix.as_bytes()))
        .count()
}

impl Page {
    /// Parses the sample lines of `text` whose names start with `prefix`; comments and other
    /// families are skipped. Fails on a line it cannot read or a series seen twice.
    pub fn parse(text: &str, prefix: &str) -> Result<Page, String> {
        let mut page = Page::default();
        for (number, line) in text.lines().enumerate() {
            if !line.starts_with(prefix) {
                continue;
            }
            let (key, value) =
                parse_line(line).map_err(|e| format!("line {}: {e}: {line}", number + 1))?;
            if page.samples.insert(key, value).is_some() {
                return Err(format!("line {}: series seen twice: {line}", number + 1));
            }
        }
        Ok(page)
    }
}

/// The `(namespace, name, <label>)` of every sample of `name` in `text` whose value is 1: the
/// state each object shows in a state set or an info metric.
pub fn shown_states(
    text: &str,
    name: &str,
    label: &str,
) -> Result<BTreeSet<(String, String, String)>, String> {
    Ok(labels_with_value(text, name, 1.0)?
        .into_iter()
        .map(|labels| {
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            (get("namespace"), get("name"), get(label))
        })
        .collect())
}

/// The label sets of the samples of `name` in `text` whose value is `value`. Reads only those
/// lines' labels, so it is quick enough to poll a large page with.
pub fn labels_with_value(
    text: &str,
    name: &str,
    value: f64,
) -> Result<BTreeSet<BTreeMap<String, String>>, String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with(['{', ' ']) {
            continue; // another family whose name starts with this one
        }
        let value_text = line.rsplit(' ').next().unwrap_or_default();
        if parse_value(value_text)? != value {
            continue;
        }
        let ((_, labels), _) = parse_line(line)?;
        out.insert(labels);
    }
    Ok(out)
}

/// `name{a="x",b="y"} value` → the series and its value.
fn parse_line(line: &str) -> Result<(SeriesKey, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| "no value".to_owned())?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| "no value".to_owned())?;
    let value = parse_value(value_text)?;
    Ok(((name, labels), value))
}

/// Reads `a="x",b="y"}` into `labels` (empty values dropped); returns what follows the `}`.
fn parse_labels<'a>(
    mut text: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let (name, after_name) = text
            .split_once("=\"")
            .ok_or_else(|| "a label without =\"".to_owned())?;
        let mut value = String::new();
        let mut chars = after_name.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an escape at the end".to_owned()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".to_owned()),
            }
        };
        if !value.is_empty() {
            labels.insert(name.trim().to_owned(), value);
        }
        text = &after_name[end + 1..];
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|e| format!("value {text:?}: {e}")),
    }
}

/// The differences between two pages, at most `limit` lines of each kind: series only in `a`,
/// only in `b`, and in both with different values. Empty when they agree.
pub fn diff(a_name: &str, a: &Page, b_name: &str, b: &Page, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut only = |from: &Page, other: &Page, name: &str| {
        let missing: Vec<_> = from
            .samples
            .keys()
            .filter(|key| !other.samples.contains_key(*key))
            .collect();
        if !missing.is_empty() {
            out.push(format!("{} series only in {name}, e.g.:", missing.len()));
            out.extend(
                missing
                    .iter()
                    .take(limit)
                    .map(|key| format!("  {}", show(key))),
            );
        }
    };
    only(a, b, a_name);
    only(b, a, b_name);
    let differing: Vec<_> = a
        .samples
        .iter()
        .filter_map(|(key, va)| {
            let vb = b.samples.get(key)?;
            let same = va == vb || (va.is_nan() && vb.is_nan());
            (!same).then(|| format!("  {} {a_name}={va} {b_name}={vb}", show(key)))
        })
        .collect();
    if !differing.is_empty() {
        out.push(format!(
            "{} series with different values, e.g.:",
            differing.len()
        ));
        out.extend(differing.into_iter().take(limit));
    }
    out
}

/// A series as Prometheus writes it.
pub fn show((name, labels): &SeriesKey) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}
