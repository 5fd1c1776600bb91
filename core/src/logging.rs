//! The host's log: `tracing-subscriber` in text or JSON, and the callback plugins log through.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU8, Ordering};

use abi_stable::std_types::RStr;
use periscope_plugin_api::log::{level_from_u8, level_to_u8};
use tracing::{Level, debug, error, info, trace, warn};
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(3);

/// Installs the global subscriber. `RUST_LOG` overrides the default filter (`info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let max = filter
        .max_level_hint()
        .and_then(|l| l.into_level())
        .map_or(3, level_to_u8);
    MAX_LEVEL.store(max, Ordering::Relaxed);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Fails only if a subscriber is already set (tests), which is fine.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The most verbose level the host records, for plugins to skip formatting the rest.
pub fn max_level_u8() -> u8 {
    MAX_LEVEL.load(Ordering::Relaxed)
}

/// The [`periscope_plugin_api::abi::LogFn`] handed to plugins: their events become host events
/// with `plugin` and `target` fields, inside the calling thread's span (the exporter's).
pub extern "C" fn plugin_log(level: u8, plugin: RStr<'_>, target: RStr<'_>, message: RStr<'_>) {
    let (plugin, target, message) = (plugin.as_str(), target.as_str(), message.as_str());
    match level_from_u8(level) {
        Some(Level::ERROR) => error!(target: "plugin", plugin, plugin_target = target, "{message}"),
        Some(Level::WARN) => warn!(target: "plugin", plugin, plugin_target = target, "{message}"),
        Some(Level::INFO) => info!(target: "plugin", plugin, plugin_target = target, "{message}"),
        Some(Level::DEBUG) => debug!(target: "plugin", plugin, plugin_target = target, "{message}"),
        _ => trace!(target: "plugin", plugin, plugin_target = target, "{message}"),
    }
}
