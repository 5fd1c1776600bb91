//! Turning field values into sample values and label values.
//!
//! Kubernetes writes numbers in many ways: JSON numbers, quantities (`"2Gi"`, `"500m"`), booleans
//! and condition statuses (`true`, `"True"`), percentages (`"50%"`), RFC 3339 times. [`to_number`]
//! reads them all under [`Convert::Auto`], or forces one reading. [`write_label`] turns any value
//! into label text.

use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// How a field value becomes a number (the `convert` key of a metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Convert {
    /// Whatever the value looks like: a number, a boolean, a quantity, a percentage or a time.
    #[default]
    Auto,
    /// A JSON number or a string holding a plain number.
    Number,
    /// A JSON boolean or `"true"`/`"false"`/`"yes"`/`"no"` (any case of the first letter).
    Bool,
    /// A Kubernetes quantity (`"2Gi"`, `"500m"`, `"1e3"`) or a JSON number.
    Quantity,
    /// An RFC 3339 time, as Unix seconds.
    Timestamp,
    /// A percentage (`"50%"` is `0.5`).
    Percent,
}

impl Convert {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Convert::Auto => "auto",
            Convert::Number => "number",
            Convert::Bool => "bool",
            Convert::Quantity => "quantity",
            Convert::Timestamp => "timestamp",
            Convert::Percent => "percent",
        }
    }
}

/// A value that could not be read as a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not {expected}")]
pub struct ValueError {
    /// The value, as compact JSON (strings in quotes).
    pub value: String,
    /// What was expected (`a number`, `a quantity`, …).
    pub expected: &'static str,
}

/// Reads `value` as a number the way `convert` says.
///
/// ```
/// use periscope_scraper::value::{to_number, Convert};
/// use serde_json::json;
///
/// assert_eq!(to_number(&json!("2Gi"), Convert::Auto), Ok(2147483648.0));
/// assert_eq!(to_number(&json!("True"), Convert::Auto), Ok(1.0));
/// assert_eq!(to_number(&json!("50%"), Convert::Percent), Ok(0.5));
/// ```
pub fn to_number(value: &Value, convert: Convert) -> Result<f64, ValueError> {
    let number = match (convert, value) {
        (Convert::Auto | Convert::Number | Convert::Quantity, Value::Number(n)) => n.as_f64(),
        (Convert::Auto | Convert::Bool, Value::Bool(b)) => Some(f64::from(u8::from(*b))),
        (Convert::Auto, Value::String(s)) => parse_auto(s),
        (Convert::Number, Value::String(s)) => parse_plain_number(s),
        (Convert::Bool, Value::String(s)) => parse_bool(s),
        (Convert::Quantity, Value::String(s)) => parse_quantity(s),
        (Convert::Timestamp, Value::String(s)) => parse_timestamp(s),
        (Convert::Percent, Value::String(s)) => parse_percent(s),
        _ => None,
    };
    number.ok_or_else(|| ValueError {
        value: value.to_string(),
        expected: expected(convert),
    })
}

fn expected(convert: Convert) -> &'static str {
    match convert {
        Convert::Auto | Convert::Number => "a number",
        Convert::Bool => "a boolean",
        Convert::Quantity => "a quantity",
        Convert::Timestamp => "an RFC 3339 timestamp",
        Convert::Percent => "a percentage",
    }
}

fn parse_auto(s: &str) -> Option<f64> {
    parse_bool(s)
        .or_else(|| parse_percent(s))
        .or_else(|| parse_quantity(s))
        .or_else(|| parse_timestamp(s))
}

/// Reads `"true"`, `"True"`, `"yes"` as `1` and `"false"`, `"False"`, `"no"` as `0`.
pub fn parse_bool(s: &str) -> Option<f64> {
    match s {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" => Some(1.0),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" => Some(0.0),
        _ => None,
    }
}

/// Reads a plain decimal number (`"-1"`, `"1.5"`, `"1e-3"`); no units, no `inf` or `NaN`.
pub fn parse_plain_number(s: &str) -> Option<f64> {
    let valid = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if valid { s.parse().ok() } else { None }
}

