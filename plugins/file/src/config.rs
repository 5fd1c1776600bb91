//! The file exporter's options: the `config` table of its `[[exporters]]` entry.
//!
//! ```toml
//! config = { path = "out/samples.ndjson", max_bytes = "64MiB", max_files = 5, fsync = "always" }
//! ```

use std::path::PathBuf;

use periscope_plugin_api::config::ByteSize;
use serde::Deserialize;

/// Options of the file exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The NDJSON file written to; its parent directory is created if missing.
    pub path: PathBuf,
    /// The size the file may reach before it is rotated.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// How many rotated files (`path.1` … `path.N`) are kept; `0` keeps none.
    #[serde(default = "default_max_files")]
    pub max_files: u32,
    /// When written data is forced to disk.
    #[serde(default)]
    pub fsync: Fsync,
}

/// When the exporter forces written data to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// After every export, before it reports success: nothing acknowledged is lost in a crash.
    #[default]
    Always,
    /// Never explicitly (the OS writes back in its own time); only `flush` and `shutdown` sync.
    Never,
}

fn default_max_bytes() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_max_files() -> u32 {
    5
}

/// What is wrong with the options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A size limit out of its range (1 byte to 1 TiB).
    #[error("`max_bytes`: {0}")]
    MaxBytes(String),
    /// A path that ends in no file name (`/`, `..`).
    #[error("`path` {} does not name a file", .0.display())]
    NoFileName(PathBuf),
}

impl FileConfig {
    /// Checks what serde cannot: a usable size limit and a file name to write to.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.max_bytes
            .check_range(1, 1 << 40)
            .map_err(ConfigError::MaxBytes)?;
        if self.path.file_name().is_none() {
            return Err(ConfigError::NoFileName(self.path.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::parse;

    #[test]
    fn only_path_is_required() {
        let config: FileConfig = parse("path = \"out/x.ndjson\"").unwrap();
        assert_eq!(config.path, PathBuf::from("out/x.ndjson"));
        assert_eq!(config.max_bytes, ByteSize(64 * 1024 * 1024));
        assert_eq!(config.max_files, 5);
        assert_eq!(config.fsync, Fsync::Always);
    }

    #[test]
    fn every_option_can_be_set() {
        let config: FileConfig =
            parse("path = \"a\"\nmax_bytes = \"1KiB\"\nmax_files = 2\nfsync = \"never\"").unwrap();
        assert_eq!(config.max_bytes, ByteSize(1024));
        assert_eq!(config.max_files, 2);
        assert_eq!(config.fsync, Fsync::Never);
    }

    #[test]
    fn unknown_keys_and_values_are_errors() {
        let err = parse::<FileConfig>("path = \"a\"\nmax_byte = 1").unwrap_err();
        assert_eq!(err.key, "max_byte");
        let err = parse::<FileConfig>("path = \"a\"\nfsync = \"sometimes\"").unwrap_err();
        assert_eq!(err.key, "fsync");
        assert!(parse::<FileConfig>("max_files = 1").is_err());
    }

    #[test]
    fn validation_rejects_a_zero_size_and_a_path_without_a_file_name() {
        let mut config: FileConfig = parse("path = \"a\"\nmax_bytes = 0").unwrap();
        assert!(matches!(config.validate(), Err(ConfigError::MaxBytes(_))));
        config.max_bytes = ByteSize(1);
        config.path = PathBuf::from("/");
        assert_eq!(
            config.validate(),
            Err(ConfigError::NoFileName(PathBuf::from("/")))
        );
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "`path` / does not name a file"
        );
    }
}
