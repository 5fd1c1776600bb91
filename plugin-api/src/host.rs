//! The host's side of the plugin boundary: load a plugin library, check an exporter config with the
//! plugin's own parser, start exporters and call them — all through plain Rust types.
//!
//! This is the only place outside [`crate::abi`] that touches the stable ABI's types: the host
//! (`periscope-core`) sees [`Plugin`], [`Instance`], [`Outcome`] and [`Health`], never abi_stable.
//!
//! Loading follows two rules learned the hard way:
//! - each file is opened with `lib_header_from_path` + `init_root_module`, never abi_stable's
//!   per-type cached loaders, which hand back the first plugin for every later file;
//! - the version is checked before the layout, so a plugin built for another ABI version is refused
//!   with one short line, not the layout checker's thousand-line report.
//!
//! Libraries are never unloaded: Rust thread-local destructors make `dlclose` unsafe.

use std::ffi::{CStr, c_char};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use abi_stable::library::{LibraryError, RootModule as _, lib_header_from_path};
use abi_stable::std_types::{RStr, RString};
use tracing::{Level, debug, error, info, trace, warn};

use crate::abi::{ExportResult, ExporterBox, ExporterModRef, HealthFfi, HostContext};
use crate::batch::Batch;
use crate::exporter::{Exporter, Health, RejectedItem};
use crate::log::{level_from_u8, level_to_u8};

/// The symbol of the plain C function every plugin built with [`crate::export_exporter!`] exports
/// beside its root module: it returns the plugin's [`About`] text. Its C signature never changes,
/// so the host can read it from a plugin it refuses to load.
pub const ABOUT_SYMBOL: &str = "periscope_exporter_about";

/// Why a plugin library could not be loaded. Each message is one line and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Built against another ABI version.
    #[error(
        "built for plugin ABI version {found}, this host speaks version {expected}; rebuild the plugin against periscope-plugin-api with ABI version {expected}"
    )]
    AbiVersion {
        /// The host's ABI version.
        expected: u32,
        /// The plugin's ABI version.
        found: u32,
    },
    /// Same version, different layout: the plugin was built against a changed plugin-api.
    #[error(
        "its plugin ABI layout differs from this host's (same version {version}, different types{}); rebuild the plugin against this host's periscope-plugin-api",
        difference.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    AbiLayout {
        /// The (equal) ABI version.
        version: u32,
        /// The first difference the layout checker reports, when it names one.
        difference: Option<String>,
    },
    /// The library has no Periscope root module.
    #[error("not a Periscope plugin (it exports no `{symbol}` root module)")]
    NotAPlugin {
        /// The root module's name the loader looked for.
        symbol: &'static str,
    },
    /// Anything else: unreadable, not a shared library.
    #[error("{0}")]
    Other(String),
}

/// An exporter config the plugin's own parser refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if key.is_empty() { String::new() } else { format!("`{key}`: ") })]
pub struct ConfigRefusal {
    /// The dotted path of the key at fault inside the exporter's `config` table (`tls.ca_file`),
    /// empty when the parser could not tell.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigRefusal {
    /// Reads the text a plugin returns for a refused config: `` `key`: message `` or a bare message.
    /// Both halves of this format are in this crate (see `exporter::parse_config`).
    fn from_plugin(text: &str) -> ConfigRefusal {
        let keyed = text
            .strip_prefix('`')
            .and_then(|rest| rest.split_once("`: "));
        match keyed {
            Some((key, message)) => ConfigRefusal {
                key: key.to_owned(),
                message: message.to_owned(),
            },
            None => ConfigRefusal {
                key: String::new(),
                message: text.to_owned(),
            },
        }
    }
}

/// What a plugin says about itself (`periscope plugins inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// The ABI version it was built against.
    pub abi_version: u32,
    /// The plugin crate's version.
    pub plugin_version: String,
    /// The compiler that built it.
    pub rustc_version: String,
}

/// A loaded plugin library: its root module, to start exporters with.
#[derive(Clone, Copy)]
pub struct Plugin {
    module: ExporterModRef,
}

impl Plugin {
    /// Loads the plugin library at `path`, checking its ABI version, then its layout.
    ///
    /// Loading runs the library's initialisers: only load files the host has vetted (inside the
    /// plugin directories, not writable by others, hash pinned where configured).
    pub fn load(path: &Path) -> Result<Plugin, LoadError> {
        let header = lib_header_from_path(path).map_err(load_error)?;
        let module = header
            .init_root_module::<ExporterModRef>()
            .map_err(load_error)?;
        Ok(Plugin { module })
    }

    /// A plugin whose exporter type is linked into this process: for tests and benchmarks, where
    /// going through a shared library would only add the `dlopen`.
    pub fn in_process<E: Exporter>(name: &'static str, version: &'static str) -> Plugin {
        Plugin {
            module: crate::exporter::root_module::<E>(name, version),
        }
    }

