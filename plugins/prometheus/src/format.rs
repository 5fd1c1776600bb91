//! Content negotiation: which exposition format and which encoding a scraper gets.
//!
//! Prometheus asks for OpenMetrics first
//! (`application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`);
//! anything else, or nothing, gets the text format 0.0.4, which every scraper reads.

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics text, version 1.0.0 (or 0.0.1 when that is what was asked; same syntax).
    OpenMetrics {
        /// Whether the scraper asked for version 0.0.1 rather than 1.0.0.
        v0_0_1: bool,
    },
}

impl Format {
    /// The response's `Content-Type`, naming the format served.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics { v0_0_1: false } => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
            Format::OpenMetrics { v0_0_1: true } => {
                "application/openmetrics-text; version=0.0.1; charset=utf-8"
            }
        }
    }

    /// Whether this is OpenMetrics.
    pub fn is_openmetrics(self) -> bool {
        matches!(self, Format::OpenMetrics { .. })
    }
}

/// One element of an `Accept` or `Accept-Encoding` list: the value, its parameters, and its `q`.
struct Element<'a> {
    value: &'a str,
    params: Vec<(&'a str, &'a str)>,
    q: f32,
}

fn elements(header: &str) -> impl Iterator<Item = Element<'_>> {
    header.split(',').filter_map(|part| {
        let mut pieces = part.split(';').map(str::trim);
        let value = pieces.next().filter(|v| !v.is_empty())?;
        let mut q = 1.0;
        let mut params = Vec::new();
        for param in pieces {
            let (key, val) = param.split_once('=').unwrap_or((param, ""));
            let (key, val) = (key.trim(), val.trim().trim_matches('"'));
            if key.eq_ignore_ascii_case("q") {
                q = val.parse().unwrap_or(0.0);
            } else {
                params.push((key, val));
            }
        }
        Some(Element { value, params, q })
    })
}

/// The format to serve for an `Accept` header (absent = text 0.0.4). The acceptable choice with
/// the highest `q` wins; on a tie, the one listed first.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut best: Option<(f32, Format)> = None;
    for element in elements(accept) {
        let version = element
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("version"))
            .map(|(_, v)| *v);
        let format = if element
            .value
            .eq_ignore_ascii_case("application/openmetrics-text")
        {
            match version {
                None | Some("1.0.0") => Format::OpenMetrics { v0_0_1: false },
                Some("0.0.1") => Format::OpenMetrics { v0_0_1: true },
                Some(_) => continue,
            }
        } else if element.value.eq_ignore_ascii_case("text/plain") {
            match version {
                None | Some("0.0.4") => Format::Text,
                Some(_) => continue,
            }
        } else if element.value == "*/*" || element.value.eq_ignore_ascii_case("text/*") {
            Format::Text
        } else {
            continue;
        };
        if element.q > 0.0 && best.is_none_or(|(q, _)| element.q > q) {
            best = Some((element.q, format));
        }
    }
    best.map_or(Format::Text, |(_, format)| format)
}

/// Whether an `Accept-Encoding` header allows gzip.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(header) = accept_encoding else {
        return false;
    };
    let mut star = false;
    for element in elements(header) {
        if element.value.eq_ignore_ascii_case("gzip")
            || element.value.eq_ignore_ascii_case("x-gzip")
        {
            return element.q > 0.0;
        }
        if element.value == "*" {
            star = element.q > 0.0;
        }
    }
    star
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_2: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn prometheus_gets_openmetrics() {
        assert_eq!(
            negotiate(Some(PROMETHEUS_2)),
            Format::OpenMetrics { v0_0_1: false }
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=0.0.1")),
            Format::OpenMetrics { v0_0_1: true }
        );
    }

    #[test]
    fn everything_else_gets_text() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        assert_eq!(negotiate(Some("application/json")), Format::Text);
        assert_eq!(
            negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Format::Text
        );
        assert_eq!(negotiate(Some("garbage;;;q=x,,")), Format::Text);
    }

    #[test]
    fn q_values_decide() {
        assert_eq!(
            negotiate(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0,text/plain")),
            Format::Text
        );
        assert_eq!(
            negotiate(Some("text/plain;q=0.2,application/openmetrics-text;q=0.3")),
            Format::OpenMetrics { v0_0_1: false }
        );
    }

    #[test]
    fn content_types_name_the_format() {
        assert!(Format::Text.content_type().contains("version=0.0.4"));
        assert!(
            Format::OpenMetrics { v0_0_1: false }
                .content_type()
                .starts_with("application/openmetrics-text; version=1.0.0")
        );
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("*, gzip;q=0")));
        assert!(!accepts_gzip(None));
    }
}
