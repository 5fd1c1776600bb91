//! The text rules of the exposition formats: valid names, escaping, number formatting, and reading
//! a rendered series back into its labels (what remote write and stale markers need).
//!
//! The name rules are `periscope_plugin_api::names`. An invalid name is not refused here: every
//! invalid character becomes `_` (a leading digit gets a `_` in front), and the caller counts it.

use std::borrow::Cow;

use periscope_plugin_api::names::{
    is_label_name, is_label_name_char, is_metric_name, is_metric_name_char,
};

/// `name` made into a valid metric name; borrowed when it already is one.
pub fn sanitize_metric_name(name: &str) -> Cow<'_, str> {
    if is_metric_name(name) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(sanitize(name, is_metric_name_char))
}

/// `name` made into a valid label name; borrowed when it already is one.
pub fn sanitize_label_name(name: &str) -> Cow<'_, str> {
    if is_label_name(name) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(sanitize(name, is_label_name_char))
}

/// `name` with every character `allowed` refuses replaced by `_`, and a `_` in front when it is
/// empty or starts with a digit (which every name may hold, but not first).
fn sanitize(name: &str, allowed: fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| match u8::try_from(c) {
        Ok(b) if allowed(b) => c,
        _ => '_',
    }));
    out
}

/// Appends `value` escaped as a label value (`\` → `\\`, `"` → `\"`, newline → `\n`), the same in
/// both formats.
pub fn push_label_value(out: &mut Vec<u8>, value: &str) {
    push_escaped(out, value, true);
}

/// Appends `help` escaped for a `# HELP` line: the text format escapes `\` and newline; OpenMetrics
/// also `"`.
pub fn push_help(out: &mut Vec<u8>, help: &str, openmetrics: bool) {
    push_escaped(out, help, openmetrics);
}

fn push_escaped(out: &mut Vec<u8>, text: &str, quote: bool) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'"' if quote => b"\\\"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// `value` cut to at most `max` bytes at a character boundary; `None` when it fits.
pub fn truncate(value: &str, max: usize) -> Option<&str> {
    if value.len() <= max {
        return None;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Some(&value[..end])
}

/// Appends a sample value: `NaN`, `+Inf`, `-Inf`, an integer when the value is one (and exactly
/// representable), otherwise the shortest decimal that reads back as the same `f64`.
pub fn push_value(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        // Exact: |value| < 2^53. `-0.0` prints as `0`, which reads back equal.
        #[allow(clippy::cast_possible_truncation)]
        let integer = value as i64;
        out.extend_from_slice(itoa::Buffer::new().format(integer).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    }
}

/// A rendered series (`name{a="x",b="y"}`, as this crate writes it) read back into its metric name
/// and its label pairs, unescaped. `None` if the text is not in that shape.
pub fn parse_series(text: &str) -> Option<(String, Vec<(String, String)>)> {
    let Some(open) = text.find('{') else {
        return Some((text.to_owned(), Vec::new()));
    };
    let name = text[..open].to_owned();
    let mut rest = text[open + 1..].strip_suffix('}')?;
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let eq = rest.find("=\"")?;
        let label = rest[..eq].to_owned();
        rest = &rest[eq + 2..];
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((label, value));
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some((name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn invalid_names_are_sanitized() {
        assert_eq!(sanitize_metric_name("kube.node-ready"), "kube_node_ready");
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert_eq!(sanitize_metric_name(""), "_");
        assert_eq!(
            sanitize_label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        assert_eq!(sanitize_label_name("é"), "_");
        assert!(matches!(sanitize_label_name("ok"), Cow::Borrowed(_)));
    }

    #[test]
    fn label_values_and_help_are_escaped_per_format() {
        assert_eq!(
            text(|o| push_label_value(o, "a\\b\"c\nd")),
            "a\\\\b\\\"c\\nd"
        );
        assert_eq!(text(|o| push_help(o, "a\\b\"c\nd", false)), "a\\\\b\"c\\nd");
        assert_eq!(
            text(|o| push_help(o, "a\\b\"c\nd", true)),
            "a\\\\b\\\"c\\nd"
        );
        assert_eq!(text(|o| push_label_value(o, "ünï €")), "ünï €");
    }

    #[test]
    fn values_are_short_and_exact() {
        let cases = [
            (1.0, "1"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (1e300, "1e300"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1000000000000000.0"),
            (1.5e-7, "1.5e-7"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (-2.25, "-2.25"),
        ];
        for (value, expected) in cases {
            assert_eq!(text(|o| push_value(o, value)), expected);
            if !value.is_nan() {
                let back: f64 = expected.replace("+Inf", "inf").parse().unwrap();
                assert_eq!(back, value);
            }
        }
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("abc", 3), None);
        assert_eq!(truncate("abcd", 3), Some("abc"));
        assert_eq!(truncate("aéb", 2), Some("a"));
    }

    #[test]
    fn a_rendered_series_reads_back() {
        let mut line = b"m{a=\"".to_vec();
        push_label_value(&mut line, "x\"y\\z\nw,}=");
        line.extend_from_slice(b"\",b=\"\"}");
        let line = String::from_utf8(line).unwrap();
        assert_eq!(
            parse_series(&line).unwrap(),
            (
                "m".to_owned(),
                vec![
                    ("a".to_owned(), "x\"y\\z\nw,}=".to_owned()),
                    ("b".to_owned(), String::new())
                ]
            )
        );
        assert_eq!(parse_series("up").unwrap(), ("up".to_owned(), vec![]));
        assert!(parse_series("m{a=\"x").is_none());
    }
}