    /// The plugin's self-description.
    pub fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.module.name().to_string(),
            abi_version: self.module.abi_version(),
            plugin_version: self.module.plugin_version().to_string(),
            rustc_version: self.module.rustc_version().to_string(),
        }
    }

    /// Checks an exporter config (TOML text) with the plugin's own parser.
    pub fn check_config(&self, config: &str) -> Result<(), ConfigRefusal> {
        self.module.check_config()(RStr::from_str(config))
            .into_result()
            .map_err(|e| ConfigRefusal::from_plugin(e.as_str()))
    }

    /// Starts an exporter called `exporter` (its name in the host's config) from its config (TOML
    /// text). The plugin's `tracing` events go to this process's subscriber, with `plugin` and
    /// `plugin_target` fields, inside the calling thread's span.
    pub fn start(&self, exporter: &str, config: &str) -> Result<Instance, String> {
        let max_level = tracing::level_filters::LevelFilter::current()
            .into_level()
            .map_or(0, level_to_u8);
        let context = HostContext {
            exporter: RStr::from_str(exporter),
            log: forward_log,
            max_level,
        };
        self.module.new()(RStr::from_str(config), context)
            .into_result()
            .map(|inner| Instance { inner })
            .map_err(RString::into_string)
    }
}

/// What one `export` call achieved, as the host sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The batch is handed over durably.
    Delivered,
    /// The target cannot take it now; retry after at least `after`.
    Retry {
        /// The shortest wait before the retry.
        after: Duration,
        /// Why.
        reason: String,
    },
    /// The target refuses the whole batch for good.
    Rejected {
        /// The target's reason.
        reason: String,
    },
    /// The target took everything but these items, which it refused for good (never empty).
    RejectedItems(Vec<RejectedItem>),
    /// The exporter itself failed (an error or a caught panic): restart it and retry.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

/// A running exporter created by [`Plugin::start`]. Call it from one thread at a time; dropping it
/// drops the plugin's instance (inside the plugin's panic guard).
pub struct Instance {
    inner: ExporterBox,
}

impl Instance {
    /// Hands a batch to the exporter.
    pub fn export(&mut self, batch: &Batch) -> Outcome {
        match self.inner.export(batch) {
            ExportResult::Ok => Outcome::Delivered,
            ExportResult::Retry { after_ms, reason } => Outcome::Retry {
                after: Duration::from_millis(after_ms),
                reason: reason.into_string(),
            },
            ExportResult::Reject { reason } => Outcome::Rejected {
                reason: reason.into_string(),
            },
            ExportResult::RejectItems { items } if items.is_empty() => Outcome::Delivered,
            ExportResult::RejectItems { items } => Outcome::RejectedItems(
                items
                    .into_iter()
                    .map(|item| RejectedItem {
                        // A position past usize::MAX names nothing, which the host reports.
                        update: usize::try_from(item.update).unwrap_or(usize::MAX),
                        sample: item
                            .sample
                            .into_option()
                            .map(|s| usize::try_from(s).unwrap_or(usize::MAX)),
                        reason: item.reason.into_string(),
                    })
                    .collect(),
            ),
            ExportResult::Failed { reason } => Outcome::Failed {
                reason: reason.into_string(),
            },
        }
    }

    /// Asks the exporter to write out anything buffered.
    pub fn flush(&mut self) -> Result<(), String> {
        self.inner
            .flush()
            .into_result()
            .map_err(RString::into_string)
    }

    /// How the exporter feels about its target.
    pub fn health(&self) -> Health {
        match self.inner.health() {
            HealthFfi::Healthy => Health::Healthy,
            HealthFfi::Degraded { reason } => Health::Degraded(reason.into_string()),
            HealthFfi::Unhealthy { reason } => Health::Unhealthy(reason.into_string()),
        }
    }

    /// Flushes and releases everything; drop the instance right after.
    pub fn shutdown(&mut self) -> Result<(), String> {
        self.inner
            .shutdown()
            .into_result()
            .map_err(RString::into_string)
    }
}

/// What a plugin file says about itself through its [`ABOUT_SYMBOL`], readable even when the host
/// refuses to load the plugin (another ABI version or layout).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct About {
    /// `key=value` pairs in the order the plugin wrote them: `name`, `plugin_version`,
    /// `abi_version`, `plugin_api_version`, `rustc_version`.
    pub fields: Vec<(String, String)>,
}

