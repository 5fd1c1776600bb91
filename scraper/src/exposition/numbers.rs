//! Sample values and timestamps.

/// The longest run of digits whose value an `f64` holds exactly (10^15 < 2^53).
const EXACT_DIGITS: usize = 15;

/// A sample value: a float as Go's `strconv.ParseFloat` reads it, including `NaN`, `Inf`, `+Inf`,
/// `-Inf` (any case, also `infinity`). A finite number too large for an `f64` is refused, as Go
/// refuses it, rather than read as infinity.
pub(super) fn parse_value(token: &str) -> Option<f64> {
    if let Some(value) = parse_small_integer(token) {
        return Some(value);
    }
    let value: f64 = token.parse().ok()?;
    if value.is_infinite() && !token.bytes().any(|b| b == b'i' || b == b'I') {
        return None;
    }
    Some(value)
}

/// Integers of up to 15 digits, with an optional `-`: most values on most pages, read without the
/// general float parser.
fn parse_small_integer(token: &str) -> Option<f64> {
    let bytes = token.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > EXACT_DIGITS {
        return None;
    }
    let mut number: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        number = number * 10 + u64::from(digit - b'0');
    }
    // Exact: the number is below 2^53.
    let value = number as f64;
    Some(if negative { -value } else { value })
}

/// A text-format timestamp: integer milliseconds since the epoch.
pub(super) fn parse_text_timestamp(token: &str) -> Option<i64> {
    token.parse().ok()
}

/// An OpenMetrics timestamp: float seconds since the epoch, in milliseconds (rounded to the
/// nearest). Not a number, infinite, or out of the range of `i64` milliseconds: `None`.
pub(super) fn parse_openmetrics_timestamp(token: &str) -> Option<i64> {
    let seconds = parse_value(token)?;
    let millis = (seconds * 1000.0).round();
    // i64::MAX as f64 rounds up to 2^63, which is out of range itself.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&millis) {
        return None;
    }
    Some(millis as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_go_reads_them() {
        assert_eq!(parse_value("0"), Some(0.0));
        assert_eq!(parse_value("-12"), Some(-12.0));
        assert_eq!(parse_value("1.5e3"), Some(1500.0));
        assert_eq!(parse_value(".5"), Some(0.5));
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert!(parse_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(
            parse_value("9007199254740993"),
            Some(9_007_199_254_740_992.0)
        );
        assert_eq!(parse_value("-0").map(f64::is_sign_negative), Some(true));
        assert_eq!(parse_value("1e999"), None);
        assert_eq!(parse_value(""), None);
        assert_eq!(parse_value("-"), None);
        assert_eq!(parse_value("1,5"), None);
        assert_eq!(parse_value("0x10"), None);
    }

    #[test]
    fn timestamps_are_milliseconds() {
        assert_eq!(
            parse_text_timestamp("1395066363000"),
            Some(1_395_066_363_000)
        );
        assert_eq!(parse_text_timestamp("-5"), Some(-5));
        assert_eq!(parse_text_timestamp("1.5"), None);
        assert_eq!(
            parse_openmetrics_timestamp("1520879607.789"),
            Some(1_520_879_607_789)
        );
        assert_eq!(
            parse_openmetrics_timestamp("1520879607"),
            Some(1_520_879_607_000)
        );
        assert_eq!(parse_openmetrics_timestamp("1e20"), None);
        assert_eq!(parse_openmetrics_timestamp("NaN"), None);
        assert_eq!(parse_openmetrics_timestamp("+Inf"), None);
    }
}