/// Reads a percentage: `"50%"` is `0.5`, `"12.5 %"` is `0.125`.
pub fn parse_percent(s: &str) -> Option<f64> {
    let number = s.strip_suffix('%')?.trim_end();
    let mantissa = split_mantissa(number)?;
    if mantissa.len() != number.len() {
        return None;
    }
    // Shifting the decimal exponent keeps the result correctly rounded (`"7%"` is exactly `0.07`).
    format!("{mantissa}e-2").parse().ok()
}

/// Reads an RFC 3339 time (`"2024-05-01T10:00:00.5Z"`) as Unix seconds, fraction kept.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let timestamp: jiff::Timestamp = s.parse().ok()?;
    Some(timestamp.as_second() as f64 + f64::from(timestamp.subsec_nanosecond()) / 1e9)
}

/// Reads a Kubernetes quantity: a signed decimal number followed by a binary suffix (`Ki` `Mi` `Gi`
/// `Ti` `Pi` `Ei`), a decimal suffix (`n` `u` `m` `k` `M` `G` `T` `P` `E`) or an exponent (`e3`,
/// `E-2`), or nothing.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let mantissa = split_mantissa(s)?;
    let suffix = &s[mantissa.len()..];
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(shift) = binary {
        let number: f64 = mantissa.parse().ok()?;
        return Some(number * f64::from(2u32).powi(shift));
    }
    let exponent: i32 = match suffix {
        "" => 0,
        "n" => -9,
        "u" => -6,
        "m" => -3,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        _ => {
            let digits = suffix.strip_prefix(['e', 'E'])?;
            let body = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()?
        }
    };
    // Parsing `<mantissa>e<exponent>` rounds once, so `"500m"` is exactly `0.5`.
    format!("{mantissa}e{exponent}").parse().ok()
}

/// The leading signed decimal number of `s` (`"-1.5"` of `"-1.5Gi"`), if it has one.
fn split_mantissa(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    let mut end = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let mut digits = 0;
    let mut dot = false;
    while let Some(&b) = bytes.get(end) {
        if b.is_ascii_digit() {
            digits += 1;
        } else if b == b'.' && !dot {
            dot = true;
        } else {
            break;
        }
        end += 1;
    }
    (digits > 0).then(|| &s[..end])
}

