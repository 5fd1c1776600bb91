//! Strict TOML parsing with errors that name the key, line and column.
//!
//! The host parses its own config with this, and every exporter parses the config table the host
//! hands it with this too, so a mistake reads the same wherever it is. Use
//! `#[serde(deny_unknown_fields)]` on config structs: unknown keys are errors, not silence.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};

/// A config that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The dotted path of the key at fault (`exporters[0].queue.capacity`), empty when unknown.
    pub key: String,
    /// 1-based line of the fault in the parsed text (0 when unknown).
    pub line: usize,
    /// 1-based column of the fault in the parsed text (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, ", key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Parses `text` as TOML into `T`.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| from_toml(text, "", &e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // `toml::Spanned` fields show up in the path as a private key of serde's; the user's key
        // is the one before it.
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let key = if key == "." { String::new() } else { key };
        from_toml(text, &key, e.inner())
    })
}

/// The 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The byte span of the key at dotted path `key` (`exporters[0].config.tls.ca_file`, as
/// [`ConfigError::key`] writes it) in the TOML `text`: the key itself for a table entry, the element
/// for an array index. `None` when the text does not parse or has no such key.
pub fn key_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    let mut span = None;
    for part in key.split('.') {
        let (name, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            if let Some(DeValue::Table(inner)) = value.map(toml::Spanned::get_ref) {
                table = inner;
            } else if value.is_some() {
                return None;
            }
            let (found_key, found) = table.get_key_value(name)?;
            span = Some(found_key.span());
            value = Some(found);
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let index: usize = index.trim_end_matches(']').parse().ok()?;
            let Some(DeValue::Array(items)) = value.map(toml::Spanned::get_ref) else {
                return None;
            };
            let item = items.get(index)?;
            span = Some(item.span());
            value = Some(item);
        }
    }
    span
}

fn from_toml(text: &str, key: &str, error: &toml::de::Error) -> ConfigError {
    let (line, column) = error
        .span()
        .map_or((0, 0), |span| line_column(text, span.start));
    ConfigError {
        key: key.to_owned(),
        line,
        column,
        message: error.message().trim().to_owned(),
    }
}

/// A duration written the way people write it: `"500ms"`, `"2s"`, `"1m 30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(Duration).map_err(|e| {
            format!("invalid duration {s:?} ({e}); write it like \"500ms\", \"2s\" or \"1m\"")
        })
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Duration {
    /// `Ok` when this duration lies in `min..=max`; otherwise what to write instead. Every
    /// duration a config takes has such a range: zero, sub-millisecond and centuries-long values
    /// stop a process (a zero timer period, an instant overflow) or burn a core, so they are
    /// refused up front unless the key documents one of them as meaning "off".
    pub fn check_range(
        self,
        min: std::time::Duration,
        max: std::time::Duration,
    ) -> Result<(), String> {
        if (min..=max).contains(&self.0) {
            return Ok(());
        }
        Err(format!(
            "{:?} is out of range: write a duration from {} to {}",
            self.to_string(),
            Duration(min),
            Duration(max)
        ))
    }
}

impl ByteSize {
    /// `Ok` when this size lies in `min..=max`; otherwise what to write instead.
    pub fn check_range(self, min: u64, max: u64) -> Result<(), String> {
        if (min..=max).contains(&self.0) {
            return Ok(());
        }
        Err(format!(
            "{} is out of range: write a size from {} to {}",
            bytesize::ByteSize(self.0).display().iec(),
            bytesize::ByteSize(min).display().iec(),
            bytesize::ByteSize(max).display().iec()
        ))
    }
}

/// A size in bytes, written as a number or with a unit: `1048576`, `"64MiB"`, `"1 GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|e| format!("invalid size {s:?} ({e}); write it like \"64MiB\" or \"1GB\""))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn key_span_finds_keys_in_tables_inline_tables_and_arrays() {
        let text = "[host]\nlisten = \"x\"\n\n[[exporters]]\nname = \"a\"\n\n[[exporters]]\nname = \"b\"\nconfig = { path = \"p\", tls = { ca_file = \"c\" } }\nlist = [1, 2]\n";
        let at = |key: &str| key_span(text, key).map(|span| line_column(text, span.start));
        assert_eq!(at("host.listen"), Some((2, 1)));
        assert_eq!(at("exporters[1].name"), Some((8, 1)));
        assert_eq!(at("exporters[1].config.tls.ca_file"), Some((9, 32)));
        assert_eq!(at("exporters[1].list[1]"), Some((10, 12)));
        assert_eq!(at("exporters[1].config.nope"), None);
        assert_eq!(at("exporters[2].name"), None);
        assert_eq!(at("host.listen.deeper"), None);
        assert_eq!(key_span("not toml = = 1", "a"), None);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        size: u64,
    }

    #[test]
    fn unknown_key_is_named_with_its_position() {
        let err = parse::<Outer>("name = \"a\"\n[inner]\nsize = 1\nszie = 2\n").unwrap_err();
        assert_eq!((err.line, err.column), (4, 1));
        assert_eq!(err.key, "inner.szie");
        assert!(err.message.contains("unknown field `szie`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse::<Outer>("name = \"a\"\n[inner]\nsize = \"big\"\n").unwrap_err();
        assert_eq!(err.key, "inner.size");
        assert_eq!(err.line, 3);
        assert!(err.message.contains("invalid type"), "{err}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = parse::<Outer>("name = \n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.column > 1);
    }

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!("1m 30s".parse::<Duration>().unwrap().0.as_secs(), 90);
        assert!("soon".parse::<Duration>().is_err());
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert_eq!("1 GB".parse::<ByteSize>().unwrap().0, 1_000_000_000);
        assert!("lots".parse::<ByteSize>().is_err());
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
    }
}
