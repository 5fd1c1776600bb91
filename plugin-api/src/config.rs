//! Strict TOML parsing with errors that name the key, line and column.
//!
//! The host parses its own config with this, and every exporter parses the config table the host
//! hands it with this too, so a mistake reads the same wherever it is. Use
//! `#[serde(deny_unknown_fields)]` on config structs: unknown keys are errors, not silence.

use std::fmt;

use serde::de::DeserializeOwned;

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
        let key = e.path().to_string();
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

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
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
    }
}