/// Appends the label text of `value` to `out`: strings as they are, numbers and booleans as their
/// JSON text, `null` as nothing, lists and maps as compact JSON.
pub fn write_label(value: &Value, out: &mut String) {
    use fmt::Write;
    match value {
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        // Writing into a String cannot fail.
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// The label text of `value` (see [`write_label`]).
pub fn label_text(value: &Value) -> String {
    let mut out = String::new();
    write_label(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auto(value: Value) -> Option<f64> {
        to_number(&value, Convert::Auto).ok()
    }

    #[test]
    fn json_numbers_are_themselves() {
        assert_eq!(auto(json!(3)), Some(3.0));
        assert_eq!(auto(json!(-2.5)), Some(-2.5));
    }

    #[test]
    fn booleans_and_condition_statuses_are_one_or_zero() {
        assert_eq!(auto(json!(true)), Some(1.0));
        assert_eq!(auto(json!(false)), Some(0.0));
        assert_eq!(auto(json!("True")), Some(1.0));
        assert_eq!(auto(json!("true")), Some(1.0));
        assert_eq!(auto(json!("yes")), Some(1.0));
        assert_eq!(auto(json!("False")), Some(0.0));
        assert_eq!(auto(json!("false")), Some(0.0));
        assert_eq!(auto(json!("no")), Some(0.0));
        assert_eq!(auto(json!("Unknown")), None);
    }

    #[test]
    fn quantities_read_every_suffix() {
        let cases = [
            ("2Gi", 2.0 * 1024.0 * 1024.0 * 1024.0),
            ("0.5Gi", 536_870_912.0),
            ("1Ki", 1024.0),
            ("3Mi", 3.0 * 1024.0 * 1024.0),
            ("1Ti", 1024f64.powi(4)),
            ("1Pi", 1024f64.powi(5)),
            ("1Ei", 1024f64.powi(6)),
            ("500m", 0.5),
            ("250u", 0.00025),
            ("7n", 7e-9),
            ("100k", 100_000.0),
            ("4M", 4e6),
            ("16G", 16e9),
            ("2T", 2e12),
            ("1P", 1e15),
            ("1E", 1e18),
            ("1.5", 1.5),
            ("-1", -1.0),
            ("+3", 3.0),
            (".5", 0.5),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("1e-3", 0.001),
            ("2.5e+2", 250.0),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_quantity(text), Some(expected), "{text}");
            assert_eq!(auto(json!(text)), Some(expected), "{text}");
        }
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for text in [
            "", "Gi", "1Gb", "1 Gi", "1e", "1e+", "1.2.3", "-", "1ki", "1e3Gi",
        ] {
            assert_eq!(parse_quantity(text), None, "{text}");
        }
    }

    #[test]
    fn percentages_are_fractions() {
        assert_eq!(auto(json!("50%")), Some(0.5));
        assert_eq!(auto(json!("7%")), Some(0.07));
        assert_eq!(auto(json!("12.5 %")), Some(0.125));
        assert_eq!(auto(json!("-10%")), Some(-0.1));
        assert_eq!(parse_percent("%"), None);
        assert_eq!(parse_percent("5k%"), None);
    }

    #[test]
    fn rfc3339_times_are_unix_seconds_with_fraction() {
        assert_eq!(auto(json!("1970-01-01T00:01:00Z")), Some(60.0));
        assert_eq!(
            auto(json!("2024-05-01T10:00:00.25Z")),
            Some(1_714_557_600.25)
        );
        assert_eq!(
            auto(json!("2024-05-01T12:00:00+02:00")),
            Some(1_714_557_600.0)
        );
        assert_eq!(parse_timestamp("2024-05-01"), None);
    }

    #[test]
    fn anything_else_is_an_error_naming_the_value() {
        let err = to_number(&json!("lots"), Convert::Auto).unwrap_err();
        assert_eq!(err.to_string(), "\"lots\" is not a number");
        assert!(to_number(&json!(null), Convert::Auto).is_err());
        assert!(to_number(&json!({"a": 1}), Convert::Auto).is_err());
        assert!(to_number(&json!([1]), Convert::Auto).is_err());
    }

    #[test]
    fn forced_conversions_accept_only_their_kind() {
        assert_eq!(to_number(&json!("-1"), Convert::Number), Ok(-1.0));
        assert_eq!(to_number(&json!("1e-3"), Convert::Number), Ok(0.001));
        assert_eq!(to_number(&json!(4), Convert::Number), Ok(4.0));
        assert!(to_number(&json!("2Gi"), Convert::Number).is_err());
        assert!(to_number(&json!("inf"), Convert::Number).is_err());
        assert!(to_number(&json!(true), Convert::Number).is_err());

        assert_eq!(to_number(&json!("yes"), Convert::Bool), Ok(1.0));
        assert!(to_number(&json!("1"), Convert::Bool).is_err());

        assert_eq!(
            to_number(&json!("0.5Gi"), Convert::Quantity),
            Ok(536_870_912.0)
        );
        assert_eq!(to_number(&json!(2), Convert::Quantity), Ok(2.0));
        assert!(to_number(&json!("50%"), Convert::Quantity).is_err());

        assert_eq!(
            to_number(&json!("1970-01-01T00:00:01.5Z"), Convert::Timestamp),
            Ok(1.5)
        );
        let err = to_number(&json!("1"), Convert::Timestamp).unwrap_err();
        assert_eq!(err.to_string(), "\"1\" is not an RFC 3339 timestamp");

        assert_eq!(to_number(&json!("50%"), Convert::Percent), Ok(0.5));
        assert!(to_number(&json!("50"), Convert::Percent).is_err());
        assert!(to_number(&json!("True"), Convert::Percent).is_err());
    }

    #[test]
    fn label_text_keeps_strings_and_writes_the_rest_as_json() {
        assert_eq!(label_text(&json!("node-1")), "node-1");
        assert_eq!(label_text(&json!(1500)), "1500");
        assert_eq!(label_text(&json!(1.5)), "1.5");
        assert_eq!(label_text(&json!(true)), "true");
        assert_eq!(label_text(&json!(null)), "");
        assert_eq!(label_text(&json!({"a": [1, "b"]})), r#"{"a":[1,"b"]}"#);
    }
}
