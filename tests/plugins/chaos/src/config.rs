//! The chaos exporter's options: which calls fail, how, and where accepted batches are recorded.
//!
//! ```toml
//! config = { record = "out/accepted.ndjson", panic_on_calls = [2], retry_on_calls = [3, 4],
//!            reject_on_calls = [5], fail_new = 1, export_delay_ms = 10 }
//! ```
//!
//! Call numbers are 1-based and count `export` calls in the whole process (see [`crate::fault`]).

use std::path::PathBuf;

use serde::Deserialize;

/// Options of the chaos exporter; every one is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosConfig {
    /// NDJSON file every accepted batch is appended to, one line per update.
    #[serde(default)]
    pub record: Option<PathBuf>,
    /// Export calls that panic.
    #[serde(default)]
    pub panic_on_calls: Vec<u64>,
    /// Export calls that return `Retry { after: 20ms }`.
    #[serde(default)]
    pub retry_on_calls: Vec<u64>,
    /// Every export call up to this one returns `Retry { after: 20ms }`: a target that is down
    /// for a while (0: never).
    #[serde(default)]
    pub retry_through_call: u64,
    /// Export calls that return `Reject`.
    #[serde(default)]
    pub reject_on_calls: Vec<u64>,
    /// The first `fail_new` calls of `new` in the process fail.
    #[serde(default)]
    pub fail_new: u32,
    /// Sleep this long at the start of every export call.
    #[serde(default)]
    pub export_delay_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::parse;

    #[test]
    fn an_empty_table_injects_nothing() {
        assert_eq!(parse::<ChaosConfig>("").unwrap(), ChaosConfig::default());
    }

    #[test]
    fn every_option_can_be_set_and_typos_are_errors() {
        let config: ChaosConfig = parse(
            "record = \"r.ndjson\"\npanic_on_calls = [1]\nretry_on_calls = [2, 3]\n\
             reject_on_calls = [4]\nfail_new = 2\nexport_delay_ms = 5",
        )
        .unwrap();
        assert_eq!(config.record, Some(PathBuf::from("r.ndjson")));
        assert_eq!(config.retry_on_calls, [2, 3]);
        assert_eq!(config.fail_new, 2);
        let err = parse::<ChaosConfig>("panic_on_call = [1]").unwrap_err();
        assert_eq!(err.key, "panic_on_call");
    }
}
