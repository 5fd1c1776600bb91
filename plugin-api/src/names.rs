//! The rules for metric and label names, in one place for the scraper (which reads and checks
//! them), the host's config checks and the exporters (which write them).
//!
//! These are the "legacy" Prometheus rules that every Prometheus version and both text formats
//! (0.0.4 and OpenMetrics 1.0) accept: a metric name matches `[a-zA-Z_:][a-zA-Z0-9_:]*`, a label
//! name `[a-zA-Z_][a-zA-Z0-9_]*`. Label names starting with `__` are reserved for Prometheus'
//! own use ([`is_reserved_label_name`]).

/// Whether `b` may start a metric name: an ASCII letter, `_` or `:`.
pub const fn is_metric_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

/// Whether `b` may continue a metric name: an ASCII letter or digit, `_` or `:`.
pub const fn is_metric_name_char(b: u8) -> bool {
    is_metric_name_start(b) || b.is_ascii_digit()
}

/// Whether `b` may start a label name: an ASCII letter or `_`.
pub const fn is_label_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// Whether `b` may continue a label name: an ASCII letter or digit, or `_`.
pub const fn is_label_name_char(b: u8) -> bool {
    is_label_name_start(b) || b.is_ascii_digit()
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(is_metric_name_start) && bytes.all(is_metric_name_char)
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`). Reserved names (`__…`)
/// pass: see [`is_reserved_label_name`].
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(is_label_name_start) && bytes.all(is_label_name_char)
}

/// Whether `name` is reserved for Prometheus' own labels (it starts with `__`, like `__name__`):
/// a label a user configures must not be one.
pub fn is_reserved_label_name(name: &str) -> bool {
    name.starts_with("__")
}

/// Whether a user may give a label this name (in a config): valid and not reserved.
pub fn is_user_label_name(name: &str) -> bool {
    is_label_name(name) && !is_reserved_label_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_may_hold_colons_and_digits_after_the_start() {
        for good in ["a", "_", ":", "a:b_c9", "kubevirt_vmi_phase_total", "A"] {
            assert!(is_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a.b", "é", "a b"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
    }

    #[test]
    fn label_names_hold_no_colons() {
        for good in ["a", "_a9", "__name__", "le"] {
            assert!(is_label_name(good), "{good}");
        }
        for bad in ["", "9a", "a:b", ":", "app.kubernetes.io/name", "ü"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn double_underscore_names_are_reserved() {
        assert!(is_reserved_label_name("__name__"));
        assert!(is_reserved_label_name("__x"));
        assert!(!is_reserved_label_name("_x"));
        assert!(is_user_label_name("_x"));
        assert!(!is_user_label_name("__x"));
        assert!(!is_user_label_name("a-b"));
    }
}
