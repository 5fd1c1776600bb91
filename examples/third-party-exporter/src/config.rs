//! The exporter's options: the `config` table of its `[[exporters]]` entry in the host's config.
//!
//! ```toml
//! config = { path = "out/rows.csv" }
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// Options of the CSV exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
// Unknown keys are errors, so a typo is reported instead of silently ignored.
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// The CSV file rows are appended to. Its directory must exist.
    pub path: PathBuf,
    /// Whether to write a header row when the file is empty.
    #[serde(default = "yes")]
    pub header: bool,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::parse;

    #[test]
    fn path_is_required_and_typos_are_errors() {
        let config: CsvConfig = parse("path = \"rows.csv\"").unwrap();
        assert_eq!(config.path, PathBuf::from("rows.csv"));
        assert!(config.header);
        assert!(parse::<CsvConfig>("").is_err());
        assert_eq!(
            parse::<CsvConfig>("path = \"a\"\nheadr = false")
                .unwrap_err()
                .key,
            "headr"
        );
    }
}