impl About {
    /// Reads the description of the plugin file at `path` without checking its ABI. `None` when
    /// the file is no library or exports no description (plugins built before it existed).
    ///
    /// Like [`Plugin::load`], this runs the library's initialisers: call it on vetted files only.
    // Unsafe: opening a library and calling into it by symbol name is FFI (see the SAFETY note).
    #[allow(unsafe_code)]
    pub fn read(path: &Path) -> Option<About> {
        // SAFETY: opening a library runs its initialisers, which the caller vetted (see above). The
        // symbol's C signature is fixed by this crate (`extern "C" fn() -> *const c_char`,
        // returning a NUL-terminated string that lives as long as the library). The library is
        // leaked, never closed, as every plugin library is (see the module docs).
        unsafe {
            let library = libloading::Library::new(path).ok()?;
            let text = {
                let about = library
                    .get::<extern "C" fn() -> *const c_char>(ABOUT_SYMBOL.as_bytes())
                    .ok()?;
                let pointer = about();
                if pointer.is_null() {
                    return None;
                }
                CStr::from_ptr(pointer).to_string_lossy().into_owned()
            };
            std::mem::forget(library);
            Some(About::parse(&text))
        }
    }

    /// Parses `key=value` lines.
    fn parse(text: &str) -> About {
        About {
            fields: text
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        }
    }

    /// The value of `key`, if the plugin wrote it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The text the [`ABOUT_SYMBOL`] of a plugin built with this crate returns.
    pub(crate) fn text(name: &str, plugin_version: &str) -> String {
        format!(
            "name={name}\nplugin_version={plugin_version}\nabi_version={}\nplugin_api_version={}\nrustc_version={}\n",
            crate::ABI_VERSION,
            env!("CARGO_PKG_VERSION"),
            env!("PERISCOPE_RUSTC_VERSION"),
        )
    }
}

impl fmt::Display for About {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.fields {
            writeln!(f, "{key}: {value}")?;
        }
        Ok(())
    }
}

/// Maps abi_stable's loader errors to [`LoadError`], keeping each to one line.
fn load_error(error: LibraryError) -> LoadError {
    match error {
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::AbiVersion {
            expected: expected_version.major,
            found: actual_version.major,
        },
        LibraryError::AbiInstability(report) => LoadError::AbiLayout {
            version: crate::ABI_VERSION,
            difference: first_difference(&report.to_string()),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            symbol: ExporterModRef::NAME,
        },
        other => LoadError::Other(
            other
                .to_string()
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("unknown loader error")
                .trim()
                .to_owned(),
        ),
    }
}

/// The first difference in abi_stable's layout report, in one line. The report (thousands of lines)
/// prints the field path it descended, both type layouts in full, then each difference as
/// `Error:<what>`, `Expected:` and `Found:` with the values on the following lines.
fn first_difference(report: &str) -> Option<String> {
    let mut lines = report.lines().map(str::trim);
    // The innermost named field on the path, before the layouts are printed.
    let field = lines
        .by_ref()
        .take_while(|l| !l.starts_with("Layout of expected type:"))
        .filter_map(|l| l.strip_prefix("field_name:"))
        .filter(|name| name.parse::<usize>().is_err())
        .last()
        .map(str::to_owned);
    let what = lines
        .find_map(|l| l.strip_prefix("Error:"))?
        .trim()
        .to_owned();
    let mut value_after = |label: &str| {
        lines
            .by_ref()
            .skip_while(|l| *l != label)
            .skip(1)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
    };
    let expected = value_after("Expected:");
    let found = value_after("Found:");
    let mut line = what;
    if let Some(field) = field {
        line.push_str(&format!(" in field `{field}`"));
    }
    if let (Some(expected), Some(found)) = (expected, found) {
        line.push_str(&format!(": expected `{expected}`, found `{found}`"));
    }
    Some(line.chars().take(300).collect())
}

