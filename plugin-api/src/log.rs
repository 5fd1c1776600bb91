//! The log bridge: `tracing` events inside a plugin reach the host's subscriber.
//!
//! A plugin is a separate shared library with its own copy of `tracing` and so its own global
//! dispatcher, which logs nowhere by default. When the host creates the first exporter of a plugin,
//! [`install`] sets that copy's global subscriber to a layer that formats each event and hands it to
//! the host's [`LogFn`]. Plugin authors just call `tracing::info!` and friends.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::OnceLock;

use abi_stable::std_types::RStr;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::Registry;

use crate::abi::LogFn;

/// Encodes a level for the ABI (`1` = error … `5` = trace; `0` = off).
pub fn level_to_u8(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Decodes a level from the ABI; `None` for `0` (off) and unknown values.
pub fn level_from_u8(level: u8) -> Option<Level> {
    match level {
        1 => Some(Level::ERROR),
        2 => Some(Level::WARN),
        3 => Some(Level::INFO),
        4 => Some(Level::DEBUG),
        5 => Some(Level::TRACE),
        _ => None,
    }
}

struct Bridge {
    plugin: &'static str,
    log: LogFn,
    max_level: u8,
}

static INSTALLED: OnceLock<()> = OnceLock::new();

thread_local! {
    static IN_EVENT: Cell<bool> = const { Cell::new(false) };
}

struct ResetOnDrop;

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        IN_EVENT.set(false);
    }
}

/// Routes this library's `tracing` events to the host. Only the first call has an effect, and none
/// if this copy of `tracing` already has a global subscriber (the plugin set its own, or the plugin
/// is linked into the host's own process, as in benchmarks).
pub fn install(plugin: &'static str, log: LogFn, max_level: u8) {
    if tracing::dispatcher::has_been_set() {
        return;
    }
    INSTALLED.get_or_init(|| {
        let subscriber = Registry::default().with(Bridge {
            plugin,
            log,
            max_level,
        });
        // Fails only if the plugin already set a global subscriber of its own; it then keeps it.
        let _ = tracing::subscriber::set_global_default(subscriber);
        // This library has its own copy of std and so its own panic hook, which would print to
        // stderr past the host's log. Panics are caught and reported as failures; the hook only
        // adds where the panic happened, through the bridge.
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let panic = crate::exporter::panic_message(info.payload());
            tracing::error!(%location, %panic, "plugin panicked");
        }));
    });
}

impl<S: Subscriber> Layer<S> for Bridge {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        level_to_u8(*metadata.level()) <= self.max_level
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // If the host's callback logs back into this subscriber (one process, one `tracing`), stop
        // instead of recursing.
        if IN_EVENT.replace(true) {
            return;
        }
        let _reset = ResetOnDrop;
        let mut text = Fields::default();
        event.record(&mut text);
        let metadata = event.metadata();
        (self.log)(
            level_to_u8(*metadata.level()),
            RStr::from_str(self.plugin),
            RStr::from_str(metadata.target()),
            RStr::from_str(&text.0),
        );
    }
}

/// Formats an event as `message key=value …`.
#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip() {
        for level in [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ] {
            assert_eq!(level_from_u8(level_to_u8(level)), Some(level));
        }
        assert_eq!(level_from_u8(0), None);
    }
}