/// The log callback handed to plugins: their events become events of this process, target
/// `plugin`, with `plugin` and `plugin_target` fields.
extern "C" fn forward_log(level: u8, plugin: RStr<'_>, target: RStr<'_>, message: RStr<'_>) {
    let (plugin, target, message) = (plugin.as_str(), target.as_str(), message.as_str());
    match level_from_u8(level) {
        Some(Level::ERROR) => error!(target: "plugin", plugin, plugin_target = target, "{message}"),
        Some(Level::WARN) => warn!(target: "plugin", plugin, plugin_target = target, "{message}"),
        Some(Level::INFO) => info!(target: "plugin", plugin, plugin_target = target, "{message}"),
        Some(Level::DEBUG) => debug!(target: "plugin", plugin, plugin_target = target, "{message}"),
        _ => trace!(target: "plugin", plugin, plugin_target = target, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};
    use crate::exporter::{BoxError, Context, Export};

    /// Answers every export with what its config names.
    struct Answering(Export);

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AnswerConfig {
        answer: String,
    }

    impl Exporter for Answering {
        type Config = AnswerConfig;

        fn new(config: AnswerConfig, _: Context<'_>) -> Result<Self, BoxError> {
            Ok(Answering(match config.answer.as_str() {
                "ok" => Export::Ok,
                "retry" => Export::Retry {
                    after: Duration::from_millis(1500),
                    reason: "busy".into(),
                },
                "reject" => Export::Reject {
                    reason: "all bad".into(),
                },
                "none" => Export::RejectItems { items: Vec::new() },
                "items" => Export::RejectItems {
                    items: vec![
                        RejectedItem::sample(0, 1, "bad sample"),
                        RejectedItem::update(1, "bad removal"),
                    ],
                },
                other => return Err(format!("unknown answer {other}").into()),
            }))
        }

        fn export(&mut self, _: &Batch) -> Result<Export, BoxError> {
            Ok(self.0.clone())
        }

        fn health(&self) -> Health {
            match &self.0 {
                Export::Retry { reason, .. } => Health::Degraded(reason.clone()),
                _ => Health::Healthy,
            }
        }
    }

    fn instance(answer: &str) -> Instance {
        Plugin::in_process::<Answering>("answering", "0.0.0")
            .start("t", &format!("answer = \"{answer}\""))
            .expect("the exporter starts")
    }

    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "up",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        let mut r = b.replace(Source::new(SourceKind::Endpoint, "e1"));
        r.sample(f, Suffix::None, 1.0, 1);
        r.sample(f, Suffix::None, 2.0, 1);
        b.remove(Source::new(SourceKind::Endpoint, "e2"));
        b.build()
    }

    #[test]
    fn every_result_crosses_the_abi_and_comes_back_as_an_outcome() {
        assert_eq!(instance("ok").export(&batch()), Outcome::Delivered);
        assert_eq!(instance("none").export(&batch()), Outcome::Delivered);
        assert_eq!(
            instance("retry").export(&batch()),
            Outcome::Retry {
                after: Duration::from_millis(1500),
                reason: "busy".into()
            }
        );
        assert_eq!(
            instance("reject").export(&batch()),
            Outcome::Rejected {
                reason: "all bad".into()
            }
        );
        assert_eq!(
            instance("items").export(&batch()),
            Outcome::RejectedItems(vec![
                RejectedItem::sample(0, 1, "bad sample"),
                RejectedItem::update(1, "bad removal"),
            ])
        );
    }

    #[test]
    fn health_crosses_the_abi() {
        assert_eq!(instance("ok").health(), Health::Healthy);
        assert_eq!(instance("retry").health(), Health::Degraded("busy".into()));
    }

    #[test]
    fn a_refused_config_names_the_key_apart_from_the_message() {
        let plugin = Plugin::in_process::<Answering>("answering", "0.0.0");
        let refusal = plugin.check_config("answer = 3").unwrap_err();
        assert_eq!(refusal.key, "answer");
        assert!(refusal.message.contains("expected a string"), "{refusal}");
        assert_eq!(
            refusal.to_string(),
            format!("`answer`: {}", refusal.message)
        );
        let refusal = plugin.check_config("answer = ").unwrap_err();
        assert_eq!(refusal.key, "");
        assert!(plugin.check_config("answer = \"ok\"").is_ok());
    }

    #[test]
    fn a_failing_start_returns_the_plugins_reason() {
        let plugin = Plugin::in_process::<Answering>("answering", "0.0.0");
        let error = plugin.start("t", "answer = \"what\"").err().unwrap();
        assert_eq!(error, "unknown answer what");
    }

    #[test]
    fn the_about_text_parses_back_into_its_fields() {
        let about = About::parse(&About::text("csv", "1.2.3"));
        assert_eq!(about.get("name"), Some("csv"));
        assert_eq!(about.get("plugin_version"), Some("1.2.3"));
        assert_eq!(
            about.get("abi_version"),
            Some(crate::ABI_VERSION.to_string().as_str())
        );
        assert_eq!(
            about.get("plugin_api_version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(
            about
                .get("rustc_version")
                .is_some_and(|v| v.contains("rustc"))
        );
    }

    #[test]
    fn the_first_layout_difference_is_one_line() {
        // The shape of abi_stable 0.11's report, shortened (the layouts run to thousands of lines).
        let report = "Compared <this>:\n    --- Type Layout ---\n\n0 error(s).\n\n\
            1 error(s)inside:\n    <other>\n\n    field_name:0\n    type:ExporterMod\n\n\
            \x20   field_name:new\n    type:extern fn\n\n\
            Layout of expected type:\n    field_name:abi_version\n    type:u32\n\n\
            Layout of found type:\n    field_name:abi_version\n\n\n\
            Error:mismatched type\nExpected:\n    HostContext\nFound:\n    u64\n";
        assert_eq!(
            first_difference(report).as_deref(),
            Some("mismatched type in field `new`: expected `HostContext`, found `u64`")
        );
        assert_eq!(first_difference("nothing useful"), None);
    }
}
